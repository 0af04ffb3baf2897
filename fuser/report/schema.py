"""Write docs/report-schema.md from the result classes: one table per record reachable from
``Report``, a row per field (its JSON key, its type from the type hint or ``doc(schema_type=)``,
its meaning from ``doc()``), under the class's docstring.

    python -m fuser.report.schema docs/report-schema.md    # rewrite the page
    python -m fuser.report.schema                          # print it

tests/test_report_schema.py checks that the committed page is this module's output.
"""

from __future__ import annotations

import dataclasses
import inspect
import sys
import textwrap
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fuser.report.records import Record, field_types
from fuser.report.results import SCHEMA_VERSION, Report

HEAD = f"""# The report's JSON schema (version {SCHEMA_VERSION})

<!-- Written by `python -m fuser.report.schema docs/report-schema.md` from the dataclasses
in fuser/report/ (their docstrings and field docs): edit those, not this page. -->

`onnx-fuser optimize --report r.json` (or `--json`) writes one [Report](#report) object;
`fuser.Report.to_dict()` returns the same and `fuser.Report.from_dict(data)` reads it back
(keys it does not know are ignored). Keys are sorted; times are seconds unless the key says
`_ms`. `schema` is bumped when a key changes meaning or disappears; new keys may appear
without a bump. `onnx-fuser validate --json` writes a [ValidationResult](#validationresult),
`onnx-fuser bench --json` a [BenchResult](#benchresult) (with `models`: per model `nodes`,
`params`, `macs`).
"""

WIDTH = 96  # the page's paragraphs wrap here (table rows do not wrap)
_NAMES = {str: "str", int: "int", float: "float", bool: "bool", type(None): "null",
          Any: "any", dict: "{str: any}", list: "[any]"}


def records(root: type[Record] = Report) -> list[type[Record]]:
    """``root`` and every record class its fields reach, depth first."""
    found: list[type[Record]] = []

    def visit(cls: type[Record]) -> None:
        if cls not in found:
            found.append(cls)
            hints = field_types(cls)
            for field in dataclasses.fields(cls):
                for inner in _mentioned(hints[field.name]):
                    visit(inner)

    visit(root)
    return found


def _mentioned(hint: Any) -> list[type[Record]]:
    if isinstance(hint, type) and issubclass(hint, Record):
        return [hint]
    return [cls for arg in typing.get_args(hint) for cls in _mentioned(arg)]


def type_text(hint: Any) -> str:
    """``list[Culprit]`` -> ``[Culprit]``, ``int | None`` -> ``int or null``, ..."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_text(arg) for arg in
                           sorted(args, key=lambda arg: arg is type(None)))
    if isinstance(hint, type) and issubclass(hint, Record):
        return f"[{hint.__name__}](#{hint.__name__.lower()})"
    if origin is list:
        return f"[{type_text(args[0])}]"
    if origin is tuple:
        return "[" + ", ".join(type_text(arg) for arg in args) + "]"
    if origin is dict:
        return f"{{{type_text(args[0])}: {type_text(args[1])}}}"
    return _NAMES.get(hint, getattr(hint, "__name__", str(hint)))


def section(cls: type[Record]) -> str:
    """One record: a heading, its docstring as a paragraph, a table of its keys."""
    hints = field_types(cls)
    rows = [(field.name, field.metadata.get("schema_type") or type_text(hints[field.name]),
             field.metadata.get("doc", "")) for field in dataclasses.fields(cls)]
    rows += [(key, kind, meaning)
             for key, (kind, meaning) in getattr(cls, "computed_keys", {}).items()]
    text = textwrap.fill(" ".join(inspect.getdoc(cls).split()).replace("``", "`"), WIDTH)
    lines = [f"## {cls.__name__}", "", text, "", "| key | type | meaning |", "|---|---|---|"]
    lines += [f"| `{key}` | {kind} | {_cell(meaning)} |" for key, kind, meaning in rows]
    return "\n".join(lines)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def render() -> str:
    """The whole page."""
    return "\n\n".join([HEAD.rstrip("\n"), *(section(cls) for cls in records())]) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Write the page to the path given, else print it."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args:
        Path(args[0]).write_text(render(), encoding="utf-8")
    else:
        sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

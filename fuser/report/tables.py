"""Small formatting helpers the renderers share: counts with units, text columns, markdown
tables, long names shortened, repeated reasons grouped."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

#: The widest a name is in a table (the JSON keeps it whole).
NAME_WIDTH = 40


def short_name(name: str, width: int = NAME_WIDTH) -> str:
    """``name`` shortened to ``width`` characters for a table: exporters' names of several
    hundred characters (tf2onnx: the scope path, ``model/block/conv/Conv2D;...``) keep
    their end, the part that tells layers apart, after an ellipsis."""
    name = name.split(";")[0]  # tf2onnx joins the fused ops' names with ';'
    if len(name) <= width:
        return name
    return "…" + name[-(width - 1):]


def grouped(reasons: Sequence[str]) -> list[str]:
    """Reasons that differ only in the names they quote (``weight 'a' of Conv 'b' is
    shared``) as one line with their count and the first one; others as they are."""
    groups: dict[str, list[str]] = {}
    for reason in reasons:
        groups.setdefault(re.sub(r"'[^']*'", "'…'", reason), []).append(reason)
    return [items[0] if len(items) == 1 else
            f"{len(items)}x {key} (the first: {shortened_quotes(items[0])})"
            for key, items in groups.items()]


def shortened_quotes(text: str) -> str:
    """``text`` with the names it quotes shortened (``short_name``)."""
    return re.sub(r"'([^']*)'", lambda m: f"'{short_name(m.group(1))}'", text)


def fmt(value: int | None, spec: str = ".2f") -> str:
    """``1234567`` -> ``1.23M`` (``spec`` formats the number); None (unknown) -> ``?``."""
    if value is None:
        return "?"
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= size:
            return f"{value / size:{spec}}{unit}"
    return str(value)


def columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Rows as left-aligned text columns under a header line, indented two spaces."""
    if not rows:
        return []
    width = {k: max(len(k), *(len(str(r[k])) for r in rows)) for k in rows[0]}
    lines = ["  " + "  ".join(f"{k:<{width[k]}}" for k in rows[0])]
    return lines + ["  " + "  ".join(f"{str(r[k]):<{width[k]}}" for k in r) for r in rows]


def md_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """Rows as a markdown table; the first row's keys are the header."""
    if not rows:
        return ""
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(str(r.get(k, "")) for k in keys) + " |" for r in rows]
    return "\n".join(lines)

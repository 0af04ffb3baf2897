"""Small formatting helpers the renderers share: counts with units, text columns, markdown
tables."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


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

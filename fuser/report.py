"""The report: what a run of fuser did, as dataclasses with a JSON form and a text table.

JSON schema (``schema`` = 1): ``{"schema", "fuser_version", "libraries", "model", "passes":
[PassRecord...], "pipeline": [names], "before": ModelStats, "after": ModelStats,
"seconds": {"load", "passes", "export", "check", "save"}, "notes": [str]}``.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

SCHEMA_VERSION = 1


@dataclasses.dataclass
class PassRecord:
    """One application of one pass."""

    name: str
    sweep: int
    rewrites: int
    skipped: dict[str, int]
    stats: dict[str, int]
    notes: list[str]
    nodes_before: int
    nodes_after: int
    seconds: float


@dataclasses.dataclass
class ModelStats:
    """Size of a model: nodes, op histogram, parameters and MACs (per sample)."""

    nodes: int
    ops: dict[str, int]
    params: int
    macs: int | None

    @property
    def layers(self) -> int:
        return self.nodes


@dataclasses.dataclass
class Report:
    """What one ``optimize`` run did and how long it took."""

    model: str
    pipeline: list[str]
    passes: list[PassRecord]
    before: ModelStats
    after: ModelStats
    seconds: dict[str, float]
    fuser_version: str
    libraries: dict[str, str]
    notes: list[str] = dataclasses.field(default_factory=list)
    schema: int = SCHEMA_VERSION

    # ---------------------------------------------------------------- aggregates
    def rewrites(self, name: str | None = None) -> int:
        """Total rewrites of one pass (or of all passes)."""
        return sum(r.rewrites for r in self.passes if name is None or r.name == name)

    def skipped(self, name: str | None = None) -> dict[str, int]:
        """Skip reasons of the *last* sweep (earlier sweeps' skips may have been fixed later)."""
        last: dict[str, dict[str, int]] = {}
        for record in self.passes:
            if name is None or record.name == name:
                last[record.name] = record.skipped
        merged: dict[str, int] = {}
        for reasons in last.values():
            for reason, count in reasons.items():
                merged[reason] = merged.get(reason, 0) + count
        return merged

    def stat(self, key: str) -> int:
        return sum(r.stats.get(key, 0) for r in self.passes)

    # ---------------------------------------------------------------- forms
    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["summary"] = {name: {"rewrites": self.rewrites(name),
                                  "skipped": self.skipped(name)} for name in self.pipeline}
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def to_text(self) -> str:
        """A terminal summary: one line per pass, then before/after figures."""
        lines = [f"model: {self.model}"]
        width = max((len(n) for n in self.pipeline), default=10)
        for name in self.pipeline:
            skipped = self.skipped(name)
            line = f"  {name:<{width}}  {self.rewrites(name):4d} rewrites"
            if skipped:
                line += f", {sum(skipped.values())} skipped"
            lines.append(line)
            for reason, count in sorted(skipped.items()):
                lines.append(f"  {'':<{width}}    skipped {count}x: {reason}")
        b, a = self.before, self.after
        lines.append(f"  nodes {b.nodes} -> {a.nodes}   params {b.params:,} -> {a.params:,}"
                     f"   MACs {_fmt(b.macs)} -> {_fmt(a.macs)}")
        for op in sorted(set(b.ops) | set(a.ops)):
            if b.ops.get(op, 0) != a.ops.get(op, 0):
                lines.append(f"    {op}: {b.ops.get(op, 0)} -> {a.ops.get(op, 0)}")
        denormals = self.stat("denormals flushed")
        if denormals:
            lines.append(f"  denormals flushed to zero: {denormals}")
        cloned = self.stat("shared weight cloned")
        if cloned:
            lines.append(f"  shared weights cloned: {cloned}")
        secs = ", ".join(f"{k} {v:.3f}s" for k, v in self.seconds.items())
        lines.append(f"  time: {secs}")
        lines.extend(f"  note: {n}" for n in self.notes)
        return "\n".join(lines)


def _fmt(value: int | None) -> str:
    if value is None:
        return "?"
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= size:
            return f"{value / size:.2f}{unit}"
    return str(value)

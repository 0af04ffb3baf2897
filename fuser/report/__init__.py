"""The report: what a run of fuser did, as dataclasses with JSON, text and markdown forms.

The JSON schema is documented in ``docs/report-schema.md`` (``schema`` = 2).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from fuser.runtime.validate import ValidationResult

SCHEMA_VERSION = 2


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
    """Size of a model: nodes, op histogram, parameters and MACs (per sample).

    ``layer_shapes``: per layer op (Conv, ConvTranspose, Gemm, MatMul), how many have known
    shapes and how many there are, ``{"Conv": [6, 6]}``; ``macs`` counts only those with known
    shapes (``unknown_layers`` names the others), so it is a lower bound unless
    ``macs_complete``.
    """

    nodes: int
    ops: dict[str, int]
    params: int
    macs: int | None
    layer_shapes: dict[str, list[int]] = dataclasses.field(default_factory=dict)
    unknown_layers: list[str] = dataclasses.field(default_factory=list)

    @property
    def macs_complete(self) -> bool:
        return all(known == total for known, total in self.layer_shapes.values())

    def macs_text(self) -> str:
        """The MACs, with "at least" when some layers' shapes are unknown."""
        if self.macs is None and self.layer_shapes:
            return "unknown"
        return _fmt(self.macs) if self.macs_complete else f"at least {_fmt(self.macs)}"

    def coverage_text(self) -> str:
        """``Conv 6/6, Gemm 1/1 (MACs counted on all)``."""
        if not self.layer_shapes:
            return "no Conv/ConvTranspose/Gemm/MatMul layers"
        parts = ", ".join(f"{op} {known}/{total}" for op, (known, total)
                          in self.layer_shapes.items())
        if self.macs_complete:
            return f"{parts} (MACs counted on all)"
        missing = len(self.unknown_layers)
        shown = ", ".join(self.unknown_layers[:3]) + (", ..." if missing > 3 else "")
        return f"{parts} (MACs at least: {missing} layer(s) of unknown shape: {shown})"

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
    validation: ValidationResult | None = None
    culprits: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    rolled_back: list[str] = dataclasses.field(default_factory=list)
    timings: dict[str, Any] | None = None
    lowrank: dict[str, Any] | None = None
    notes: list[str] = dataclasses.field(default_factory=list)
    schema: int = SCHEMA_VERSION

    @property
    def passed(self) -> bool:
        """False when validation ran and failed, or a lossy stage missed its accuracy bound."""
        exact = self.validation is None or self.validation.passed
        return exact and (self.lowrank or {}).get("passed", True)

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
        # A pass's stats are its live Counter (folds add denormal counts on export), and
        # asdict rebuilds a Counter from (key, value) pairs, counting the pairs themselves.
        for record, item in zip(self.passes, data["passes"], strict=True):
            item["stats"] = {str(key): int(value) for key, value in record.stats.items()}
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
                     f"   MACs {b.macs_text()} -> {a.macs_text()}")
        lines.append(f"  layers with known shapes: {a.coverage_text()}"
                     + ("" if b.macs_complete or not b.layer_shapes
                        else f"; before: {b.coverage_text()}"))
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
        if self.validation is not None:
            lines.append(self.validation.to_text())
        for culprit in self.culprits:
            lines.append(f"  culprit: pass '{culprit['name']}' (sweep {culprit['sweep']}, "
                         f"application {culprit['application']}) breaks the outputs")
        if self.rolled_back:
            lines.append(f"  rolled back: {', '.join(self.rolled_back)}")
        if self.lowrank:
            lines.append(lowrank_text(self.lowrank))
        if self.timings:
            lines.append(timings_text(self.timings))
            lines.append(self._speed_versus_macs())
        lines.extend(f"  note: {n}" for n in self.notes)
        return "\n".join(lines)

    def _speed_versus_macs(self) -> str:
        """Realized speed-up per level next to the MAC ratio, at the first batch size."""
        b, a = self.before.macs, self.after.macs
        complete = self.before.macs_complete and self.after.macs_complete
        ratio = f"{b / a:.2f}x" if b and a and complete else "? (some layers' shapes unknown)"
        measured = ", ".join(f"{level} {pair[0] / pair[1]:.2f}x"
                             for level, pair in _latency_pairs(self.timings).items())
        return f"  MAC ratio {ratio}; measured speed-up {measured or '?'}"

    def summary_row(self) -> dict[str, Any]:
        """The one-line-per-model figures (kito-style): layers, params, MACs, latency per
        level, optimization time, output differences."""
        row: dict[str, Any] = {
            "model": self.model, "layers": f"{self.before.nodes} -> {self.after.nodes}",
            "params": f"{self.before.params:,} -> {self.after.params:,}",
            "MACs": f"{self.before.macs_text()} -> {self.after.macs_text()}",
        }
        for level, pair in _latency_pairs(self.timings).items():
            row[f"latency ms ({level})"] = f"{pair[0]:.2f} -> {pair[1]:.2f}"
        row["optimize s"] = f"{self.seconds.get('passes', 0.0):.3f}"
        if self.validation is not None and self.validation.outputs:
            row["max diff"] = f"{max(o.max_abs for o in self.validation.outputs):.1e}"
            row["mean diff"] = f"{max(o.mean_abs for o in self.validation.outputs):.1e}"
        return row

    def to_markdown(self) -> str:
        """A markdown report: summary row, passes, validation, timings."""
        row = self.summary_row()
        lines = ["# fuser report", "", _md_table([row]), "", "## Passes", ""]
        lines.append(_md_table([{"pass": n, "rewrites": self.rewrites(n),
                                 "skipped": "; ".join(f"{c}x {r}" for r, c in
                                                      sorted(self.skipped(n).items()))}
                                for n in self.pipeline]))
        if self.validation is not None:
            lines += ["", "## Validation", "", f"{self.validation.inputs}: "
                      f"**{'PASSED' if self.validation.passed else 'FAILED'}**", ""]
            lines.append(_md_table([{
                "output": o.name, "max abs": f"{o.max_abs:.2e}", "max rel": f"{o.max_rel:.2e}",
                "mean abs": f"{o.mean_abs:.2e}", "rel L2": f"{o.rel_l2:.2e}",
                "cosine": f"{o.cosine:.6f}",
                "top-1": "" if o.top1 is None else f"{o.top1:.2%}",
                "verdict": "ok" if o.passed else o.message} for o in self.validation.outputs]))
        if self.lowrank:
            lines += ["", "## Low-rank", "", lowrank_text(self.lowrank, markdown=True)]
        if self.timings:
            lines += ["", "## Timing", "", timings_text(self.timings, markdown=True)]
        lines += ["", f"fuser {self.fuser_version}; "
                  + ", ".join(f"{k} {v}" for k, v in sorted(self.libraries.items())), ""]
        return "\n".join(lines)


def _fmt(value: int | None) -> str:
    if value is None:
        return "?"
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= size:
            return f"{value / size:.2f}{unit}"
    return str(value)


def _latency_pairs(timings: dict[str, Any] | None) -> dict[str, tuple[float, float]]:
    """``{level: (original median ms, optimized median ms)}`` at the first batch size."""
    if not timings:
        return {}
    rows = timings.get("timings", [])
    if not rows:
        return {}
    batch = rows[0]["batch"]
    pairs: dict[str, list[float]] = {}
    for row in rows:
        if row["batch"] == batch:
            pairs.setdefault(row["level"], []).append(row["stats"]["median_ms"])
    return {level: (v[0], v[-1]) for level, v in pairs.items() if len(v) >= 2}


def timings_text(timings: dict[str, Any], markdown: bool = False) -> str:
    rows = [{"model": t["model"], "level": t["level"], "batch": t["batch"],
             "median ms": f"{t['stats']['median_ms']:.3f}",
             "p90 ms": f"{t['stats']['p90_ms']:.3f}",
             "speed-up": "" if t.get("speedup") is None else (
                 f"{t['speedup']:.3f}x" + (f" [{t['speedup_ci'][0]:.3f}, {t['speedup_ci'][1]:.3f}]"
                                           if t.get("speedup_ci") else ""))}
            for t in timings.get("timings", [])]
    provider = timings.get("provider", {})
    head = (f"timing: {provider.get('used', '?')} ({provider.get('reason', '')}), "
            f"{timings.get('threads', '?')} threads, {timings.get('cpu', '')}")
    from fuser.runtime.bench import (
        SessionInfo,  # where each model's nodes ran (CUDA), what fell back
    )

    sessions = [SessionInfo(**s).describe() for s in timings.get("sessions", [])]
    sessions = [f"  {line}" for line in sessions if line]
    if markdown:
        return "\n".join([head, *sessions, "", _md_table(rows)])
    return "\n".join([f"  {head}", *_columns(rows), *sessions])


def lowrank_text(lowrank: dict[str, Any], markdown: bool = False) -> str:
    """The per-layer table of a low-rank search and its end-to-end figures."""
    rows = [{"layer": c["layer"], "op": c["op"], "method": c["method"],
             "rank": c["rank"] or "-",
             "MACs": f"{_fmt(c['macs_before'])} -> {_fmt(c['macs_after'])}",
             "layer ms": f"{c['ms_before']:.3f} -> {c['ms_after']:.3f}",
             "speed-up": f"{c['ms_before'] / c['ms_after']:.2f}x" if c["ms_after"] else "",
             "energy": f"{c['energy']:.3f}",
             "response err": "" if c["response_error"] is None else
             f"{c['response_error']:.3f}", "note": c["note"]} for c in lowrank["layers"]]
    agreement = lowrank.get("top1_agreement")
    head = (f"low-rank ({lowrank['budget']}): MACs {_fmt(lowrank['macs_before'])} -> "
            f"{_fmt(lowrank['macs_after'])}, held-out top-1 agreement "
            f"{'?' if agreement is None else f'{agreement:.2%}'}, relative output error "
            f"{lowrank['relative_error']:.3f}")
    if lowrank.get("accuracy_before") is not None:
        head += f", accuracy {lowrank['accuracy_before']:.2%} -> {lowrank['accuracy_after']:.2%}"
    if markdown:
        skipped = "".join(f"\n- not considered: {n}" for n in lowrank.get("not_considered", []))
        return head + "\n\n" + _md_table(rows) + ("\n" + skipped if skipped else "")
    notes = [f"  note: {n}" for n in lowrank.get("notes", [])]
    notes += [f"  not considered: {n}" for n in lowrank.get("not_considered", [])]
    return "\n".join([f"  {head}", *_columns(rows), *notes])


def _columns(rows: list[dict[str, Any]]) -> list[str]:
    """Rows as left-aligned text columns under a header line, indented two spaces."""
    if not rows:
        return []
    width = {k: max(len(k), *(len(str(r[k])) for r in rows)) for k in rows[0]}
    lines = ["  " + "  ".join(f"{k:<{width[k]}}" for k in rows[0])]
    return lines + ["  " + "  ".join(f"{str(r[k]):<{width[k]}}" for k in r) for r in rows]


def _md_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(str(r.get(k, "")) for k in keys) + " |" for r in rows]
    return "\n".join(lines)

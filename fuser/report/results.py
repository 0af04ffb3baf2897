"""The report of one ``optimize`` run and the records it is made of: pass applications,
model statistics, culprits.

The JSON form (``Report.to_dict``) is documented in docs/report-schema.md, which
``python -m fuser.report.schema`` writes from these classes (``schema`` = 2).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

from fuser.report.compression import Compression
from fuser.report.records import Record, doc, field_types, typed
from fuser.report.speed import SpeedCheck
from fuser.report.tables import fmt, md_table
from fuser.report.text import latency_pairs, lowrank_text, speed_lines, timings_text
from fuser.report.timing import BenchResult
from fuser.report.validation import ValidationResult

SCHEMA_VERSION = 2


@dataclasses.dataclass(frozen=True)
class PassRecord(Record):
    """One application of one pass (pass x sweep)."""

    name: str = doc("the pass")
    sweep: int = doc("1-based")
    rewrites: int = doc("rewrites it made")
    skipped: dict[str, int] = doc("why it left candidates alone, naming the node",
                                  schema_type="{reason: count}")
    stats: dict[str, int] = doc(
        'e.g. {"denormals flushed": n, "shared weight cloned": n}; a fold\'s flushed '
        "denormals are counted when its weights are computed, on export, into its own record",
        schema_type="{str: int}")
    notes: list[str] = doc("one line per rewrite, naming the nodes")
    nodes_before: int = doc("nodes of the graph before the pass")
    nodes_after: int = doc("and after")
    seconds: float = doc("time of the pass (a fold's excludes computing its weights: that is "
                         "in the report's `export`)")

    def to_dict(self) -> dict[str, Any]:
        """The JSON form; ``stats`` is the pass's live counter, written as plain ints."""
        data = super().to_dict()
        data["stats"] = {str(key): int(value) for key, value in self.stats.items()}
        return data


@dataclasses.dataclass(frozen=True)
class ModelStats(Record):
    """Size of a model: nodes, op histogram, parameters and MACs (per sample). With
    `input_shapes` (`--input-shape`) the statistics use the fixed shapes."""

    nodes: int = doc("nodes of the main graph")
    ops: dict[str, int] = doc("op histogram, custom domains as `domain::Op`",
                              schema_type="{op type: count}")
    params: int = doc("elements of floating-point initializers")
    macs: int | None = doc(
        "multiply-accumulates of Conv, ConvTranspose, Gemm, MatMul, LSTM, GRU and RNN per "
        "sample, a symbolic batch counted as 1, of the layers whose shapes are known (at the "
        "fixed input shapes when given); null when none is known")
    layer_shapes: dict[str, list[int]] = doc(
        "for those ops: how many layers have the shapes their MACs need, and how many "
        "there are; `macs` is a lower bound unless known == total for every op",
        schema_type="{op: [known, total]}", default_factory=dict)
    unknown_layers: list[str] = doc("the layers left out of `macs`, `Conv 'name'`",
                                    default_factory=list)

    @property
    def macs_complete(self) -> bool:
        """Every layer's shapes are known: ``macs`` is exact, not a lower bound."""
        return all(known == total for known, total in self.layer_shapes.values())

    def macs_text(self) -> str:
        """The MACs, with "at least" when some layers' shapes are unknown."""
        if self.macs is None and self.layer_shapes:
            return "unknown"
        return fmt(self.macs) if self.macs_complete else f"at least {fmt(self.macs)}"

    def coverage_text(self) -> str:
        """``Conv 6/6, Gemm 1/1 (MACs counted on all)``."""
        if not self.layer_shapes:
            return "no Conv/ConvTranspose/Gemm/MatMul/LSTM/GRU/RNN layers"
        parts = ", ".join(f"{op} {known}/{total}" for op, (known, total)
                          in self.layer_shapes.items())
        if self.macs_complete:
            return f"{parts} (MACs counted on all)"
        missing = len(self.unknown_layers)
        shown = ", ".join(self.unknown_layers[:3]) + (", ..." if missing > 3 else "")
        return f"{parts} (MACs at least: {missing} layer(s) of unknown shape: {shown})"

    @property
    def layers(self) -> int:
        """The node count (kept for callers of earlier versions)."""
        return self.nodes


@dataclasses.dataclass(frozen=True)
class Culprit(Record):
    """The first pass application after which validation failed."""

    name: str = doc("the pass")
    sweep: int = doc("its sweep")
    application: int = doc("1-based position in the run")
    probes: int = doc("pipeline re-runs the bisection needed")


#: The report's fields that hold records; the constructor also takes their JSON forms.
_NESTED = ("validation", "culprits", "timings", "speed", "lowrank")


@dataclasses.dataclass(frozen=True)
class Report(Record):
    """What one ``optimize`` run did and how long it took."""

    model: str = doc("the input path (or the graph name for an in-memory model)")
    pipeline: list[str] = doc("pass names in the order they ran")
    passes: list[PassRecord] = doc("one per pass application (pass x sweep), in order")
    before: ModelStats = doc("the model before")
    after: ModelStats = doc("the model after")
    seconds: dict[str, float] = doc(
        "`load`, `analyze` (checker and shape inference of the input, statistics), `passes`, "
        "`export` (computes the folded weights), `check` (checker and shape inference of the "
        "result), `validate`, `speed` (timing against the original, and the bisection when "
        "it was slower), `lowrank`, `save`")
    fuser_version: str = doc("the fuser that wrote it")
    libraries: dict[str, str] = doc("versions of onnx, onnx-graphsurgeon, numpy, protobuf, "
                                    "onnxruntime(-gpu)")
    validation: ValidationResult | None = doc("null with `--no-validate`", default=None)
    culprits: list[Culprit] = doc("when validation failed: the pass application(s) that "
                                  "broke the outputs", default_factory=list)
    rolled_back: list[str] = doc("passes dropped by `--rollback`", default_factory=list)
    timings: BenchResult | None = doc("null with `--no-bench`", default=None)
    speed: SpeedCheck | None = doc(
        "the delivered model against the original at the deploy level, per batch size, and "
        "the passes rolled back because they cost time; null with `--no-bench` (then only "
        "the passes' own rules guard the speed) or when onnxruntime cannot run the input",
        default=None)
    lowrank: Compression | None = doc("with `--lossy lowrank`, else null", default=None)
    notes: list[str] = doc("anything else worth saying", default_factory=list)
    schema: int = doc(f"the schema's version: {SCHEMA_VERSION}", default=SCHEMA_VERSION)

    #: Keys of the JSON form computed from the fields: key -> (schema type, meaning).
    computed_keys = {"summary": ("{pass: {`rewrites`: int, `skipped`: {reason: count}}}",
                                 "totals per pass; skip reasons are those of the last sweep")}

    def __post_init__(self) -> None:
        # Culprits, timings and the low-rank summary were dicts in earlier versions: their
        # JSON forms are accepted and held as records.
        hints = field_types(type(self))
        for name in _NESTED:
            object.__setattr__(self, name, typed(hints[name], getattr(self, name)))

    @property
    def passed(self) -> bool:
        """False when validation ran and failed, or a lossy stage missed its accuracy bound."""
        exact = self.validation is None or self.validation.passed
        return exact and (self.lowrank is None or self.lowrank.passed is not False)

    @property
    def verdict(self) -> str:
        """``FAILED`` (not ``passed``); ``PASSED`` only when something was validated (the
        exact stage's outputs, or the lossy guard within its bound); else ``NOT VALIDATED``
        (validation off, or a model onnxruntime cannot run)."""
        if not self.passed:
            return "FAILED"
        checked = self.validation is not None or (self.lowrank is not None
                                                  and self.lowrank.passed is True)
        return "PASSED" if checked else "NOT VALIDATED"

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
        """A statistic (``"denormals flushed"``, ...) summed over the pass applications."""
        return sum(r.stats.get(key, 0) for r in self.passes)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (schema 2, docs/report-schema.md), with the per-pass ``summary``."""
        data = super().to_dict()
        data["summary"] = {name: {"rewrites": self.rewrites(name),
                                  "skipped": self.skipped(name)} for name in self.pipeline}
        return data

    def to_json(self) -> str:
        """``to_dict`` as indented JSON, keys sorted."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def to_text(self) -> str:
        """A terminal summary: one line per pass, then before/after figures."""
        return _report_text(self)

    def to_markdown(self) -> str:
        """A markdown report: summary row, passes, validation, low-rank, timings."""
        return _report_markdown(self)

    def summary_row(self) -> dict[str, Any]:
        """The one-line-per-model figures (kito-style): layers, params, MACs, latency per
        level, optimization time, output differences."""
        return _summary_row(self)


# --- the report's text and markdown forms ---------------------------------------------------

def _report_text(report: Report) -> str:
    """A terminal summary: one line per pass, then before/after figures."""
    lines = [f"model: {report.model}", *speed_lines(report.speed)]
    width = max((len(n) for n in report.pipeline), default=10)
    for name in report.pipeline:
        skipped = report.skipped(name)
        line = f"  {name:<{width}}  {report.rewrites(name):4d} rewrites"
        if skipped:
            line += f", {sum(skipped.values())} skipped"
        lines.append(line)
        for reason, count in sorted(skipped.items()):
            lines.append(f"  {'':<{width}}    skipped {count}x: {reason}")
    lines += _model_lines(report)
    secs = ", ".join(f"{k} {v:.3f}s" for k, v in report.seconds.items())
    lines.append(f"  time: {secs}")
    if report.validation is not None:
        lines.append(report.validation.to_text())
    for culprit in report.culprits:
        lines.append(f"  culprit: pass '{culprit.name}' (sweep {culprit.sweep}, "
                     f"application {culprit.application}) breaks the outputs")
    if report.rolled_back:
        lines.append(f"  rolled back: {', '.join(report.rolled_back)}")
    if report.lowrank:
        lines.append(lowrank_text(report.lowrank.to_dict(), timings=report.timings and
                                  report.timings.to_dict()))
    if report.timings:
        timings = report.timings.to_dict()
        lines.append(timings_text(timings))
        lines.append(_speed_versus_macs(report, timings))
    lines.extend(f"  note: {n}" for n in report.notes)
    return "\n".join(lines)


def _model_lines(report: Report) -> list[str]:
    """Nodes, params, MACs before and after, shape coverage, changed ops, stats."""
    b, a = report.before, report.after
    lines = [f"  nodes {b.nodes} -> {a.nodes}   params {b.params:,} -> {a.params:,}"
             f"   MACs {b.macs_text()} -> {a.macs_text()}",
             f"  layers with known shapes: {a.coverage_text()}"
             + ("" if b.macs_complete or not b.layer_shapes
                else f"; before: {b.coverage_text()}")]
    for op in sorted(set(b.ops) | set(a.ops)):
        if b.ops.get(op, 0) != a.ops.get(op, 0):
            lines.append(f"    {op}: {b.ops.get(op, 0)} -> {a.ops.get(op, 0)}")
    denormals = report.stat("denormals flushed")
    if denormals:
        lines.append(f"  denormals flushed to zero: {denormals}")
    cloned = report.stat("shared weight cloned")
    if cloned:
        lines.append(f"  shared weights cloned: {cloned}")
    return lines


def _speed_versus_macs(report: Report, timings: Mapping[str, Any]) -> str:
    """Realized speed-up per level next to the MAC ratio, at the first batch size."""
    b, a = report.before.macs, report.after.macs
    complete = report.before.macs_complete and report.after.macs_complete
    ratio = f"{b / a:.2f}x" if b and a and complete else "? (some layers' shapes unknown)"
    measured = ", ".join(f"{level} {pair[0] / pair[1]:.2f}x"
                         for level, pair in latency_pairs(timings).items())
    return f"  MAC ratio {ratio}; measured speed-up {measured or '?'}"


def _summary_row(report: Report) -> dict[str, Any]:
    """The one-line-per-model figures (kito-style): layers, params, MACs, latency per level,
    optimization time, output differences."""
    before, after = report.before, report.after
    row: dict[str, Any] = {
        "model": report.model, "layers": f"{before.nodes} -> {after.nodes}",
        "params": f"{before.params:,} -> {after.params:,}",
        "MACs": f"{before.macs_text()} -> {after.macs_text()}",
    }
    if report.speed is not None:
        level = report.speed.level
        row[f"speed vs original ({level})"] = ", ".join(
            f"{r.speedup:.2f}x [{r.speedup_ci[0]:.2f}, {r.speedup_ci[1]:.2f}] b{r.batch}"
            for r in report.speed.ratios)
    timings = report.timings.to_dict() if report.timings else None
    for level, pair in latency_pairs(timings).items():
        row[f"latency ms ({level})"] = f"{pair[0]:.2f} -> {pair[1]:.2f}"
    row["optimize s"] = f"{report.seconds.get('passes', 0.0):.3f}"
    if report.validation is not None and report.validation.outputs:
        row["max diff"] = f"{max(o.max_abs for o in report.validation.outputs):.1e}"
        row["mean diff"] = f"{max(o.mean_abs for o in report.validation.outputs):.1e}"
    return row


def _report_markdown(report: Report) -> str:
    """A markdown report: summary row, passes, validation, low-rank, timings."""
    lines = ["# fuser report", "", md_table([_summary_row(report)]), ""]
    lines += [line.strip() + "  " for line in speed_lines(report.speed)]
    lines += ["", "## Passes", ""]
    lines.append(md_table([{"pass": n, "rewrites": report.rewrites(n),
                            "skipped": "; ".join(f"{c}x {r}" for r, c in
                                                 sorted(report.skipped(n).items()))}
                           for n in report.pipeline]))
    if report.validation is not None:
        lines += ["", "## Validation", "", report.validation.to_markdown()]
    if report.lowrank:
        lines += ["", "## Lossy stage", "", lowrank_text(
            report.lowrank.to_dict(), markdown=True,
            timings=report.timings and report.timings.to_dict())]
    if report.timings:
        lines += ["", "## Timing", "", timings_text(report.timings.to_dict(), markdown=True)]
    lines += ["", f"fuser {report.fuser_version}; "
              + ", ".join(f"{k} {v}" for k, v in sorted(report.libraries.items())), ""]
    return "\n".join(lines)

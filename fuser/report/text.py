"""Terminal text of the results: the report, a validation, timings, a low-rank search.

Renderers read their results through attributes (records) or keys (the JSON forms of timings
and low-rank summaries, as ``onnx-fuser bench`` prints them); they import no result class, so
that every result module can use them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from fuser.report.tables import columns, fmt, md_table

if TYPE_CHECKING:
    from fuser.report.results import Report
    from fuser.report.speed import SpeedCheck
    from fuser.report.timing import BenchResult
    from fuser.report.validation import ValidationResult


def report_text(report: Report) -> str:
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
        lines.append(validation_text(report.validation))
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
        lines.append(speed_versus_macs(report, timings))
    lines.extend(f"  note: {n}" for n in report.notes)
    return "\n".join(lines)


def speed_lines(check: SpeedCheck | None) -> list[str]:
    """The delivered model against the original (the report's lead), the figure before a
    rollback for speed, and the note."""
    if check is None:
        return ["  speed: not timed against the original; only the passes' own rules guard "
                "it (fold-pad-into-conv keeps the Pads onnxruntime's CPU runs faster)"]
    lines = [f"  speed: {check.headline()}"]
    if check.rolled_back:
        lines.append(f"  rolled back for speed: {', '.join(check.rolled_back)} (before: "
                     + ", ".join(r.text() for r in check.before_rollback) + ")")
    elif check.note:
        lines.append(f"  speed note: {check.note}")
    if any(r.resolved is False for r in check.ratios):
        lines.append("  speed: an interval stayed wider than 5 % within the time budget "
                     "(unresolved; --time-budget gives the timing more)")
    return lines


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


def speed_versus_macs(report: Report, timings: Mapping[str, Any]) -> str:
    """Realized speed-up per level next to the MAC ratio, at the first batch size."""
    b, a = report.before.macs, report.after.macs
    complete = report.before.macs_complete and report.after.macs_complete
    ratio = f"{b / a:.2f}x" if b and a and complete else "? (some layers' shapes unknown)"
    measured = ", ".join(f"{level} {pair[0] / pair[1]:.2f}x"
                         for level, pair in latency_pairs(timings).items())
    return f"  MAC ratio {ratio}; measured speed-up {measured or '?'}"


def latency_pairs(timings: Mapping[str, Any] | None) -> dict[str, tuple[float, float]]:
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


def validation_text(result: ValidationResult) -> str:
    """The verdict, then one line of figures per output."""
    lines = [f"validation on {result.inputs} ({result.batches} batch(es), {result.samples} "
             f"sample(s)): {'PASSED' if result.passed else 'FAILED'}"]
    for o in result.outputs:
        agreement = "" if o.top1 is None else f"  top-1 {o.top1:.2%}  top-5 {o.top5:.2%}"
        lines.append(f"  {o.name}: max abs {o.max_abs:.2e}  max rel {o.max_rel:.2e}  "
                     f"mean abs {o.mean_abs:.2e}  rel L2 {o.rel_l2:.2e}  "
                     f"cos {o.cosine:.6f}{agreement}  {'ok' if o.passed else o.message}")
    if result.error:
        lines.append(f"  {result.error}")
    return "\n".join(lines)


def bench_text(result: BenchResult) -> str:
    """A table: model, level, batch, median ms, p90 ms, speed-up [95 % CI]."""
    lines = [f"onnxruntime {result.onnxruntime} on {result.provider.used} "
             f"({result.provider.reason}); {result.threads} threads; CPU {result.cpu}"]
    rows = [("model", "level", "batch", "median ms", "p90 ms", "speed-up [95% CI]")]
    for t in result.timings:
        if t.speedup is None:
            speed = "-"
        elif t.model == t.reference:
            speed = "1.00 (reference)"
        else:
            ci = t.speedup_ci or (t.speedup, t.speedup)
            speed = f"{t.speedup:.2f} [{ci[0]:.2f}, {ci[1]:.2f}]" + (
                " unresolved" if t.resolved is False else "")
        rows.append((t.model, t.level, str(t.batch), f"{t.stats.median_ms:.3f}",
                     f"{t.stats.p90_ms:.3f}", speed))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = [cell.ljust(w) if i < 2 else cell.rjust(w)
                 for i, (cell, w) in enumerate(zip(row, widths, strict=True))]
        lines.append("  ".join(cells).rstrip())
    lines += [line for line in (s.describe() for s in result.sessions) if line]
    if result.busy:
        lines.append(f"warning: {result.busy}")
    return "\n".join(lines)


def placement_text(placement: Mapping[str, int]) -> str:
    """``50 nodes on CUDA, 3 on CPU``."""
    parts = [f"{count} on {name.removesuffix('ExecutionProvider')}"
             for name, count in sorted(placement.items(), key=lambda item: -item[1])]
    return f"{sum(placement.values())} nodes: {', '.join(parts)}" if parts else "no nodes"


def session_line(model: str, level: str, placement: Mapping[str, int] | None,
                 note: str) -> str | None:
    """A session's line (where its nodes ran, what fell back), None when there is nothing to
    say (the CPU)."""
    parts = [placement_text(placement)] if placement else []
    parts += [note] if note else []
    return f"{model} ({level}): {'; '.join(parts)}" if parts else None


def timings_text(timings: Mapping[str, Any], markdown: bool = False) -> str:
    """Timings in their JSON form (``BenchResult.to_dict()``) as a table under a head line."""
    rows = [{"model": t["model"], "level": t["level"], "batch": t["batch"],
             "median ms": f"{t['stats']['median_ms']:.3f}",
             "p90 ms": f"{t['stats']['p90_ms']:.3f}",
             "speed-up": "" if t.get("speedup") is None else (
                 f"{t['speedup']:.3f}x" + (f" [{t['speedup_ci'][0]:.3f}, {t['speedup_ci'][1]:.3f}]"
                                           if t.get("speedup_ci") else "")
                 + (" unresolved" if t.get("resolved") is False else ""))}
            for t in timings.get("timings", [])]
    provider = timings.get("provider", {})
    head = (f"timing: {provider.get('used', '?')} ({provider.get('reason', '')}), "
            f"{timings.get('threads', '?')} threads, {timings.get('cpu', '')}")
    sessions = [session_line(s["model"], s["level"], s.get("placement"), s.get("note", ""))
                for s in timings.get("sessions", [])]  # where nodes ran (CUDA), fall-backs
    sessions = [f"  {line}" for line in sessions if line]
    if timings.get("busy"):
        sessions.append(f"  warning: {timings['busy']}")
    if markdown:
        return "\n".join([head, *sessions, "", md_table(rows)])
    return "\n".join([f"  {head}", *columns(rows), *sessions])


def lowrank_text(lowrank: Mapping[str, Any], markdown: bool = False,
                 timings: Mapping[str, Any] | None = None) -> str:
    """The per-layer table of a low-rank search (its JSON form, ``Compression.to_dict()``)
    and its end-to-end figures."""
    rows = [{"layer": c["layer"], "op": c["op"], "method": c["method"],
             "rank": c["rank"] or "-",
             "MACs": f"{fmt(c['macs_before'])} -> {fmt(c['macs_after'])}",
             "layer ms": f"{c['ms_before']:.3f} -> {c['ms_after']:.3f}" if c["ms_before"]
             else "-",  # int8 layers are timed in the whole model only
             "speed-up": f"{c['ms_before'] / c['ms_after']:.2f}x" if c["ms_after"] else "",
             "energy": f"{c['energy']:.3f}",
             "response err": "" if c["response_error"] is None else
             f"{c['response_error']:.3f}", "note": c["note"]} for c in lowrank["layers"]]
    stage = stage_name(lowrank)
    head, nl = f"{stage} ({lowrank['budget']}): {lowrank_summary(lowrank, timings)}", \
        "\n\n" if markdown else "\n  "
    if lowrank.get("guard"):
        head += f"{nl}guard: {lowrank['guard']}"
    if lowrank.get("phases"):
        head += f"{nl}search time: " + ", ".join(
            f"{phase} {seconds:.1f}s" for phase, seconds in lowrank["phases"].items())
    if markdown:
        skipped = "".join(f"\n- not considered: {n}" for n in lowrank.get("not_considered", []))
        return head + "\n\n" + md_table(rows) + ("\n" + skipped if skipped else "")
    notes = [f"  note: {n}" for n in lowrank.get("notes", [])]
    notes += [f"  not considered: {n}" for n in lowrank.get("not_considered", [])]
    return "\n".join([f"  {head}", *columns(rows), *notes])


def stage_name(lowrank: Mapping[str, Any]) -> str:
    """``low-rank``, or ``lossy int8`` / ``lossy lowrank,int8`` (``Compression.methods``)."""
    methods = lowrank.get("methods") or ["lowrank"]
    return "low-rank" if methods == ["lowrank"] else f"lossy {','.join(methods)}"


def percent(confidence: float) -> str:
    """A confidence level as the reports write it: 95%, 97.5%, 98.75%."""
    return f"{100 * confidence:.4f}".rstrip("0").rstrip(".") + "%"


def _held_out(lowrank: Mapping[str, Any]) -> str:
    rows, distinct = lowrank["held_out_samples"], lowrank.get("distinct_held_out") or 0
    total = lowrank.get("held_out_total") or rows
    seen = f"{distinct} distinct of {rows}" if distinct and distinct != rows else str(rows)
    return f"{seen} of {total} held-out samples" if total > rows else f"{seen} held-out samples"


def lowrank_summary(lowrank: Mapping[str, Any], timings: Mapping[str, Any] | None = None
                    ) -> str:
    """The delivered model in one line: the metric before -> after with the drop's interval
    (at its level) and sample count, the relative output error, the measured speed-up at
    ORT_ENABLE_ALL (when timed), MACs."""
    name = str(lowrank.get("metric", ""))
    share = name in ("agreement", "top1") or name.startswith(("rel-error:", "snr:"))

    def value(x: float) -> str:  # the built-ins are shares of samples; a user's, a number
        return f"{x:.2%}" if share else f"{x:.4g}"

    parts = []
    if lowrank.get("metric_before") is not None:
        low, high = lowrank["drop_interval"]
        parts.append(f"{lowrank['metric']} {value(lowrank['metric_before'])} -> "
                     f"{value(lowrank['metric_after'])} (drop {value(lowrank['drop'])}, "
                     f"{percent(lowrank.get('drop_confidence') or 0.95)} interval "
                     f"[{value(low)}, {value(high)}], "
                     f"{_held_out(lowrank)})")
    parts.append(f"relative output error {lowrank['relative_error']:.3g}")
    if lowrank.get("degenerate_calibration"):
        parts.insert(0, "DEGENERATE CALIBRATION ALLOWED ("
                     + "; ".join(lowrank["degenerate_calibration"]) + ")")
    pair = latency_pairs(timings).get("all")
    if not any(layer.get("method", "dense") != "dense" for layer in lowrank.get("layers", [])):
        # a timing would be the exact stage's, or noise
        parts.append("every layer kept float" if "int8" in (lowrank.get("methods") or [])
                     else "every layer kept dense")
    elif pair:
        parts.append(f"speed-up {pair[0] / pair[1]:.2f}x at ORT_ENABLE_ALL")
    parts.append(f"MACs {fmt(lowrank['macs_before'])} -> {fmt(lowrank['macs_after'])}")
    return ", ".join(parts)

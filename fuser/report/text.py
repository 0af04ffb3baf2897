"""Terminal text shared by the results' own text forms: the speed lead, timings and a
low-rank search (from their JSON forms, as ``onnx-fuser bench`` prints them), placements.

Each result renders itself (``Report.to_text``, ``BenchResult.to_text``...) with these
helpers; they import no result class but ``SpeedCheck`` (which renders nothing), so the
result modules import them and not the other way round: no import cycle.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fuser.report.speed import SpeedCheck
from fuser.report.tables import shortened_quotes, columns, fmt, grouped, md_table, short_name


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
    rows = [{"layer": short_name(c["layer"]), "op": c["op"], "method": c["method"],
             "rank": c["rank"] or "-",
             "MACs": f"{fmt(c['macs_before'])} -> {fmt(c['macs_after'])}",
             "layer ms": f"{c['ms_before']:.3f} -> {c['ms_after']:.3f}" if c["ms_before"]
             else "-",  # int8 layers are timed in the whole model only
             "speed-up": f"{c['ms_before'] / c['ms_after']:.2f}x" if c["ms_after"] else "",
             "energy": f"{c['energy']:.3f}",
             "response err": "" if c["response_error"] is None else
             f"{c['response_error']:.3f}",
             "drop alone": "" if c.get("drop_alone") is None else f"{c['drop_alone']:.3g}",
             "options measured": c.get("options_measured") or "",
             "note": shortened_quotes(c["note"])} for c in lowrank["layers"]]
    not_considered = grouped(lowrank.get("not_considered", []))
    stage = stage_name(lowrank)
    head, nl = f"{stage} ({lowrank['budget']}): {lowrank_summary(lowrank, timings)}", \
        "\n\n" if markdown else "\n  "
    if lowrank.get("guard"):
        head += f"{nl}guard: {lowrank['guard']}"
    if lowrank.get("phases"):
        head += f"{nl}search time: " + ", ".join(
            f"{phase} {seconds:.1f}s" for phase, seconds in lowrank["phases"].items())
    if markdown:
        skipped = "".join(f"\n- not considered: {n}" for n in not_considered)
        return head + "\n\n" + md_table(rows) + ("\n" + skipped if skipped else "")
    notes = [f"  note: {n}" for n in lowrank.get("notes", [])]
    notes += [f"  not considered: {n}" for n in not_considered]
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

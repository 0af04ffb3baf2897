"""The markdown report, and the one-row summary it opens with."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fuser.report.tables import md_table
from fuser.report.text import latency_pairs, lowrank_text, speed_lines, timings_text

if TYPE_CHECKING:
    from fuser.report.results import Report


def summary_row(report: Report) -> dict[str, Any]:
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


def report_markdown(report: Report) -> str:
    """A markdown report: summary row, passes, validation, low-rank, timings."""
    lines = ["# fuser report", "", md_table([summary_row(report)]), ""]
    lines += [line.strip() + "  " for line in speed_lines(report.speed)]
    lines += ["", "## Passes", ""]
    lines.append(md_table([{"pass": n, "rewrites": report.rewrites(n),
                            "skipped": "; ".join(f"{c}x {r}" for r, c in
                                                 sorted(report.skipped(n).items()))}
                           for n in report.pipeline]))
    validation = report.validation
    if validation is not None:
        lines += ["", "## Validation", "", f"{validation.inputs}: "
                  f"**{'PASSED' if validation.passed else 'FAILED'}**", ""]
        lines.append(md_table([{
            "output": o.name, "max abs": f"{o.max_abs:.2e}", "max rel": f"{o.max_rel:.2e}",
            "mean abs": f"{o.mean_abs:.2e}", "rel L2": f"{o.rel_l2:.2e}",
            "cosine": f"{o.cosine:.6f}",
            "top-1": "" if o.top1 is None else f"{o.top1:.2%}",
            "verdict": "ok" if o.passed else o.message} for o in validation.outputs]))
    if report.lowrank:
        lines += ["", "## Lossy stage", "", lowrank_text(
            report.lowrank.to_dict(), markdown=True,
            timings=report.timings and report.timings.to_dict())]
    if report.timings:
        lines += ["", "## Timing", "", timings_text(report.timings.to_dict(), markdown=True)]
    lines += ["", f"fuser {report.fuser_version}; "
              + ", ".join(f"{k} {v}" for k, v in sorted(report.libraries.items())), ""]
    return "\n".join(lines)

"""The report as one self-contained HTML page (``--report out.html``): the verdict, the exact
stage's rewrites, the delivered model's latency against the original with its intervals,
validation, and for a lossy run the per-layer choices, the guard's ladder (each rung's drop
interval and the candidate layers' time) and the search's phases. Figures are matplotlib PNGs
inlined as data URLs, the style sheet is inline: the file opens anywhere, offline.

Rendered from the same ``Report`` record as the text, markdown and JSON forms; names are
shortened in tables (``tables.short_name``), whole in their ``title``.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from fuser.report.compression import Compression
from fuser.report.results import Report
from fuser.report.tables import fmt, grouped, short_name
from fuser.report.text import lowrank_summary, percent, stage_name
from fuser.report.timing import BenchResult

#: The levels as onnxruntime names them.
LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "all": "ORT_ENABLE_ALL"}

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; max-width: 1100px; margin: 2em auto;
       padding: 0 1em; color: #1b1b1b; }
h1 { font-size: 1.6em; margin-bottom: .2em; } h2 { margin-top: 1.8em; border-bottom:
1px solid #ddd; padding-bottom: .2em; } table { border-collapse: collapse; margin: .6em 0;
font-size: 13px; } th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: left; }
th { background: #f4f4f4; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.verdict { font-size: 1.15em; padding: .5em .8em; border-radius: 4px; }
.passed { background: #e6f4ea; } .failed { background: #fce8e6; } .plain { background: #f1f3f4; }
figure { margin: 1em 0; } figure img { max-width: 100%; } figcaption { color: #555; }
ul.notes li { margin: .25em 0; } footer { margin-top: 3em; color: #777; font-size: 12px; }
"""

#: Marks, once the page has loaded, how many of its figures the browser decoded.
SCRIPT = """
window.addEventListener("load", () => {
  const images = Array.from(document.images);
  document.body.dataset.figuresDecoded =
    images.filter(i => i.complete && i.naturalWidth > 0).length;
});
"""


def report_html(report: Report, verdict: str = "") -> str:
    """The page for ``report``; ``verdict`` is the run's last line (PASSED or FAILED ...)."""
    figures: list[str] = []
    body = [f"<h1>fuser report: {_e(short_name(report.model, 80))}</h1>",
            _verdict(report, verdict), _summary(report)]
    body += _exact(report)
    body += _latency(report, figures)
    body += _validation(report)
    if report.lowrank is not None:
        body += _lossy(report.lowrank, report, figures)
    notes = [*report.notes, *(f"culprit: {c.name} (sweep {c.sweep}, application "
                              f"{c.application}; {c.probes} re-runs to find it)"
                              for c in report.culprits)]
    if notes:
        body += ["<h2 id='notes'>Notes</h2>", _list(notes)]
    body.append(f"<footer>fuser {_e(report.fuser_version)}; " + _e(", ".join(
        f"{k} {v}" for k, v in sorted(report.libraries.items()))) + "</footer>")
    return ("<!doctype html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<title>fuser report: {_e(report.model)}</title><style>{STYLE}</style></head>"
            f"<body data-figures='{len(figures)}'>\n" + "\n".join(body)
            + f"\n<script>{SCRIPT}</script></body></html>\n")


# ------------------------------------------------------------------------------ sections


def _verdict(report: Report, line: str) -> str:
    kind = {"PASSED": "passed", "FAILED": "failed"}.get(report.verdict, "plain")
    return f"<p class='verdict {kind}' id='verdict'>{_e(line or report.verdict)}</p>"


def _summary(report: Report) -> str:
    before, after = report.before, report.after
    rows = [("nodes", f"{before.nodes} → {after.nodes}"),
            ("parameters", f"{before.params:,} → {after.params:,}"),
            ("MACs", f"{before.macs_text()} → {after.macs_text()}")]
    if report.speed is not None:
        rows.append(((f"speed against the original ({LEVELS.get(report.speed.level)}, "
                     f"{report.speed.provider})"), "; ".join(r.text() for r in
                                                             report.speed.ratios)))
    if report.validation is not None:
        rows.append(("validation", ("PASSED" if report.validation.passed else "FAILED")
                     + f" on {report.validation.inputs}"))
    rows.append(("time", ", ".join(f"{k} {v:.2f} s" for k, v in report.seconds.items())))
    return _table(["", "the model you gave → the model delivered"], rows)


def _exact(report: Report) -> list[str]:
    changed = [name for name in report.pipeline if report.rewrites(name)]
    rows = [(name, report.rewrites(name), "; ".join(
        f"{count}x {reason}" for reason, count in sorted(report.skipped(name).items())))
        for name in changed]
    idle = [name for name in report.pipeline if name not in changed]
    ops = sorted(set(report.before.ops) | set(report.after.ops),
                 key=lambda op: -abs(report.before.ops.get(op, 0) - report.after.ops.get(op, 0)))
    op_rows = [(op, report.before.ops.get(op, 0), report.after.ops.get(op, 0)) for op in ops
               if report.before.ops.get(op, 0) != report.after.ops.get(op, 0)]
    out = ["<h2 id='exact'>Exact stage: the rewrites</h2>",
           (f"<p>{report.rewrites()} rewrites by {len(changed)} of {len(report.pipeline)} "
           "passes.</p>"), _table(["pass", "rewrites", "skipped (reason)"], rows)]
    if idle:
        out.append(f"<p>No rewrite: {_e(', '.join(idle))}.</p>")
    if op_rows:
        out += ["<p>Operators whose count changed:</p>",
                _table(["op", "before", "after"], op_rows)]
    if report.rolled_back:
        out.append(f"<p>Rolled back (validation): {_e(', '.join(report.rolled_back))}.</p>")
    return out


def _latency(report: Report, figures: list[str]) -> list[str]:
    out = ["<h2 id='latency'>Latency against the original</h2>"]
    if report.timings is None:
        return [*out, ("<p>Not timed (--no-bench, or onnxruntime cannot run the input: see the "
                      "notes).</p>")]
    if report.speed is not None:
        out.append(f"<p>At the deploy level, {LEVELS.get(report.speed.level)}: "
                   + _e("; ".join(r.text() for r in report.speed.ratios))
                   + ". Intervals: 95 % paired bootstrap of interleaved rounds.</p>")
        if report.speed.note:
            out.append(f"<p>{_e(report.speed.note)}</p>")
    out.append(_figure(figures, _latency_plot(report.timings),
                       "Median latency per level and batch size (bars) with the 90th "
                       "percentile (whisker); the speed-up of the delivered model over the "
                       "original above each pair, with its interval."))
    rows = [(t.model, LEVELS.get(t.level, t.level), t.batch, _n(t.stats.median_ms),
             _n(t.stats.p90_ms), "" if t.speedup is None else
             f"{t.speedup:.2f}x" + ("" if not t.speedup_ci else
                                    f" [{t.speedup_ci[0]:.2f}, {t.speedup_ci[1]:.2f}]"))
            for t in report.timings.timings]
    out.append(_table(["model", "level", "batch", "median ms", "p90 ms", "speed-up"], rows))
    out.append(f"<p>{_e(report.timings.provider.used)}, {report.timings.threads} threads, "
               f"{_e(report.timings.cpu)}, onnxruntime {_e(report.timings.onnxruntime)}</p>")
    return out


def _validation(report: Report) -> list[str]:
    result = report.validation
    if result is None:
        return []
    rows = [(o.name, _n(o.max_abs, ".2e"), _n(o.max_rel, ".2e"), _n(o.mean_abs, ".2e"),
             _n(o.cosine, ".6f"), "" if o.top1 is None else f"{o.top1:.2%}",
             "ok" if o.passed else o.message) for o in result.outputs]
    return ["<h2 id='validation'>Validation</h2>",
            (f"<p>{_e(result.inputs)} ({result.batches} batch(es), {result.samples} "
            f"sample(s)), onnxruntime with graph optimizations off: "
            f"<b>{'PASSED' if result.passed else 'FAILED'}</b></p>"),
            _table(["output", "max abs", "max rel", "mean abs", "cosine", "top-1", "verdict"],
                   rows)]


def _lossy(lossy: Compression, report: Report, figures: list[str]) -> list[str]:
    record = lossy.to_dict()
    timings = report.timings.to_dict() if report.timings else None
    out = [f"<h2 id='lossy'>Lossy stage ({_e(stage_name(record))}, {_e(lossy.budget)})</h2>",
           f"<p>{_e(lowrank_summary(record, timings))}</p>",
           f"<p>Guard: {_e(lossy.guard)}</p>", "<h3 id='layers'>Per-layer choices</h3>"]
    rows = [(_name(c.layer), c.op, c.method, c.rank or "-",
             f"{fmt(c.macs_before)} → {fmt(c.macs_after)}",
             f"{c.ms_before:.3f} → {c.ms_after:.3f}" if c.ms_before else "-",
             "" if c.drop_alone is None else f"{c.drop_alone:.3g}", c.options_measured or "",
             c.note) for c in lossy.layers]
    out.append(_table(["layer", "op", "form", "rank", "MACs", "layer ms (alone)",
                       "drop alone", "options measured", "note"], rows))
    if lossy.not_considered:
        out += ["<p>Not considered:</p>", _list(grouped(lossy.not_considered))]
    out += _ladder(lossy, figures)
    if lossy.phases:
        out += ["<h3 id='phases'>The search's phases</h3>",
                _figure(figures, _phases_plot(lossy.phases),
                        f"Seconds per phase ({sum(lossy.phases.values()):.1f} s in all"
                        + ("" if lossy.search_time is None else
                           f", of a {lossy.search_time:.0f} s budget") + ")."),
                _table(["phase", "seconds"], [(k, _n(v, ".1f"))
                                              for k, v in lossy.phases.items()])]
    if lossy.notes:
        out += ["<p>The search's notes:</p>", _list(lossy.notes)]
    return out


def _ladder(lossy: Compression, figures: list[str]) -> list[str]:
    out = ["<h3 id='ladder'>The guard's ladder</h3>"]
    if not lossy.ladder:
        return [*out, ("<p>No model was judged on the ladder (every layer kept dense, or no "
                      "bound).</p>")]
    allowed = lossy.allowed_drop
    out.append("<p>Each rung is a model with some of the search's moves (a move rewrites a "
               "layer or takes it further), judged on the "
               "held-out samples in a fixed order, fewest moves first; the first refusal "
               "ends the ladder and the last rung accepted is delivered"
               + ("" if allowed is None else f" (allowed drop {allowed:.3g})") + ".</p>")
    out.append(_figure(figures, _ladder_plot(lossy),
                       "Each rung's drop (point) and interval (bar) against the allowed drop "
                       "(dashed); green accepted, red refused."))
    rows = [(i + 1, f"{r.moves} of {r.of}", _n(r.drop, ".4f"),
             f"[{r.interval[0]:.4f}, {r.interval[1]:.4f}] at {percent(r.confidence)}",
             r.samples, "accepted" if r.accepted else "refused",
             "" if r.layers_ms is None else
             f"{r.layers_ms:.3f} ({r.layers_ms_dense / r.layers_ms:.2f}x)"
             if r.layers_ms else "")
            for i, r in enumerate(lossy.ladder)]
    out.append(_table(["rung", "moves", "drop", "interval", "samples", "verdict",
                       "layers ms, timed alone (speed-up)"], rows))
    return out


# ------------------------------------------------------------------------------- figures


def _plot(draw: Callable[[Any], None], width: float = 8.0, height: float = 3.2) -> bytes:
    """A figure drawn by ``draw(axes)`` as PNG bytes (matplotlib's Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(width, height), dpi=110)
    try:
        draw(axes)
        figure.tight_layout()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
    finally:
        plt.close(figure)
    return buffer.getvalue()


def _latency_plot(timings: BenchResult) -> bytes:
    groups: dict[tuple[str, int], list] = {}
    for t in timings.timings:
        groups.setdefault((t.level, t.batch), []).append(t)
    models = list(dict.fromkeys(t.model for t in timings.timings))

    def draw(axes: Any) -> None:
        width = 0.8 / max(len(models), 1)
        for g, (key, rows) in enumerate(groups.items()):
            for row in rows:
                i = models.index(row.model)
                x = g + (i - (len(models) - 1) / 2) * width
                median, p90 = row.stats.median_ms, row.stats.p90_ms
                axes.bar(x, median, width * 0.9, color=f"C{i}",
                         label=row.model if g == 0 else None)
                axes.errorbar(x, median, yerr=[[0], [max(p90 - median, 0)]], color="black",
                              capsize=3, linewidth=1)
                if row.speedup is not None and row.reference and row.model != row.reference:
                    low, high = row.speedup_ci or (row.speedup, row.speedup)
                    axes.annotate(f"{row.speedup:.2f}x\n[{low:.2f}, {high:.2f}]",
                                  (x, p90), ha="center", va="bottom", fontsize=8,
                                  xytext=(0, 2), textcoords="offset points")
        axes.set_xticks(range(len(groups)),
                        [f"{LEVELS.get(level, level)}\nbatch {batch}"
                         for level, batch in groups])
        axes.set_ylabel("ms per run (median)")
        axes.margins(y=0.25)
        axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=9, frameon=False)

    return _plot(draw)


def _ladder_plot(lossy: Compression) -> bytes:
    def draw(axes: Any) -> None:
        for i, rung in enumerate(lossy.ladder):
            color = "tab:green" if rung.accepted else "tab:red"
            low, high = rung.interval
            axes.errorbar(i + 1, rung.drop, yerr=[[rung.drop - low], [high - rung.drop]],
                          fmt="o", color=color, capsize=4)
        if lossy.allowed_drop is not None:
            axes.axhline(lossy.allowed_drop, linestyle="--", color="gray",
                         label=f"allowed drop {lossy.allowed_drop:.3g}")
            axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=9, frameon=False)
        axes.axhline(0, color="black", linewidth=0.5)
        axes.set_xticks(range(1, len(lossy.ladder) + 1),
                        [f"{r.moves} of {r.of}" for r in lossy.ladder])
        axes.set_xlabel("moves of the search in the rung's model")
        axes.set_ylabel(f"{lossy.metric} drop")

    return _plot(draw)


def _phases_plot(phases: Mapping[str, float]) -> bytes:
    def draw(axes: Any) -> None:
        names = list(phases)
        axes.barh(range(len(names)), [phases[n] for n in names], color="tab:blue")
        axes.set_yticks(range(len(names)), names)
        axes.invert_yaxis()
        axes.set_xlabel("seconds")

    return _plot(draw, height=0.45 * len(phases) + 1.0)


def _figure(figures: list[str], png: bytes, caption: str) -> str:
    figures.append(caption)
    data = base64.b64encode(png).decode("ascii")
    return (f"<figure><img alt='{_e(caption)}' src='data:image/png;base64,{data}'>"
            f"<figcaption>{_e(caption)}</figcaption></figure>")


# --------------------------------------------------------------------------------- html


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _n(value: float, spec: str = ".3f") -> str:
    return f"{value:{spec}}"


def _name(name: str) -> str:
    """A name shortened for a table, whole in its tooltip."""
    return _Cell(f"<span title='{_e(name)}'>{_e(short_name(name))}</span>")


class _Cell(str):
    """Cell content that is already HTML."""


def _table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    lines = []
    for row in rows:
        cells = []
        for value in row:
            numeric = isinstance(value, int | float) and not isinstance(value, bool)
            content = value if isinstance(value, _Cell) else _e(value)
            cells.append(f"<td class='num'>{content}</td>" if numeric else f"<td>{content}</td>")
        lines.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(lines)}</tbody></table>"


def _list(items: Iterable[str]) -> str:
    return "<ul class='notes'>" + "".join(f"<li>{_e(item)}</li>" for item in items) + "</ul>"

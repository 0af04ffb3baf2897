"""Data-aware low-rank compression of a whole model under a budget.

1. Candidate layers: group-1 Conv, Gemm, MatMul with a constant right-hand weight.
2. Calibration: the original network's responses at every candidate (``calibrate``); the
   response-PCA eigenvalues are each layer's spectrum.
3. Costs: MACs of each form from exact shapes, and onnxruntime latency of each layer alone,
   dense and factorized, from the cached ``LatencyTable``.
4. Ranks: global greedy allocation (``ranks.allocate``) under ``macs=F`` or ``latency=F``
   (fractions of the whole model), over the ranks at which the latency table measures the
   factorized layer at least ``speed_margin`` faster than the dense one: a rewrite is never
   chosen where onnxruntime runs it slower.
5. Factors: layer by layer in network order, Zhang's asymmetric reconstruction (each layer
   fitted to the original responses given the already-approximated inputs), or the linear
   response-PCA solution, or activation-whitened SVD for Gemm/MatMul; ONNX form: k x k conv
   with d filters, then 1 x 1 (``channel``), or two Gemm/MatMul.
6. Verification on every calibration sample the fitting did not use, by the task metric
   (``fuser.search.metric``: agreement, top-1 with labels, a relative-error or SNR bound,
   or the user's function); with ``max_accuracy_drop``, the layer with the largest response
   error gets twice its rank (or goes back to dense) until the upper end of the drop's 95 %
   interval is within bounds. The budget is then a target, not a promise: the report shows
   what was reached, and says when the held-out set is too small to resolve the bound.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import onnx

from fuser import ir as graph_io
from fuser.errors import FuserError
from fuser.passes.lowrank.ranks import DENSE, retained
from fuser.report.compression import Compression, LayerChoice
from fuser.runtime.runners import Progress
from fuser.search.build import agreement, build, outputs, relative_error
from fuser.search.calibrate import Feeds
from fuser.search.latency import LatencyTable
from fuser.search.metric import Judgement, Metric, UserMetric, judge, needed_samples, resolve
from fuser.search.plan import (
    Plan,
    back_off,
    faster_ranks,
    form_of,
    initial_ranks,
    make_plan,
    split,
)

logger = logging.getLogger(__name__)


#: ``accuracy=D`` aims at this latency fraction and backs off until the drop is at most D.
ACCURACY_TARGET = 0.3
#: Calibration samples the factors are fitted to; every other one is held out.
FIT_SAMPLES = 128


def parse_budget(text: str) -> tuple[str, float]:
    """``"latency=0.5"``, ``"macs=0.3"`` or ``"accuracy=0.01"`` -> ``(kind, value)``."""
    kind, _, value = text.partition("=")
    try:
        fraction = float(value)
    except ValueError:
        fraction = -1.0
    if kind not in ("latency", "macs", "accuracy") or not 0 < fraction <= 1:
        raise FuserError(f"--budget {text!r}: expected latency=F, macs=F or accuracy=D "
                         "with 0 < F, D <= 1")
    return kind, fraction


def compress(model: onnx.ModelProto, calibration: Sequence[Feeds], *, budget: str = "macs=0.5",
             max_accuracy_drop: float | None = None, labels: np.ndarray | None = None,
             metric: str | UserMetric | None = None, fit_samples: int = FIT_SAMPLES,
             reconstruction: str = "asymmetric", samples: int = 64, batch: int = 1,
             threads: int = 1, seed: int = 0, table: LatencyTable | None = None,
             speed_margin: float = 0.05,
             input_shapes: Mapping[str, Sequence[int]] | None = None,
             progress: bool | None = None) -> tuple[onnx.ModelProto, Compression]:
    """Compress ``model`` with low-rank rewrites chosen from calibration data.

    Args:
        calibration: feed dicts; the first batches, up to ``fit_samples`` samples, fit the
            factors, every other sample is held out for the end-to-end check.
        budget: ``macs=F`` or ``latency=F``: the whole model's MACs or onnxruntime latency
            as a fraction of the original; ``accuracy=D``: aim at latency
            ``ACCURACY_TARGET`` and back off until the drop is at most D.
        max_accuracy_drop: back off layers until the upper end of the 95 % interval of the
            metric's drop on the held-out samples is at most this.
        labels: one label per calibration sample, in order (the held-out ones are used).
        metric: see ``fuser.search.metric`` (default: agreement, or top1 with labels, for
            class scores, else ``rel-error:0.05``). reconstruction: ``asymmetric``, ``pca``,
            or ``whitened``.
        speed_margin: keep a rewrite only if it is measured this much faster than dense.
        input_shapes: fixed input shapes for the shape inference that finds the layers'
            sizes (a layer of unknown size cannot be considered; the result names it).
        progress: a line on stderr while layers are timed and the model built (None: only
            when stderr is a terminal; the CLI's ``-q`` turns it off).
    """
    started = time.perf_counter()
    kind, fraction, max_accuracy_drop = _settings(budget, reconstruction, calibration,
                                                  max_accuracy_drop)
    fit, held, labels = split(calibration, labels, fit_samples)
    clock = _Phases()
    reference = outputs(model, held)
    judged = resolve(metric, reference, labels)
    clock.lap("reference")
    table = table or LatencyTable(batch=batch, threads=threads)
    table.progress = line = Progress(progress)  # a line on stderr (TTY by default)
    plan = make_plan(model, fit, table, input_shapes, samples, seed)
    clock.lap("plan")
    options, choices = faster_ranks(plan, table, speed_margin)
    ranks = initial_ranks(model, plan, table, kind, fraction, fit, threads, options)
    table.save()
    clock.lap("allocation")
    single = "a single calibration batch: the guard judges on the samples it was fitted to"
    notes = [] if len(calibration) > 1 else [single]
    result, errors, new, verdict, backed_off = _back_off(
        model, plan, ranks, options, fit, held, reference, labels, judged, max_accuracy_drop,
        (samples, seed, reconstruction, input_shapes), notes, line)
    line.clear()
    passed, reason = _guard(verdict, max_accuracy_drop, any(ranks))
    clock.lap("build and guard")
    return result, dataclasses.replace(
        _compression(budget, plan, table, ranks, errors, choices, result, input_shapes,
                     reference, new, judged.name, verdict, backed_off, notes, fit),
        seconds=time.perf_counter() - started, guard=reason, passed=passed,
        phases=clock.seconds)


def _compression(budget: str, plan: Plan, table: LatencyTable, ranks: list[int],
                 errors: list, choices: dict[int, str], result: onnx.ModelProto,
                 input_shapes: Mapping[str, Sequence[int]] | None, reference: dict,
                 new: dict, metric: str, verdict: Any, backed_off: list[str],
                 notes: list[str], fit: list[Feeds]) -> Compression:
    """The search's result record (times and the guard's verdict are added by the caller)."""
    return Compression(
        budget, _layer_choices(plan, table, ranks, errors, choices), plan.total_macs,
        graph_io.mac_count(result, graph_io.infer_shapes(result, input_shapes)) or 0,
        agreement(reference, new), relative_error(reference, new),
        verdict.before if metric == "top1" else None,
        verdict.after if metric == "top1" else None, backed_off, 0.0, notes,
        plan.not_considered, metric=metric, metric_before=verdict.before,
        metric_after=verdict.after, drop=verdict.drop, drop_interval=list(verdict.interval),
        interval_method=verdict.method, held_out_samples=verdict.samples,
        fit_samples=_count(fit))


def _settings(budget: str, reconstruction: str, calibration: Sequence[Feeds],
              max_accuracy_drop: float | None) -> tuple[str, float, float | None]:
    """``(kind, fraction, allowed drop)`` of the budget; FuserError for bad settings."""
    kind, fraction = parse_budget(budget)
    if kind == "accuracy":  # as fast as the accuracy allows: aim low, back off
        kind, fraction, max_accuracy_drop = "latency", ACCURACY_TARGET, fraction
    if reconstruction not in ("asymmetric", "pca", "whitened"):
        raise FuserError("reconstruction must be asymmetric, pca or whitened, not "
                         f"{reconstruction!r}")
    if not calibration:
        raise FuserError("low-rank compression needs calibration data")
    return kind, fraction, max_accuracy_drop


class _Phases:
    """Seconds spent in each phase of the search, lap by lap."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, phase: str) -> None:
        now = time.perf_counter()
        self.seconds[phase] = round(now - self._last, 3)
        self._last = now


def _count(batches: list[Feeds]) -> int:
    return sum(len(next(iter(b.values()))) for b in batches)


def _back_off(model: onnx.ModelProto, plan: Plan, ranks: list[int], options: list[list[int]],
              fit: list[Feeds], held: list[Feeds], reference: dict, labels: np.ndarray | None,
              judged: Metric, allowed: float | None, how: tuple, notes: list[str],
              line: Progress) -> tuple:
    """Build, judge, and double the rank of the worst layer until the guard accepts."""
    samples, seed, reconstruction, input_shapes = how
    backed_off = []
    while True:
        line.show(f"low-rank: building the model ({len(backed_off)} back-off steps so far)")
        result, errors = build(model, plan.layers, plan.keys, ranks, plan.targets, fit,
                               samples, seed, reconstruction, input_shapes)
        new = outputs(result, held)
        verdict = judge(judged, reference, new, labels, seed)
        if allowed is None or not any(ranks) or _accepted(verdict, allowed):
            return result, errors, new, verdict, backed_off
        worst = max((e, i) for i, e in enumerate(errors) if ranks[i] != DENSE)[1]
        before, ranks[worst] = ranks[worst], back_off(ranks[worst], options[worst])
        name = plan.layers[worst].name
        backed_off.append(name)
        notes.append(f"backed off {name}: rank {before} -> {ranks[worst] or 'dense'} "
                     f"(response error {errors[worst]:.3f}, {judged.name} drop "
                     f"{verdict.drop:.3f}, 95% interval up to {verdict.interval[1]:.3f})")


def _accepted(verdict: Judgement, allowed: float) -> bool:
    """Within bounds on the interval's upper end; when this many samples cannot resolve the
    bound at all, the point estimate stops the back-off (the guard then says so)."""
    if verdict.resolvable(allowed):
        return verdict.within(allowed)
    return verdict.drop <= allowed


def _guard(verdict: Judgement, allowed: float | None, compressed: bool
           ) -> tuple[bool | None, str]:
    """The guard's verdict (None without a bound) and its reason in one line."""
    interval = (f"{verdict.drop:.2%} [95% interval {verdict.interval[0]:.2%}, "
                f"{verdict.interval[1]:.2%}] on {verdict.samples} held-out samples")
    if allowed is None:
        return None, f"drop {interval}; no bound"
    if not compressed:
        return True, "every layer kept dense: the model is the original"
    if verdict.within(allowed):
        return True, f"drop {interval} within {allowed:.2%}"
    if not verdict.resolvable(allowed):
        return False, (f"not resolved: {verdict.samples} held-out samples cannot resolve a "
                       f"drop of {allowed:.2%} (need {needed_samples(allowed)}; give more "
                       "calibration samples or a looser bound)")
    if verdict.drop <= allowed:
        return False, (f"not resolved: drop {interval} reaches past {allowed:.2%}; give "
                       "more calibration samples or a looser bound")
    return False, f"refused: drop {interval} exceeds {allowed:.2%}"


def _layer_choices(plan: Plan, table: LatencyTable, ranks: list[int],
                   errors: list[float | None], choices: dict[int, str]) -> list[LayerChoice]:
    rows = []
    for i, layer in enumerate(plan.layers):
        dense = ranks[i] == DENSE
        method = "dense" if dense else form_of(layer)
        rows.append(LayerChoice(
            layer.name, layer.node.op, method, ranks[i], layer.macs(),
            layer.macs() if dense else layer.macs(method, ranks[i]), plan.dense_ms[i],
            plan.dense_ms[i] if dense else table.interpolate(layer, method, ranks[i],
                                                             plan.grids[i]),
            1.0 if dense else retained(plan.spectra[i], ranks[i]), errors[i],
            choices.get(i, "")))
    return rows

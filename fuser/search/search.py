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
6. Verification on held-out calibration batches (top-1 agreement with the original, or
   accuracy with labels); with ``max_accuracy_drop``, the layer with the largest response
   error gets twice its rank (or goes back to dense) until the drop is within bounds. The
   budget is then a target, not a promise: the report shows what was reached.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence

import numpy as np
import onnx

from fuser import ir as graph_io
from fuser.errors import FuserError
from fuser.passes.lowrank.ranks import DENSE, retained
from fuser.report.compression import Compression, LayerChoice
from fuser.search.build import build, verify
from fuser.search.calibrate import Feeds
from fuser.search.latency import LatencyTable
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
             reconstruction: str = "asymmetric", samples: int = 64, batch: int = 1,
             threads: int = 1, seed: int = 0, table: LatencyTable | None = None,
             speed_margin: float = 0.05,
             input_shapes: Mapping[str, Sequence[int]] | None = None,
             ) -> tuple[onnx.ModelProto, Compression]:
    """Compress ``model`` with low-rank rewrites chosen from calibration data.

    Args:
        calibration: feed dicts; the last quarter (at least one batch when there are two or
            more) is held out for the end-to-end check.
        budget: ``macs=F`` or ``latency=F``: the whole model's MACs or onnxruntime latency
            as a fraction of the original; ``accuracy=D``: aim at latency
            ``ACCURACY_TARGET`` and back off until the drop is at most D.
        max_accuracy_drop: back off layers until the held-out top-1 agreement (or accuracy,
            with ``labels``) drops by at most this much.
        labels: one label per calibration sample, in order (the held-out ones are used).
        reconstruction: ``asymmetric`` (default), ``pca`` (Zhang's linear solution), or
            ``whitened`` (activation-whitened SVD for Gemm/MatMul, response PCA for Conv).
        speed_margin: keep a rewrite only if its measured layer latency is at least this
            fraction below the dense layer's.
        input_shapes: fixed input shapes for the shape inference that finds the layers'
            sizes (a layer of unknown size cannot be considered; the result names it).
    """
    started = time.perf_counter()
    kind, fraction = parse_budget(budget)
    if kind == "accuracy":  # as fast as the accuracy allows: aim low, back off
        kind, fraction, max_accuracy_drop = "latency", ACCURACY_TARGET, fraction
    if reconstruction not in ("asymmetric", "pca", "whitened"):
        raise FuserError("reconstruction must be asymmetric, pca or whitened, not "
                         f"{reconstruction!r}")
    if not calibration:
        raise FuserError("low-rank compression needs calibration data")
    fit, held, labels = split(calibration, labels)
    table = table or LatencyTable(batch=batch, threads=threads)
    plan = make_plan(model, fit, table, input_shapes, samples, seed)
    options, choices = faster_ranks(plan, table, speed_margin)
    ranks = initial_ranks(model, plan, table, kind, fraction, fit, threads, options)
    table.save()

    notes, backed_off = [], []
    while True:
        result, errors = build(model, plan.layers, plan.keys, ranks, plan.targets, fit,
                                samples, seed, reconstruction, input_shapes)
        agreement, relative, acc_before, acc_after = verify(model, result, held, labels)
        drop = (acc_before - acc_after) if labels is not None else 1.0 - (agreement or 1.0)
        if max_accuracy_drop is None or drop <= max_accuracy_drop or not any(ranks):
            break
        worst = max((e, i) for i, e in enumerate(errors) if ranks[i] != DENSE)[1]
        before, ranks[worst] = ranks[worst], back_off(ranks[worst], options[worst])
        name = plan.layers[worst].name
        backed_off.append(name)
        notes.append(f"backed off {name}: rank {before} -> {ranks[worst] or 'dense'} "
                     f"(response error {errors[worst]:.3f}, accuracy drop {drop:.3f})")
    return result, Compression(
        budget, _layer_choices(plan, table, ranks, errors, choices), plan.total_macs,
        graph_io.mac_count(result, graph_io.infer_shapes(result, input_shapes)) or 0,
        agreement, relative, acc_before, acc_after, backed_off, time.perf_counter() - started,
        notes, plan.not_considered)


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

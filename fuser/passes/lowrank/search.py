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
from fuser.passes.lowrank import factorize
from fuser.passes.lowrank.calibrate import layer_outputs, responses
from fuser.passes.lowrank.latency import LatencyTable
from fuser.passes.lowrank.layers import Layer, candidates
from fuser.passes.lowrank.ranks import DENSE, allocate, retained
from fuser.passes.lowrank.rewrite import replace_conv, replace_matmul
from fuser.passes.match import Names, describe
from fuser.report.compression import Compression, LayerChoice
from fuser.runtime import sessions as runtime

logger = logging.getLogger(__name__)
Feeds = Mapping[str, np.ndarray]


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
    split = max(1, len(calibration) * 3 // 4) if len(calibration) > 1 else 1
    fit, held = list(calibration[:split]), list(calibration[split:]) or list(calibration)
    if labels is not None:
        sizes = [len(next(iter(b.values()))) for b in calibration]
        labels = np.asarray(labels)[sum(sizes[:split]) if len(calibration) > 1 else 0:
                                    sum(sizes)]
    table = table or LatencyTable(batch=batch, threads=threads)
    layers, not_considered = _considered(model, input_shapes)
    keys = [layer.node.outputs[0].name for layer in layers]
    original = layer_outputs(model, keys, fit)
    targets = [responses(layer, original[k], samples, seed + i)
               for i, (layer, k) in enumerate(zip(layers, keys, strict=True))]
    spectra = [_spectrum(y) for y in targets]
    total_macs = graph_io.mac_count(model, graph_io.infer_shapes(model, input_shapes)) or 0
    dense_ms = [table.ms(layer) for layer in layers]
    grids = [_grid(layer) for layer in layers]

    def factor_cost(index: int, rank: int) -> float:
        layer = layers[index]
        if kind == "macs":
            return layer.macs(_method(layer), rank)
        return table.interpolate(layer, _method(layer), rank, grids[index])

    if kind == "macs":
        dense = [layer.macs() for layer in layers]
        target, fixed = fraction * total_macs, total_macs - sum(dense)
    else:
        whole = runtime.median_ms(model, fit[0], threads=threads)
        dense, target, fixed = dense_ms, fraction * whole, max(whole - sum(dense_ms), 0.0)
    options, choices = [], {}
    for i, layer in enumerate(layers):  # only ranks measurably faster than the dense layer
        step = max(1, layer.out_channels // 64)
        faster = [r for r in range(layer.max_rank(_method(layer)), 0, -step)
                  if table.interpolate(layer, _method(layer), r, grids[i])
                  < (1 - speed_margin) * dense_ms[i]]
        options.append(faster)
        if not faster:
            choices[i] = "no rank is faster than the dense layer"
    ranks = allocate(spectra, factor_cost, dense, options, target, fixed)
    table.save()

    notes, backed_off = [], []
    while True:
        result, errors = _build(model, layers, keys, ranks, targets, fit, samples, seed,
                                reconstruction, input_shapes)
        agreement, relative, acc_before, acc_after = _verify(model, result, held, labels)
        drop = (acc_before - acc_after) if labels is not None else 1.0 - (agreement or 1.0)
        if max_accuracy_drop is None or drop <= max_accuracy_drop or not any(ranks):
            break
        worst = max((e, i) for i, e in enumerate(errors) if ranks[i] != DENSE)[1]
        before, ranks[worst] = ranks[worst], _back_off(ranks[worst], options[worst])
        backed_off.append(layers[worst].name)
        notes.append(f"backed off {layers[worst].name}: rank {before} -> "
                     f"{ranks[worst] or 'dense'} (response error {errors[worst]:.3f}, "
                     f"accuracy drop {drop:.3f})")
    layer_choices = []
    for i, layer in enumerate(layers):
        method = _method(layer) if ranks[i] != DENSE else "dense"
        macs_after = layer.macs(method, ranks[i]) if ranks[i] != DENSE else layer.macs()
        ms_after = table.interpolate(layer, method, ranks[i], grids[i]) \
            if ranks[i] != DENSE else dense_ms[i]
        layer_choices.append(LayerChoice(
            layer.name, layer.node.op, method, ranks[i], layer.macs(), macs_after, dense_ms[i],
            ms_after, retained(spectra[i], ranks[i]) if ranks[i] != DENSE else 1.0,
            errors[i], choices.get(i, "")))
    return result, Compression(
        budget, layer_choices, total_macs,
        graph_io.mac_count(result, graph_io.infer_shapes(result, input_shapes)) or 0,
        agreement, relative, acc_before, acc_after, backed_off, time.perf_counter() - started,
        notes, not_considered)


def _back_off(rank: int, options: list[int]) -> int:
    """Double the rank, within the ranks that stay faster than dense; else keep it dense."""
    larger = [r for r in options if r >= 2 * rank]
    return min(larger) if larger else DENSE


def _layers(model: onnx.ModelProto,
            input_shapes: Mapping[str, Sequence[int]] | None = None) -> list[Layer]:
    return _considered(model, input_shapes)[0]


def _considered(model: onnx.ModelProto, input_shapes: Mapping[str, Sequence[int]] | None
                ) -> tuple[list[Layer], list[str]]:
    """The candidate layers, and each Conv/Gemm/MatMul left out with the reason."""
    graph = graph_io.to_graph(model)
    with graph_io.annotated_at(graph, model, input_shapes):
        layers, skipped = candidates(graph)
    left = [f"{describe(la.node)}: weight on the left (W @ X) is not factorized"
            for la in layers if la.weight_on_left]
    return [la for la in layers if not la.weight_on_left], [*skipped, *left]


def _method(layer: Layer) -> str:
    return "channel" if layer.is_conv else "svd"


def _spectrum(y: np.ndarray) -> np.ndarray:
    centered = y - y.mean(axis=1, keepdims=True)
    values = np.linalg.eigvalsh(centered @ centered.T / max(y.shape[1], 1))
    return np.clip(values[::-1], 0, None)


def _grid(layer: Layer) -> list[int]:
    """Ranks at which the latency table is measured (interpolated in between)."""
    method = _method(layer)
    ranks = {layer.rank_for(method, f) for f in (0.1, 0.2, 0.35, 0.5, 0.7, 0.9)}
    ranks.add(1)
    return sorted(r for r in ranks if r >= 1)


def _build(model: onnx.ModelProto, layers: list[Layer], keys: list[str], ranks: list[int],
           targets: list[np.ndarray], fit: list[Feeds], samples: int, seed: int,
           reconstruction: str, input_shapes: Mapping[str, Sequence[int]] | None = None,
           ) -> tuple[onnx.ModelProto, list[float | None]]:
    """Rewrite the chosen layers in network order; return the model and response errors."""
    current, errors = model, [None] * len(layers)
    for i, key in enumerate(keys):
        if ranks[i] == DENSE:
            continue
        graph = graph_io.to_graph(current)
        with graph_io.annotated_at(graph, current, input_shapes):  # the export keeps the
            layer = next(la for la in candidates(graph)[0]          # declared interface
                         if la.node.outputs[0].name == key)
        if reconstruction == "whitened" and _whitenable(layer):
            factors, fitted = _whitened(current, layer, ranks[i], fit)
        else:
            if reconstruction == "asymmetric":
                seen = layer_outputs(current, [key], fit)[key]
                inputs = responses(layer, seen, samples, seed + i)
                factors = factorize.asymmetric(layer.weight, targets[i], inputs, ranks[i])
            else:  # pca, and the convolutions under "whitened"
                inputs = targets[i]
                factors = factorize.response_pca(layer.weight, inputs, ranks[i])
            second = factors.weights[1].reshape(len(inputs), -1)
            fitted = second @ (factors.mixing @ inputs) + factors.bias_shift[:, None]
        errors[i] = float(np.linalg.norm(fitted - targets[i]) / max(np.linalg.norm(targets[i]),
                                                                    1e-30))
        shift = factors.bias_shift if factors.bias_shift is not None else 0.0
        bias = shift + (layer.bias if layer.bias is not None else 0.0)
        bias = None if np.isscalar(bias) and bias == 0.0 else bias
        names = Names(graph)
        if layer.is_conv:
            replace_conv(graph, layer.node, "channel", factors.weights, bias, layer.geometry,
                         names)
        else:
            replace_matmul(graph, layer.node, *factors.weights, bias, names)
        graph.cleanup().toposort()
        current = graph_io.to_model(graph, template=model)
    return current, errors


def _whitenable(layer: Layer) -> bool:
    """Gemm/MatMul whose input rows are the samples (no transA)."""
    return not layer.is_conv and not layer.node.attrs.get("transA", 0)


def _whitened(current: onnx.ModelProto, layer: Layer, rank: int,
              fit: list[Feeds]) -> tuple[factorize.Factors, np.ndarray]:
    """Activation-whitened SVD from the layer's inputs in the approximated network."""
    name = layer.node.inputs[0].name
    batches = layer_outputs(current, [name], fit)[name]
    x = np.concatenate([b.reshape(-1, b.shape[-1]) for b in batches]).T.astype(np.float64)
    factors = factorize.whitened_svd(layer.weight, x, rank)
    a, b = factors.weights
    return factors, b @ (a @ x)


def _verify(model: onnx.ModelProto, result: onnx.ModelProto, held: list[Feeds],
            labels: np.ndarray | None) -> tuple[float | None, float, float | None, float | None]:
    """Top-1 agreement, relative L2 error, accuracy before/after (with labels)."""
    ref_sess, new_sess = runtime.session(model), runtime.session(result)
    refs, news = [], []
    for feeds in held:
        refs.append(ref_sess.run(None, dict(feeds))[0])
        news.append(new_sess.run(None, dict(feeds))[0])
    ref, new = np.concatenate(refs), np.concatenate(news)
    relative = float(np.linalg.norm(new - ref) / max(np.linalg.norm(ref), 1e-30))
    if ref.ndim < 2 or ref.shape[-1] < 2:
        return None, relative, None, None
    ref_top, new_top = ref.reshape(-1, ref.shape[-1]).argmax(1), new.reshape(
        -1, new.shape[-1]).argmax(1)
    agreement = float(np.mean(ref_top == new_top))
    if labels is None:
        return agreement, relative, None, None
    return agreement, relative, float(np.mean(ref_top == labels)), float(
        np.mean(new_top == labels))

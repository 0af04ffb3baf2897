"""Which layers int8 hurts most (``fuser.search.int8``'s step 3): each layer's own error
from one run of the float and the all-int8 model, then the user's metric on the layers of
largest error, each kept float alone.

A layer's own error is the growth of the relative error across its region
(``qdq.regions``): ``max e(out) - e(x)`` over the tensors ``out`` leaving it, with
``e(t) = ||t_int8 - t_float|| / ||t_float||`` on the value the network goes on with (after
the tensor's Q/DQ pair where it has one). Its input's rounding and its weights' count; the
error it inherits is its producers'. onnxruntime's ``qdq_loss_debug`` compares the same
tensors.
"""

from __future__ import annotations

import time

import numpy as np
import onnx

from fuser import ir as graph_io
from fuser.runtime import sessions as runtime
from fuser.search import sensitivity
from fuser.search.build import outputs
from fuser.search.calibrate import Feeds
from fuser.search.metric import Metric, point_drop
from fuser.search.qdq import Quantizer, first_batches
from fuser.search.sensitivity import MIN_PROBE_SAMPLES

#: Layers of largest own error whose revert gain the user's metric measures (a build and
#: a run over the probe samples each).
METRIC_RANKED = 8


def metric_order(quantizer: Quantizer, own: list[float], probe: sensitivity.Probe,
                 metric: Metric, until: float | None) -> tuple[list[int], dict[int, float]]:
    """The order layers go into int8, and each measured layer's gain: least own error
    first; then the ``METRIC_RANKED`` layers of largest error are ranked by the user's
    metric on the probe samples, the all-int8 model against it with that layer (and its
    region) kept float alone, as NNCF's accuracy control ranks what it reverts. Those that
    gained go last, the most gained last. Until ``until``."""
    order = sorted(range(len(own)), key=lambda i: own[i])
    reference, labels = probe.reference, probe.labels
    base = point_drop(metric, reference, outputs(quantizer.quantized(), probe.batches), labels)
    gains: dict[int, float] = {}
    for i in order[::-1][:METRIC_RANKED]:
        if until is not None and time.perf_counter() > until:
            break
        kept = outputs(quantizer.quantized({quantizer.layers[i]}), probe.batches)
        gains[i] = base - point_drop(metric, reference, kept, labels)
    gained = sorted((i for i in gains if gains[i] > 0), key=lambda i: gains[i])
    return [i for i in order if i not in gained] + gained, gains


def layer_errors(model: onnx.ModelProto, quantized: onnx.ModelProto,
                 regions: dict[str, list[str]], batches: list[Feeds]) -> list[float]:
    """Each layer's own error in ``quantized``: the growth of the relative error across its
    region (``qdq.regions``), ``max e(out) - e(x)`` over the tensors ``out`` that leave it,
    at 0 at least; from one run of each model on ``batches`` with those tensors kept. A
    layer whose tensors the quantized model renamed gets the largest error of the others
    (it goes last)."""
    nodes = {n.name: n for n in model.graph.node}
    pairs = [(nodes[layer].input[0], _leaving(model, region)) for layer, region
             in regions.items()]
    present = _tensors(quantized)
    # the value the network goes on with: after its Q/DQ pair where it has one (the
    # quantizer drops a Relu that the Q's range clips, and its tensor then holds the
    # Conv's output)
    seen = {t: f"{t}_DequantizeLinear_Output" if f"{t}_DequantizeLinear_Output" in present
            else t for x, out in pairs for t in [x, *out]}
    watched = sorted(t for t in seen if t in _tensors(model) and seen[t] in present)
    squares = {t: np.zeros(2) for t in watched}  # ||float||^2, ||int8 - float||^2
    runs = [(runtime.session(graph_io.with_outputs(model, watched), level="all"), watched),
            (runtime.session(graph_io.with_outputs(quantized, [seen[t] for t in watched]),
                             level="all"), [seen[t] for t in watched])]
    for feeds in batches:
        ref, new = (dict(zip(watched, sess.run(names, dict(feeds)), strict=True))
                    for sess, names in runs)
        for t in watched:
            a = ref[t].astype(np.float64)
            squares[t] += (np.sum(a * a), np.sum((new[t] - a) ** 2))
    error = {t: float(np.sqrt(d / max(f, 1e-30))) for t, (f, d) in squares.items()}
    own = [max(error[y] for y in out) - error[x]
           if x in error and out and all(y in error for y in out) else None for x, out in pairs]
    worst = max((e for e in own if e is not None), default=0.0)
    return [worst if e is None else max(e, 0.0) for e in own]


def _leaving(model: onnx.ModelProto, region: list[str]) -> list[str]:
    """The tensors a region's nodes write that a node outside it, or the graph, reads."""
    inside = set(region)
    written = [t for n in model.graph.node if n.name in inside for t in n.output]
    read = {t for n in model.graph.node if n.name not in inside for t in n.input}
    read.update(o.name for o in model.graph.output)
    return [t for t in written if t in read]


def _tensors(model: onnx.ModelProto) -> set[str]:
    """The names of the graph's inputs and of every node output."""
    return {i.name for i in model.graph.input} | {t for n in model.graph.node for t in n.output}


def ranked(model: onnx.ModelProto, quantizer: Quantizer, whole: onnx.ModelProto,
           fit: tuple[list[Feeds], np.ndarray | None], metric: Metric, until: float | None,
           notes: list[str]) -> tuple[list[float], list[int]]:
    """Each layer's own error, and the order the layers go into int8 (``metric_order``);
    ``fit``: the fitting batches and their labels. A note says what the metric ranked."""
    batches, labels = fit
    own = layer_errors(quantizer.model, whole, quantizer.regions,
                       first_batches(batches, MIN_PROBE_SAMPLES))
    probe = sensitivity.probe(model, batches, labels, MIN_PROBE_SAMPLES)
    order, gains = metric_order(quantizer, own, probe, metric, until)
    if gains:
        notes.append(f"the metric measured with each of the {len(gains)} layers of largest "
                     f"error kept float alone ({sum(g > 0 for g in gains.values())} gained): "
                     "they go into int8 last, the most gained last")
    return own, order

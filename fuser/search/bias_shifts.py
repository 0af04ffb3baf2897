"""The mean output shift each quantized layer's own rounding makes, for empirical bias
correction (Nagel et al. 2019, "Data-Free Quantization Through Weight Equalization and
Bias Correction"; NNCF's fast bias correction): ``qdq.Quantizer(correct_bias=True)``
subtracts it from the float bias before quantizing again.

For a layer ``y = W * x + b`` quantized to ``y' = W' * x' + b``, the shift per output
channel is ``E[y' - y] = E[(W' - W) * x'] + W * E[x' - x]``; the second term is the shift
its input brings from upstream layers (``sum W dx`` per channel), which those layers
correct themselves, so only the first is this layer's: ``E[y' - y] - sum W dx``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
from onnx import numpy_helper

from fuser import ir as graph_io
from fuser.runtime import sessions as runtime
from fuser.search.calibrate import Feeds


def own_shifts(model: onnx.ModelProto, quantized: onnx.ModelProto, layers: list[str],
               batches: Sequence[Feeds]) -> dict[str, np.ndarray]:
    """Per Conv or Gemm layer, the mean shift of its output in ``quantized`` that its own
    rounding makes, per output channel: ``E[y_int8 - y]`` (over every axis but the channels)
    less the part its input's mean shift ``dx`` carries through it, ``sum W dx`` (a Conv
    sums its kernel; padding ignored). The same node in both models (the quantizer may
    rename the tensor a dropped Relu wrote); the shift upstream layers make is theirs to
    correct, so correcting every layer at once does not count it twice."""
    nodes = [{n.name: n for n in m.graph.node} for m in (model, quantized)]
    layers = [la for la in layers if la in nodes[1] and nodes[0][la].op_type in ("Conv", "Gemm")]
    watched = [[t for la in layers for t in (n[la].input[0], n[la].output[0])] for n in nodes]
    runs = [runtime.session(graph_io.with_outputs(m, w), level="all")
            for m, w in zip((model, quantized), watched, strict=True)]
    sums: dict[int, np.ndarray] = {}
    for feeds in batches:
        ref, new = (s.run(w, dict(feeds)) for s, w in zip(runs, watched, strict=True))
        for k, (a, b) in enumerate(zip(ref, new, strict=True)):
            if a.ndim >= 2 and a.shape == b.shape:
                axes = tuple(d for d in range(a.ndim) if d != 1)
                total = (b.astype(np.float64) - a).sum(axis=axes) / (a.size // a.shape[1])
                sums[k] = sums.get(k, 0.0) + total / len(batches)
    weights = {t.name: t for t in model.graph.initializer}
    out = {}
    for k, layer in enumerate(layers):
        node = nodes[0][layer]
        if 2 * k in sums and 2 * k + 1 in sums and node.input[1] in weights:
            w = numpy_helper.to_array(weights[node.input[1]]).astype(np.float64)
            out[layer] = sums[2 * k + 1] - _carried(node, w, sums[2 * k])
    return out


def _carried(node: onnx.NodeProto, w: np.ndarray, dx: np.ndarray) -> np.ndarray:
    """``sum W dx`` per output channel: what an input shift ``dx`` per channel moves the
    output of ``node`` by."""
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    if node.op_type == "Gemm":
        w = w if attrs.get("transB", 0) else w.T
        return attrs.get("alpha", 1.0) * (w @ dx)
    groups = attrs.get("group", 1)
    per = w.shape[1]
    summed = w.reshape(w.shape[0], per, -1).sum(axis=2)  # (M, C / g)
    group_of = np.arange(w.shape[0]) // (w.shape[0] // groups)
    return np.array([summed[n] @ dx[g * per:(g + 1) * per] for n, g in enumerate(group_of)])

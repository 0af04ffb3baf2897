"""Cross-layer equalization (Nagel et al. 2019, "Data-free quantization"): the weight ranges
of two consecutive layers made equal per channel, the float model unchanged.

For ``Conv1 -> f -> Conv2`` with ``f`` positive-homogeneous per channel
(``f(x / s) = f(x) / s`` for ``s > 0``: Relu, LeakyRelu, PRelu, MaxPool, AveragePool,
Identity), channel ``i`` of Conv1's output can be divided by ``s_i`` and Conv2's input
channel ``i`` multiplied by it:

    W1[i] / s_i,  b1[i] / s_i,  W2[:, i] * s_i        (W2[i] * s_i for a depthwise Conv2)

With ``r1_i = max |W1[i]|`` and ``r2_i = max |W2[:, i]|``, ``s_i = sqrt(r1_i / r2_i)``
makes both ranges ``sqrt(r1_i r2_i)``: per-channel int8 weights lose less to the channels
whose range is far below their tensor's, and the per-tensor activation between them is not
dominated by a few wide channels. Clip (ReLU6), hardswish and Sigmoid are not homogeneous:
pairs through them are left alone, as are weights another node reads.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from fuser.search.build import kept

#: The ops that commute with a positive per-channel scale.
HOMOGENEOUS = ("Relu", "LeakyRelu", "PRelu", "MaxPool", "AveragePool", "Identity")
#: Passes over the pairs (each pass moves every pair towards equal ranges).
ROUNDS = 3


def equalized(model: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    """A copy of ``model`` with every eligible Conv pair equalized, and how many pairs."""
    out = kept(model)
    pairs = conv_pairs(out)
    weights = {t.name: t for t in out.graph.initializer}
    arrays = {name: numpy_helper.to_array(weights[name]).astype(np.float64)
              for first, second in pairs for name in [*first.input[1:3], second.input[1]]}
    for _ in range(ROUNDS):
        for first, second in pairs:
            _equalize(first, second, arrays)
    for name, array in arrays.items():
        dtype = numpy_helper.to_array(weights[name]).dtype
        weights[name].CopyFrom(numpy_helper.from_array(array.astype(dtype), name))
    return out, len(pairs)


def conv_pairs(model: onnx.ModelProto) -> list[tuple[onnx.NodeProto, onnx.NodeProto]]:
    """``(Conv1, Conv2)`` joined by homogeneous single-consumer ops, both weights constant
    and read by their node alone, Conv2 of group 1 or depthwise over Conv1's channels."""
    weights = {t.name for t in model.graph.initializer}
    readers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    outputs = {o.name for o in model.graph.output}

    def own(node: onnx.NodeProto) -> bool:
        return all(n in weights and len(readers[n]) == 1 for n in node.input[1:])

    pairs = []
    for node in model.graph.node:
        if node.op_type != "Conv" or not own(node):
            continue
        tensor, nxt = node.output[0], None
        while tensor not in outputs and len(readers.get(tensor, [])) == 1:
            nxt = readers[tensor][0]
            if nxt.op_type not in HOMOGENEOUS or nxt.input[0] != tensor:
                break
            tensor = nxt.output[0]
        if nxt is not None and nxt.op_type == "Conv" and nxt.input[0] == tensor and own(nxt) \
                and _group(nxt) in (1, _channels(nxt, model)):
            pairs.append((node, nxt))
    return pairs


def _equalize(first: onnx.NodeProto, second: onnx.NodeProto, arrays: dict) -> None:
    w1, w2 = arrays[first.input[1]], arrays[second.input[1]]
    depthwise = _group(second) > 1
    r1 = np.abs(w1).reshape(w1.shape[0], -1).max(axis=1)
    r2 = np.abs(w2).reshape(w2.shape[0], -1).max(axis=1) if depthwise else \
        np.abs(w2).transpose(1, 0, 2, 3).reshape(w2.shape[1], -1).max(axis=1)
    if r1.shape != r2.shape:
        return
    scale = np.where((r1 > 0) & (r2 > 0), np.sqrt(r1 / np.maximum(r2, 1e-300)), 1.0)
    arrays[first.input[1]] = w1 / scale.reshape(-1, *[1] * (w1.ndim - 1))
    if len(first.input) > 2 and first.input[2]:
        arrays[first.input[2]] = arrays[first.input[2]] / scale
    shape = (-1, *[1] * (w2.ndim - 1)) if depthwise else (1, -1, *[1] * (w2.ndim - 2))
    arrays[second.input[1]] = w2 * scale.reshape(shape)


def _group(node: onnx.NodeProto) -> int:
    return next((a.i for a in node.attribute if a.name == "group"), 1)


def _channels(node: onnx.NodeProto, model: onnx.ModelProto) -> int:
    """A Conv's output channels (its weight's first dimension)."""
    weight = next(t for t in model.graph.initializer if t.name == node.input[1])
    return int(weight.dims[0])

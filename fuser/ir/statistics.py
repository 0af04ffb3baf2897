"""Model statistics for reports: op histogram, parameter count, MACs, float weights.

Part of the graph adapter (``fuser.ir`` re-exports these): they read ONNX protos and
onnx-graphsurgeon constants, never write them.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Iterator

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from fuser.ir.checker import Shapes, infer_shapes


def op_histogram(model: onnx.ModelProto) -> dict[str, int]:
    """Count of nodes per op type in the main graph (custom domains as ``domain::Op``)."""
    counts = collections.Counter(
        f"{n.domain}::{n.op_type}" if n.domain not in ("", "ai.onnx") else n.op_type
        for n in model.graph.node
    )
    return dict(sorted(counts.items()))


def param_count(model: onnx.ModelProto) -> int:
    """Number of elements in floating-point initializers (the model's trainable size)."""
    total = 0
    for tensor in model.graph.initializer:
        if tensor.data_type in _FLOAT_TYPES:
            total += math.prod(tensor.dims)
    return total


_FLOAT_TYPES = {
    onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE,
    onnx.TensorProto.BFLOAT16,
}


def mac_count(model: onnx.ModelProto, shapes: Shapes | None = None) -> int | None:
    """Multiply-accumulates of Conv, ConvTranspose, Gemm, MatMul and the recurrent layers
    (LSTM, GRU, RNN) for one inference.

    Dynamic dimensions (a symbolic batch) count as 1, so the figure is per sample. Layers
    whose shapes are unknown are left out (``layer_coverage`` says which); returns ``None``
    when no counted node has known shapes.
    """
    return count_macs(model, shapes)[0]


def layer_macs(model: onnx.ModelProto, shapes: Shapes | None = None) -> dict[str, int]:
    """Each counted layer's MACs per sample, by node name (those with known shapes)."""
    shapes = infer_shapes(model) if shapes is None else shapes
    found = {node.name: _node_macs(node, shapes) for node in model.graph.node
             if node.op_type in _MAC_OPS and node.domain in ("", "ai.onnx")}
    return {name: macs for name, macs in found.items() if macs is not None}


def count_macs(model: onnx.ModelProto, shapes: Shapes | None = None
               ) -> tuple[int | None, dict[str, list[int]], list[str]]:
    """``(MACs of the layers with known shapes, {op: [known, total]}, unknown layers)``.

    The layers are the Conv, ConvTranspose, Gemm, MatMul, LSTM, GRU and RNN nodes of the main
    graph; a layer is unknown when shape inference could not give it the shapes its MACs need
    (its name, or its output's, is listed).
    """
    shapes = infer_shapes(model) if shapes is None else shapes
    total, counted = 0, False
    coverage: dict[str, list[int]] = {}
    unknown: list[str] = []
    for node in model.graph.node:
        if node.op_type not in _MAC_OPS or node.domain not in ("", "ai.onnx"):
            continue
        entry = coverage.setdefault(node.op_type, [0, 0])
        entry[1] += 1
        macs = _node_macs(node, shapes)
        if macs is None:
            unknown.append(f"{node.op_type} '{node.name or node.output[0]}'")
            continue
        entry[0] += 1
        total += macs
        counted = True
    return (total if counted or not coverage else None), dict(sorted(coverage.items())), unknown


_MAC_OPS = {"Conv", "ConvTranspose", "Gemm", "MatMul", "LSTM", "GRU", "RNN"}


def _dims(shapes: Shapes, name: str) -> list[int] | None:
    """The tensor's dims with a symbolic first dim (the batch) counted as 1; None when any
    other dim is unknown or symbolic (the layer's MACs are then unknown, not guessed)."""
    if name not in shapes:
        return None
    dims = []
    for axis, d in enumerate(shapes[name][1]):
        if isinstance(d, int) and d > 0:
            dims.append(d)
        elif axis == 0 and isinstance(d, str | int):  # a named batch, or 0/-1 for "any"
            dims.append(1)
        else:
            return None
    return dims


def _node_macs(node: onnx.NodeProto, shapes: Shapes) -> int | None:
    if node.op_type not in _MAC_OPS or len(node.input) < 2:
        return None
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    if node.op_type in ("LSTM", "GRU", "RNN"):
        return _recurrent_macs(node, attrs, shapes)
    x, w = _dims(shapes, node.input[0]), _dims(shapes, node.input[1])
    y = _dims(shapes, node.output[0])
    if node.op_type == "Conv":
        if w is None or y is None:
            return None
        return math.prod(y) * math.prod(w[1:])  # every output: C/group * kernel MACs
    if node.op_type == "ConvTranspose":
        if w is None or x is None:
            return None
        return math.prod(x) * math.prod(w[1:])  # every input pixel scatters M/group * kernel
    if node.op_type == "Gemm":
        return _gemm_macs(attrs, shapes, node)
    if x is None or y is None:  # MatMul
        return None
    return math.prod(y) * x[-1]


def _recurrent_macs(node: onnx.NodeProto, attrs: dict, shapes: Shapes) -> int | None:
    """Every step multiplies the input by W and the hidden state by R, per direction:
    ``steps * batch * directions * (gates * hidden) * (input + hidden)``; W is
    ``[directions, gates * hidden, input]``, X ``[steps, batch, input]`` (``layout`` 1 swaps
    steps and batch: the product is the same)."""
    x = shapes.get(node.input[0], (0, ()))[1]
    w = shapes.get(node.input[1], (0, ()))[1]
    if len(x) != 3 or len(w) != 3:
        return None
    steps_and_batch = [d if isinstance(d, int) and d > 0 else None for d in x[:2]]
    batch_axis = 0 if attrs.get("layout", 0) else 1
    if isinstance(x[batch_axis], str):  # a symbolic batch: 1 per sample
        steps_and_batch[batch_axis] = 1
    directions, rows, inputs = w
    hidden = attrs.get("hidden_size")
    if None in steps_and_batch or not hidden or not all(
            isinstance(d, int) and d > 0 for d in (directions, rows, inputs)):
        return None
    return math.prod(steps_and_batch) * directions * rows * (inputs + hidden)


def _gemm_macs(attrs: dict, shapes: Shapes, node: onnx.NodeProto) -> int | None:
    """M * N * K: N and K from B (a weight, whose dims are known even where the activation's
    are not), M from A's rows (a symbolic M is the batch: 1 per sample)."""
    a = shapes.get(node.input[0], (0, ()))[1]
    b = shapes.get(node.input[1], (0, ()))[1]
    if len(a) != 2 or len(b) != 2:
        return None
    rows = a[1] if attrs.get("transA", 0) else a[0]
    k, n = (b[1], b[0]) if attrs.get("transB", 0) else (b[0], b[1])
    if not all(isinstance(d, int) and d > 0 for d in (k, n)):
        return None
    if isinstance(rows, int) and rows > 0:
        return rows * n * k
    return n * k if isinstance(rows, str) else None


def float_weights(graph: gs.Graph) -> Iterator[gs.Constant]:
    """Every floating-point constant of the graph (subgraphs included), once each."""
    seen: set[int] = set()
    for g in (graph, *graph.subgraphs(recursive=True)):
        for tensor in g.tensors().values():
            if isinstance(tensor, gs.Constant) and id(tensor) not in seen \
                    and np.dtype(_np_dtype(tensor)).kind == "f":
                seen.add(id(tensor))
                yield tensor


def _np_dtype(tensor: gs.Constant) -> np.dtype:
    dtype = tensor.dtype
    if isinstance(dtype, int):  # an onnx enum for types numpy lacks (bfloat16, float8)
        return np.dtype("V2")
    return np.dtype(dtype)


def constant_view(tensor: gs.Constant) -> np.ndarray:
    """The constant's values without a copy where possible (a read-only view of raw data)."""
    return values_view(tensor._values)


def values_view(values: object) -> np.ndarray:
    """Values held by a gs constant (an array, or lazy values of an ONNX tensor) as an array,
    read-only and without gs's cached copy where the tensor holds raw data."""
    if isinstance(values, gs.ir.tensor.LazyValues) and values.tensor.HasField("raw_data") \
            and isinstance(values.dtype, np.dtype | type) \
            and values.tensor.data_location != onnx.TensorProto.EXTERNAL:
        return np.frombuffer(values.tensor.raw_data,
                             dtype=np.dtype(values.dtype)).reshape(values.shape)
    if isinstance(values, gs.ir.tensor.LazyValues):
        return np.asarray(values.load())
    return np.asarray(values)

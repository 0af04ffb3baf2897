"""The tensors a model creates from constants alone: a 140-byte model can ask for gigabytes.

``materialized`` sizes every ConstantOfShape, Expand, Tile and Range whose arguments are
constants (initializers or Constant nodes), without running anything; ``require_bounded``
refuses to run a model in which one of them would create more than a cap.
"""

from __future__ import annotations

import contextlib
import math
from collections import ChainMap
from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import onnx

from fuser.errors import BadModelError
from fuser.ir.proto import malformed_tensor, node_label, subgraphs

#: The most bytes one node may create from constants alone in a model that fuser runs
#: (validation, timing): a 140-byte ConstantOfShape of 1e9 floats asked onnxruntime for 4 GB.
MAX_MATERIALIZED_BYTES = 1 << 28
#: Ops whose output size their argument values fix.
MATERIALIZING_OPS = frozenset({"ConstantOfShape", "Expand", "Tile", "Range"})
_ARGUMENT_ELEMENTS = 64  # arguments (shapes, repeats, bounds) longer than this are not read


class _Scope:
    """What a graph (and the graphs around it) says of its tensors: small constant values,
    dims (unknown ones as 1, so sizes are lower bounds) and element sizes."""

    def __init__(self, outer: _Scope | None = None) -> None:
        def layer(attr: str) -> ChainMap:  # a subgraph sees its own names, then the outer ones
            return ChainMap({}, getattr(outer, attr)) if outer else ChainMap()

        self.values: ChainMap[str, list] = layer("values")
        self.dims: ChainMap[str, list[int]] = layer("dims")
        self.itemsize: ChainMap[str, int] = layer("itemsize")
        self.constants: ChainMap[str, bool] = layer("constants")

    def add_tensor(self, name: str, tensor: onnx.TensorProto) -> None:
        self.constants[name] = True
        self.dims[name] = list(tensor.dims)
        self.itemsize[name] = _itemsize(tensor.data_type)
        if math.prod(tensor.dims) <= _ARGUMENT_ELEMENTS and malformed_tensor(tensor) is None \
                and tensor.data_location != onnx.TensorProto.EXTERNAL:
            with contextlib.suppress(Exception):  # types numpy cannot read are not arguments
                self.values[name] = onnx.numpy_helper.to_array(tensor).reshape(-1).tolist()

    def add_graph(self, graph: onnx.GraphProto) -> None:
        for value in [*graph.input, *graph.value_info, *graph.output]:
            tensor_type = value.type.tensor_type
            if tensor_type.HasField("shape"):
                self.dims[value.name] = [d.dim_value if d.HasField("dim_value") else 1
                                         for d in tensor_type.shape.dim]
            self.itemsize.setdefault(value.name, _itemsize(tensor_type.elem_type))
        for tensor in graph.initializer:
            self.add_tensor(tensor.name, tensor)
        for node in graph.node:
            if node.op_type == "Constant" and node.output and node.attribute:
                with contextlib.suppress(Exception):  # sparse or malformed: not an argument
                    attr = node.attribute[0]
                    value = onnx.helper.get_attribute_value(attr)
                    if attr.name != "value":  # value_int(s), value_float(s)
                        dtype = np.float32 if attr.name.startswith("value_float") else np.int64
                        value = onnx.numpy_helper.from_array(np.asarray(value, dtype))
                    self.add_tensor(node.output[0], value)


def _itemsize(elem_type: int) -> int:
    try:
        return onnx.helper.tensor_dtype_to_np_dtype(elem_type).itemsize
    except (KeyError, ValueError, TypeError):
        return 1


def _created(node: onnx.NodeProto, scope: _Scope) -> tuple[int, int] | None:
    """``(elements, bytes)`` that ``node`` creates, when its arguments' values are known."""
    try:
        shape, itemsize = _output_shape(node, scope) or ((-1,), 0)
        if any(d < 0 for d in shape):
            return None
        elements = math.prod(int(d) for d in shape)
    except (ArithmeticError, ValueError, TypeError):  # inf or NaN bounds, odd values
        return None
    return elements, elements * itemsize


def _output_shape(node: onnx.NodeProto, scope: _Scope) -> tuple[list, int] | None:
    """The output shape and element size of a ConstantOfShape/Expand/Tile/Range."""
    args = [scope.values.get(name) for name in node.input]
    first = node.input[0] if node.input else ""
    shape = created_shape(node.op_type, scope.dims.get(first, []), args)
    if shape is None:
        return None
    if node.op_type == "ConstantOfShape":
        value = next((a.t for a in node.attribute if a.name == "value"), None)
        return shape, _itemsize(value.data_type) if value is not None else 4
    return shape, scope.itemsize.get(first, 1)


def created_shape(op: str, data_dims: Sequence[int], args: Sequence[Sequence | None]
                  ) -> list[int] | None:
    """The output shape of a ConstantOfShape, Expand, Tile or Range from its arguments'
    values (``args``, one per input, None where unknown) and its first input's dims (for
    Expand/Tile; unknown dims count as 1, so the size is a lower bound); None when the
    values do not fix it. Shared by the run-time bound here and ``fold-constants``."""
    if op == "ConstantOfShape" and args and args[0] is not None:
        return [int(d) for d in args[0]]
    if op in ("Expand", "Tile") and len(args) == 2 and args[1] is not None:
        dims, arg = list(data_dims), [int(a) for a in args[1]]
        if op == "Tile":
            dims = dims if len(dims) == len(arg) else [1] * len(arg)
            return [d * r for d, r in zip(dims, arg, strict=True)]
        rank = max(len(dims), len(arg))
        dims, arg = [1] * (rank - len(dims)) + dims, [1] * (rank - len(arg)) + arg
        return [max(d, a) for d, a in zip(dims, arg, strict=True)]
    if op == "Range" and len(args) == 3 and all(a is not None and len(a) == 1 for a in args):
        (start,), (limit,), (delta,) = args
        return [max(math.ceil((limit - start) / delta), 0)] if delta else [0]
    return None


def _inferred(node: onnx.NodeProto, shapes: Mapping[str, tuple], scope: _Scope
              ) -> tuple[int, int] | None:
    """``(elements, bytes)`` of ``node``'s first output, when shape inference fixed its dims
    (an Expand or Tile of a constant only: of an input, the input's size is the user's)."""
    if node.op_type in ("Expand", "Tile") and (not node.input or node.input[0] not in
                                                scope.constants):
        return None
    elem_type, dims = shapes.get(node.output[0] if node.output else "", (0, None))
    if dims is None or not all(isinstance(d, int) and d >= 0 for d in dims):
        return None
    elements = math.prod(dims)
    return elements, elements * _itemsize(elem_type)


def materialized(graph: onnx.GraphProto, shapes: Mapping[str, tuple] | None = None,
                 outer: _Scope | None = None) -> Iterator[tuple[onnx.NodeProto, int, int]]:
    """``(node, elements, bytes)`` for every ConstantOfShape, Expand, Tile and Range (in
    subgraphs too) whose constant arguments fix the size of its output (a lower bound where
    the dims of its data are unknown), or whose output ``shapes`` (``ir.infer_shapes``: data
    propagation sees through shape arithmetic) says."""
    scope = _Scope(outer)
    scope.add_graph(graph)
    for node in graph.node:
        if node.op_type in MATERIALIZING_OPS and node.domain in ("", "ai.onnx"):
            found = [c for c in (_created(node, scope), _inferred(node, shapes or {}, scope)) if c]
            if found:
                yield node, *max(found)
        for attr in node.attribute:
            for sub in subgraphs(attr):
                yield from materialized(sub, shapes, scope)


def require_bounded(model: onnx.ModelProto, name: str = "model",
                    shapes: Mapping[str, tuple] | None = None, *,
                    limit: int = MAX_MATERIALIZED_BYTES) -> None:
    """Refuse to run a model in which a node creates more than ``limit`` bytes from constants
    (``shapes``: as ``materialized``).

    Raises:
        BadModelError: naming ``name``, the node, the elements and bytes it would create.
    """
    for node, elements, nbytes in materialized(model.graph, shapes):
        if nbytes > limit:
            raise BadModelError(
                f"{name}: node {node_label(node)} creates a tensor of {elements:,} elements "
                f"({nbytes:,} bytes) from constants, over the {limit:,} bytes fuser allows "
                "in a model it runs (optimize --no-validate --no-bench does not run it)")

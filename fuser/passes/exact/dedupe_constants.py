"""Merge constants that hold the same values: one tensor, read by all their consumers.

    c1 == c2  (same dtype, same shape, same bytes)   ->   consumers of c2 read c1

Constant folding leaves many equal small tensors (shape targets, axes, zero pads, biases).
Values are compared byte for byte (a cheap key of dtype, shape and the first bytes first); NaNs
with equal bits are equal, 0.0 and -0.0 are not. Only constants under ``max_bytes`` (64 KiB)
are compared: reading a weight held in a protobuf copies its bytes, which cost ResNet-152 a
third of its optimize time for nothing (torch already stores shared weights once). Left
alone: graph outputs, constants whose values are computed on export (the folds' weights), and
initializers that are graph inputs (a caller may override those).
"""

from __future__ import annotations

import numpy as np
import onnx
import onnx_graphsurgeon as gs
from onnx_graphsurgeon.ir.tensor import LazyValues

from fuser.ir.statistics import values_view
from fuser.passes.base import Pass, PassResult, register
from fuser.passes.match import tensor_bytes

#: Bytes of the values that go into the first, cheap key.
_PREFIX = 64


def _plain_values(tensor: gs.Constant) -> np.ndarray | None:
    """The constant's values as an array, None when they are computed on export."""
    values = tensor._values
    if type(values) is LazyValues and values.tensor.data_location == onnx.TensorProto.EXTERNAL:
        return None  # read from disk in full: not worth it
    if type(values) is np.ndarray or type(values) is LazyValues:
        try:
            return values_view(values)
        except (TypeError, ValueError):
            return None
    return None


@register
class DedupeConstants(Pass):
    """Merge constants with the same dtype, shape and bytes."""

    name = "dedupe-constants"

    def __init__(self, max_bytes: int = 64 << 10) -> None:
        self.max_bytes = max_bytes

    def run(self, graph: gs.Graph) -> PassResult:
        result = PassResult()
        outputs = {t.name for t in graph.outputs}
        first: dict[tuple, list[tuple[gs.Constant, np.ndarray]]] = {}
        for tensor in graph.tensors().values():
            if not isinstance(tensor, gs.Constant) or tensor.name in outputs \
                    or not tensor.outputs or not self._small(tensor):
                continue
            values = _plain_values(tensor)
            if values is None or values.dtype.kind not in "biufc":
                continue
            raw = np.ascontiguousarray(values).reshape(-1).view(np.uint8)
            key = (values.dtype.str, values.shape, bytes(raw[:_PREFIX]))
            same = first.setdefault(key, [])
            keeper = next((k for k, v in same if np.array_equal(
                np.ascontiguousarray(v).reshape(-1).view(np.uint8), raw)), None)
            if keeper is None:
                same.append((tensor, values))
                continue
            for consumer in list(tensor.outputs):
                for i, used in enumerate(consumer.inputs):
                    if used is tensor:
                        consumer.inputs[i] = keeper
            result.rewrote(f"constant '{tensor.name}' is '{keeper.name}'")
        if result.rewrites > 20:  # one line per merge would drown the report
            result.notes = [f"{result.rewrites} duplicate constants merged"]
        return result

    def _small(self, tensor: gs.Constant) -> bool:
        size = tensor_bytes(tensor)
        return size is not None and size < self.max_bytes

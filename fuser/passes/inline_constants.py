"""Turn ``Constant`` nodes into constant tensors (initializers), so the folding passes see
weights that exporters such as paddle2onnx keep in Constant nodes.

    y = Constant<value=T>()   ->   y is the constant T  (value_float(s)/value_int(s) too)

Skips: a Constant whose output is a graph output (ONNX wants graph outputs computed), and
sparse or string values.
"""

from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs

from fuser.passes._match import describe, detach
from fuser.passes.base import Pass, PassResult, register

_SCALAR_ATTRS = {
    "value_float": np.float32, "value_floats": np.float32,
    "value_int": np.int64, "value_ints": np.int64,
}


def constant_values(node: gs.Node) -> np.ndarray | object | None:
    """The Constant node's value (a numpy array or gs lazy values), None if unsupported."""
    attrs = node.attrs
    if isinstance(attrs.get("value"), gs.Constant):
        value = attrs["value"]
        if np.dtype(value.dtype).kind in "OSU":
            return None  # string tensors
        return value._values  # keep lazily loaded weights lazy
    for key, dtype in _SCALAR_ATTRS.items():
        if key in attrs:
            return np.array(attrs[key], dtype=dtype)
    return None


@register
class InlineConstants(Pass):
    """Turn Constant nodes into constant tensors (initializers)."""

    name = "inline-constants"

    def run(self, graph: gs.Graph) -> PassResult:
        result = PassResult()
        constants = [n for n in graph.nodes
                     if n.op == "Constant" and n.domain in ("", "ai.onnx", None)]
        for node in constants:
            if len(node.outputs) != 1:
                continue
            out = node.outputs[0]
            if out in graph.outputs:
                result.skip(f"{describe(node)} is a graph output")
                continue
            values = constant_values(node)
            if values is None:
                result.skip(f"{describe(node)} holds a sparse or string value")
                continue
            detach(node)
            out.to_constant(values)
            result.rewrites += 1
        if result.rewrites:
            result.notes.append(f"{result.rewrites} Constant node(s) became initializers")
        return result

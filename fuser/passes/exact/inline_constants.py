"""Turn ``Constant`` nodes into constant tensors (initializers), so the folding passes see
weights that exporters such as paddle2onnx keep in Constant nodes.

    y = Constant<value=T>()   ->   y is the constant T  (value_float(s)/value_int(s) too)

Skips: a Constant whose output is a graph output (ONNX wants graph outputs computed), and
sparse or string values.
"""

from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs

from fuser.passes.base import Context, Rule, register
from fuser.passes.match import NotCandidate, Skip, describe
from fuser.passes.surgery import detach

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
class InlineConstants(Rule):
    """Turn Constant nodes into constant tensors (initializers)."""

    name = "inline-constants"
    ops = ("Constant",)

    def match(self, node: gs.Node, context: Context) -> tuple[gs.Node, object]:
        if len(node.outputs) != 1:
            raise NotCandidate(describe(node))
        if node.outputs[0] in context.graph.outputs:
            raise Skip(f"{describe(node)} is a graph output")
        values = constant_values(node)
        if values is None:
            raise Skip(f"{describe(node)} holds a sparse or string value")
        return node, values

    def rewrite(self, found: tuple[gs.Node, object], context: Context) -> None:
        node, values = found
        out = node.outputs[0]
        detach(node)
        out.to_constant(values)
        context.result.rewrites += 1  # one summary note, in finish

    def finish(self, context: Context) -> None:
        if context.result.rewrites:
            context.result.notes.append(
                f"{context.result.rewrites} Constant node(s) became initializers")

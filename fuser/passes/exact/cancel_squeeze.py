"""Cancel an Unsqueeze followed by the Squeeze of the same axes, and the reverse.

    y = Squeeze(Unsqueeze(x, a), a)   ->   consumers of y read x
    y = Unsqueeze(Squeeze(x, a), a)   ->   consumers of y read x

Unsqueeze inserts dims of size 1 at the output positions ``a``; Squeeze of the same positions
removes exactly those. Squeeze removes dims of size 1 at positions ``a`` of its input, and
Unsqueeze puts them back where they were. Axes are compared after normalizing negative ones
(against the rank with the size-1 dims, which needs the rank of ``x``); they come from the
``axes`` attribute (opset < 13) or a constant input. Skipped: axes that are not a constant, a
Squeeze without axes (it removes every size-1 dim), unknown rank, an intermediate that is a
graph output.
"""

from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs

from fuser.passes.base import Context, Rule, register
from fuser.passes.match import NotCandidate, Skip, describe, producer
from fuser.passes.surgery import bypass

_INVERSE = {"Squeeze": "Unsqueeze", "Unsqueeze": "Squeeze"}


def squeeze_axes(node: gs.Node) -> list[int]:
    if "axes" in node.attrs:
        return [int(a) for a in node.attrs["axes"]]
    if len(node.inputs) < 2 or node.inputs[1].is_empty():
        raise Skip(f"{describe(node)} has no axes")
    if not isinstance(node.inputs[1], gs.Constant):
        raise Skip(f"{describe(node)} has axes that are not a constant")
    return [int(a) for a in np.asarray(node.inputs[1].values).reshape(-1)]


def normalized_axes(axes: list[int], rank: int) -> set[int]:
    return {a + rank if a < 0 else a for a in axes}


@register
class CancelSqueezeUnsqueeze(Rule):
    """Remove Unsqueeze -> Squeeze and Squeeze -> Unsqueeze pairs of the same axes."""

    name = "cancel-squeeze-unsqueeze"
    ops = ("Squeeze", "Unsqueeze")

    def match(self, outer: gs.Node, context: Context) -> tuple[gs.Node, gs.Node]:
        inner = producer(outer.inputs[0]) if outer.inputs else None
        if inner is None or inner.op != _INVERSE[outer.op] or not inner.outputs:
            raise NotCandidate(describe(outer))
        middle = inner.outputs[0]
        if middle in context.graph.outputs:
            raise Skip(f"tensor '{middle.name}' is a graph output")
        x = inner.inputs[0]
        if x.shape is None:
            raise Skip(f"{describe(inner)}: rank of its input unknown")
        a_in, a_out = squeeze_axes(inner), squeeze_axes(outer)
        expanded = len(x.shape) + (len(a_in) if inner.op == "Unsqueeze" else 0)
        if normalized_axes(a_in, expanded) != normalized_axes(a_out, expanded) or \
                len(set(a_in)) != len(a_in):
            raise Skip(f"{describe(inner)} and {describe(outer)} use different axes")
        return inner, outer

    def rewrite(self, found: tuple[gs.Node, gs.Node], context: Context) -> str:
        inner, outer = found
        x, middle = inner.inputs[0], outer.inputs[0]
        outer.inputs[0] = x  # outer now hands on x unchanged
        try:
            bypass(outer, context.graph)
        except Skip:
            outer.inputs[0] = middle  # as it was: the Skip is counted, nothing changed
            raise
        return f"{describe(inner)} and {describe(outer)} cancel"

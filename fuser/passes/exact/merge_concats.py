"""Merge a Concat into the Concat after it on the same axis.

    y = Concat(a, Concat(b, c, axis=k), d, axis=k)   ->   y = Concat(a, b, c, d, axis=k)

Concatenation along one axis is associative: the inner Concat's inputs land, in order, where
its output did. Needs the same axis after normalizing negative ones (by the rank of the
output, from shape inference, when the two are written with different signs). The inner
Concat is merged only where the outer one is its only reader and it is not a graph output
(otherwise both would compute the same elements; cleanup removes a merged one). tf2onnx's
exports of Keras models build wide concatenations as trees of pairs (basic-pitch's harmonic
stacking: seven such pairs).
"""

from __future__ import annotations

import onnx_graphsurgeon as gs

from fuser.passes.base import Context, Rule, register
from fuser.passes.match import NotCandidate, Skip, describe, made_by


def _axis(node: gs.Node) -> int:
    """The Concat's axis, normalized where its output's rank is known."""
    axis = int(node.attrs.get("axis", 0))
    rank = len(node.outputs[0].shape) if node.outputs[0].shape is not None else None
    return axis + rank if axis < 0 and rank is not None else axis


@register
class MergeConcats(Rule):
    """Merge Concat into the Concat after it on the same axis."""

    name = "merge-concats"
    ops = ("Concat",)

    def match(self, outer: gs.Node, context: Context) -> tuple[gs.Node, list[gs.Node]]:
        inners = [node for node in (made_by(t, "Concat") for t in outer.inputs) if node]
        if not inners:
            raise NotCandidate(describe(outer))
        mergeable, reasons = [], []
        for inner in inners:
            middle = inner.outputs[0]
            if _axis(inner) != _axis(outer):
                reasons.append(f"{describe(inner)} concatenates along axis "
                               f"{inner.attrs.get('axis', 0)}, {describe(outer)} along "
                               f"{outer.attrs.get('axis', 0)}")
            elif len(middle.outputs) != 1 or middle in context.graph.outputs:
                reasons.append(f"{describe(inner)}: its output is read elsewhere")
            else:
                mergeable.append(inner)
        if not mergeable:
            raise Skip(reasons[0])
        return outer, mergeable

    def rewrite(self, found: tuple[gs.Node, list[gs.Node]], context: Context) -> str:
        outer, inners = found
        merged = {id(node.outputs[0]): node for node in inners}
        inputs = []
        for tensor in outer.inputs:
            inner = merged.get(id(tensor))
            inputs.extend(inner.inputs if inner is not None else [tensor])
        outer.inputs.clear()
        outer.inputs.extend(inputs)
        return f"{', '.join(describe(n) for n in inners)} merged into {describe(outer)}"

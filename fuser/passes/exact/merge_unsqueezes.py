"""Merge two Unsqueezes in a row into one (``x.unsqueeze(-1).unsqueeze(-1)`` in SE blocks).

    y = Unsqueeze(Unsqueeze(x, a1), a2)   ->   y = Unsqueeze(x, a2 + map(a1))

Unsqueeze keeps the dims of its input in order and puts dims of size 1 at the given output
positions. The second puts 1s at ``a2`` (positions in the final rank R); every other final
position holds, in order, a dim of the intermediate tensor, so the intermediate's 1s at ``a1``
land on the ``a1[i]``-th of the positions not in ``a2``. One Unsqueeze with both sets of
positions gives the same tensor. Needs constant axes (attribute before opset 13, input from
13 on) and the rank of ``x``; the intermediate stays when something else reads it.
"""

from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs

from fuser.passes.base import Context, Rule, register
from fuser.passes.exact.cancel_squeeze import normalized_axes, squeeze_axes
from fuser.passes.match import NotCandidate, Skip, describe, producer


def merged_axes(rank: int, first: list[int], second: list[int]) -> list[int]:
    """The positions of one Unsqueeze equal to Unsqueeze(first) then Unsqueeze(second) of a
    tensor of ``rank`` dims."""
    middle = rank + len(first)
    final = middle + len(second)
    inserted = normalized_axes(second, final)
    kept = [p for p in range(final) if p not in inserted]  # final slot of each middle dim
    return sorted(inserted | {kept[p] for p in normalized_axes(first, middle)})


@register
class MergeUnsqueezes(Rule):
    """Merge Unsqueeze followed by Unsqueeze into one."""

    name = "merge-unsqueezes"
    ops = ("Unsqueeze",)

    def match(self, outer: gs.Node, context: Context) -> tuple[gs.Node, gs.Node, list[int]]:
        inner = producer(outer.inputs[0]) if outer.inputs else None
        if inner is None or inner.op != "Unsqueeze":
            raise NotCandidate(describe(outer))
        x = inner.inputs[0]
        if x.shape is None:
            raise Skip(f"{describe(inner)}: rank of its input unknown")
        return inner, outer, merged_axes(len(x.shape), squeeze_axes(inner), squeeze_axes(outer))

    def rewrite(self, found: tuple[gs.Node, gs.Node, list[int]], context: Context) -> str:
        inner, outer, axes = found
        outer.inputs[0] = inner.inputs[0]
        if "axes" in outer.attrs:
            outer.attrs["axes"] = axes
        else:
            outer.inputs[1] = gs.Constant(
                context.names.fresh(f"{outer.outputs[0].name}_axes"),
                np.array(axes, dtype=np.int64))
        return f"{describe(inner)} merged into {describe(outer)}"

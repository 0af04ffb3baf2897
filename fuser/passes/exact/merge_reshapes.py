"""Merge a Reshape (or Flatten) into the Reshape after it.

    y = Reshape(Reshape(x, s1), s2)   ->   y = Reshape(x, s2)
    y = Reshape(Flatten(x), s2)       ->   y = Reshape(x, s2)

A reshape keeps the elements in order and only relabels the dims, so the last one alone
decides the result, provided its target ``s2`` is a constant that does not refer to the
intermediate tensor's dims: a 0 in ``s2`` copies the intermediate's dim there (unless
``allowzero=1``), so such targets are skipped; a -1 is computed from the element count, which
both share. The intermediate stays when another node reads it (the outer Reshape no longer
does), and is removed by cleanup otherwise.
"""

from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs

from fuser.passes.base import Context, Rule, register
from fuser.passes.match import NotCandidate, Skip, describe, producer


def _target_is_self_contained(node: gs.Node) -> None:
    target = node.inputs[1] if len(node.inputs) > 1 else None
    if not isinstance(target, gs.Constant):
        raise Skip(f"{describe(node)} has a target shape that is not a constant")
    if node.attrs.get("allowzero", 0) == 0 and np.any(np.asarray(target.values) == 0):
        raise Skip(f"{describe(node)} copies a dim of its input (0 in its target shape)")


@register
class MergeReshapes(Rule):
    """Merge Reshape/Flatten followed by Reshape into one Reshape."""

    name = "merge-reshapes"
    ops = ("Reshape",)

    def match(self, node: gs.Node, context: Context) -> tuple[gs.Node, gs.Node]:
        inner = producer(node.inputs[0]) if node.inputs else None
        if not _is_reshape(inner):
            raise NotCandidate(describe(node))
        _target_is_self_contained(node)
        return node, inner

    def rewrite(self, found: tuple[gs.Node, gs.Node], context: Context) -> None:
        node, inner = found
        # The whole chain above: a Flatten between two Reshapes is never an outer node
        # itself, so ``Reshape -> Flatten -> Reshape`` would otherwise leave a pair.
        while _is_reshape(inner):
            node.inputs[0] = inner.inputs[0]
            context.result.rewrote(f"{describe(inner)} merged into {describe(node)}")
            inner = producer(node.inputs[0])



def _is_reshape(node: gs.Node | None) -> bool:
    return node is not None and node.op in ("Reshape", "Flatten") and \
        node.domain in ("", "ai.onnx", None)

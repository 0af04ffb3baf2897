"""Merge chains of reshapes (Reshape, Flatten, Squeeze, Unsqueeze) into one Reshape.

    y = Reshape(R(x), s2)        ->   y = Reshape(x, s2)     R: Reshape, Flatten, Squeeze, Unsqueeze
    y = Unsqueeze(Reshape(x, s1), a)   ->   y = Reshape(x, s1 with 1s inserted at a)
    y = Squeeze(Reshape(x, s1), a)     ->   y = Reshape(x, s1 without its 1s at a)

Each of these ops keeps the elements in row-major order and only relabels the dims, so the
last one alone decides the result, provided its target is a constant that does not refer to
the intermediate tensor's dims: a 0 in a Reshape's target copies the intermediate's dim
there (unless ``allowzero=1``), so such targets are skipped; a -1 is computed from the
element count, which they all share. An Unsqueeze or Squeeze after a Reshape becomes a
Reshape to the Reshape's target with the 1s inserted or removed (the Squeeze's axes must
name 1s of that target, and be given). tf2onnx's exports hold such chains around every
1-D convolution (Reshape -> Unsqueeze -> Reshape; Reshape -> Unsqueeze -> Concat). The
intermediate stays when another node reads it (the outer node no longer does), and is
removed by cleanup otherwise.
"""

from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs

from fuser.passes.base import Context, Rule, register
from fuser.passes.exact.cancel_squeeze import normalized_axes, squeeze_axes
from fuser.passes.match import NotCandidate, Skip, describe, producer

#: Ops that relabel the dims of their input and keep its elements in order.
RESHAPES = ("Reshape", "Flatten", "Squeeze", "Unsqueeze")


def _self_contained_target(node: gs.Node) -> np.ndarray:
    """A Reshape's constant target, which refers to none of its input's dims; Skip else."""
    target = node.inputs[1] if len(node.inputs) > 1 else None
    if not isinstance(target, gs.Constant):
        raise Skip(f"{describe(node)} has a target shape that is not a constant")
    values = np.asarray(target.values).reshape(-1).astype(np.int64)
    if node.attrs.get("allowzero", 0) == 0 and np.any(values == 0):
        raise Skip(f"{describe(node)} copies a dim of its input (0 in its target shape)")
    return values


def relabelled(op: str, target: np.ndarray, axes: list[int]) -> np.ndarray:
    """The target of one Reshape equal to ``op`` (Unsqueeze or Squeeze at ``axes``) after a
    Reshape to ``target``; Skip where the Squeeze's axes do not name 1s of ``target``."""
    if op == "Unsqueeze":
        rank = len(target) + len(axes)
        inserted = normalized_axes(axes, rank)
        kept = iter(target)
        return np.array([1 if p in inserted else next(kept) for p in range(rank)], np.int64)
    removed = normalized_axes(axes, len(target))
    if any(not 0 <= a < len(target) or target[a] != 1 for a in removed):
        raise Skip(f"Squeeze axes {axes} do not name 1s of the target {target.tolist()}")
    return np.array([d for p, d in enumerate(target) if p not in removed], np.int64)


@register
class MergeReshapes(Rule):
    """Merge chains of Reshape/Flatten/Squeeze/Unsqueeze into one Reshape.

    A chain ending in a Reshape, or a Reshape followed by an Unsqueeze or Squeeze."""

    name = "merge-reshapes"
    ops = ("Reshape", "Squeeze", "Unsqueeze")

    def match(self, node: gs.Node, context: Context) -> tuple[gs.Node, gs.Node, np.ndarray]:
        inner = producer(node.inputs[0]) if node.inputs else None
        if node.op == "Reshape" and _is_reshape(inner):
            return node, inner, _self_contained_target(node)
        if node.op != "Reshape" and _is_reshape(inner) and inner.op == "Reshape":
            target = _self_contained_target(inner)
            return node, inner, relabelled(node.op, target, squeeze_axes(node))
        raise NotCandidate(describe(node))

    def rewrite(self, found: tuple[gs.Node, gs.Node, np.ndarray], context: Context) -> None:
        node, inner, target = found
        if node.op != "Reshape":  # Unsqueeze/Squeeze after a Reshape: a Reshape itself
            note = f"{describe(inner)} and {describe(node)} merged into one Reshape"
            node.op = "Reshape"
            node.attrs = {"allowzero": 1} if inner.attrs.get("allowzero", 0) else {}
            shape = gs.Constant(context.names.fresh(f"{node.outputs[0].name}_shape"), target)
            node.inputs[0] = inner.inputs[0]
            if len(node.inputs) > 1:  # axes as an input (opset 13 on)
                node.inputs[1] = shape
            else:
                node.inputs.append(shape)
            context.result.rewrote(note)
            return
        # The whole chain above: a Flatten between two Reshapes is never an outer node
        # itself, so ``Reshape -> Flatten -> Reshape`` would otherwise leave a pair.
        while _is_reshape(inner):
            node.inputs[0] = inner.inputs[0]
            context.result.rewrote(f"{describe(inner)} merged into {describe(node)}")
            inner = producer(node.inputs[0])


def _is_reshape(node: gs.Node | None) -> bool:
    return node is not None and node.op in RESHAPES and node.domain in ("", "ai.onnx", None)

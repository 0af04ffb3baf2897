"""A Transpose that moves only dims of size 1 is a Reshape.

    y = Transpose<perm>(x)   ->   y = Reshape(x, shape(y))     when the dims of x that are
                                                               not 1 keep their order

Row-major order is the order of the indices of the dims that are not 1 (a dim of size 1 adds
nothing to an element's offset), so a permutation that keeps those dims in the same order
leaves every element where it was: the output is the input with its dims relabelled, which
is what a Reshape does (without a copy on onnxruntime's CPU provider). The target is the
output's shape, with -1 in place of at most one dim that shape inference does not know;
merge-reshapes then joins it to a Reshape next to it (ddddocr's LSTM output:
``Transpose<0,2,1,3>`` of ``[T, 1, N, H]`` before a Reshape). Needs the input's shape with
every dim of size 1 known as such, and every other dim known but one.
"""

from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs

from fuser.passes.base import Context, Rule, register
from fuser.passes.match import NotCandidate, Skip, describe


def reshape_target(shape: list, perm: list[int]) -> np.ndarray | None:
    """The Reshape target equal to ``Transpose<perm>`` of a tensor of ``shape`` (ints, or
    None/str where unknown), or None when the permutation moves a dim that is not 1."""
    moved = [axis for axis in perm if shape[axis] != 1]
    if moved != sorted(moved):
        return None
    out = [shape[axis] for axis in perm]
    unknown = [i for i, d in enumerate(out) if not isinstance(d, int)]
    if len(unknown) > 1:
        raise Skip(f"more than one dim of the output {out} is unknown")
    return np.array([-1 if i in unknown else d for i, d in enumerate(out)], np.int64)


@register
class TransposeToReshape(Rule):
    """Replace a Transpose that moves only dims of size 1 with a Reshape."""

    name = "transpose-to-reshape"
    ops = ("Transpose",)

    def match(self, node: gs.Node, context: Context) -> tuple[gs.Node, np.ndarray]:
        shape = node.inputs[0].shape if node.inputs else None
        if shape is None or "perm" not in node.attrs:
            raise NotCandidate(describe(node))
        if any(d is None or isinstance(d, str) for d in shape) and \
                not any(d == 1 for d in shape):
            raise NotCandidate(describe(node))
        target = reshape_target(list(shape), [int(p) for p in node.attrs["perm"]])
        if target is None:
            raise NotCandidate(describe(node))
        return node, target

    def rewrite(self, found: tuple[gs.Node, np.ndarray], context: Context) -> str:
        node, target = found
        note = f"{describe(node)} moves only dims of 1: a Reshape to {target.tolist()}"
        node.op, node.attrs = "Reshape", {}
        node.inputs.append(gs.Constant(context.names.fresh(f"{node.outputs[0].name}_shape"),
                                       target))
        return note

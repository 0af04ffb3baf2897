"""Merge a Transpose that reads another Transpose; cancel the pair when it is the identity.

    y = Transpose<p2>(Transpose<p1>(x))  =  Transpose<q>(x),   q[i] = p1[p2[i]]

When ``q`` is the identity permutation both vanish (consumers of y read x); otherwise the
second Transpose reads ``x`` with ``q``. The first one stays while anything else reads it.
tf_keras exports wrap every layer in NHWC<->NCHW Transpose pairs (about 205 in ResNet-50);
this removes them. Skips: a Transpose without ``perm`` whose input rank is unknown.
"""

from __future__ import annotations

import onnx_graphsurgeon as gs

from fuser.passes.base import Context, Rule, register
from fuser.passes.match import NotCandidate, Skip, describe, producer
from fuser.passes.surgery import bypass


def permutation(node: gs.Node) -> list[int]:
    """A Transpose's ``perm`` (the default reverses the axes: needs the input's rank)."""
    if "perm" in node.attrs:
        return [int(p) for p in node.attrs["perm"]]
    shape = getattr(node.inputs[0], "shape", None)
    if shape is None:
        raise Skip(f"{describe(node)} has no perm and its input rank is unknown")
    return list(reversed(range(len(shape))))  # the default reverses the axes


@register
class CancelTransposes(Rule):
    """Merge back-to-back Transpose nodes; remove pairs that cancel."""

    name = "cancel-transposes"
    ops = ("Transpose",)

    def match(self, second: gs.Node, context: Context) -> tuple:
        first = producer(second.inputs[0]) if second.inputs else None
        if first is None or first.op != "Transpose":
            raise NotCandidate(describe(second))
        p1, p2 = permutation(first), permutation(second)
        return first, second, [p1[i] for i in p2]

    def rewrite(self, found: tuple, context: Context) -> str:
        first, second, merged = found
        second.inputs[0] = first.inputs[0]
        second.attrs["perm"] = merged
        if merged == sorted(merged):
            try:
                bypass(second, context.graph)
                return f"{describe(first)} and {describe(second)} cancel"
            except Skip as reason:  # kept as an identity Transpose: still one node less
                context.result.skip(str(reason))
        return f"{describe(first)} merged into {describe(second)}"

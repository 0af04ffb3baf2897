"""Merge a Slice of a Slice on other axes into one Slice (YOLO's Focus layer slices twice).

    y = Slice(Slice(x, s1, e1, a1, t1), s2, e2, a2, t2)
        ->   y = Slice(x, s1|s2, e1|e2, a1|a2, t1|t2)          (| joins the lists)

Slicing different axes commutes: each keeps the same indices of its own axis whatever the
other did, so one Slice with both sets of arguments selects the same elements. Needs every
argument a constant (opset 10 on: inputs), axes of the two that do not overlap after
normalizing negative ones (the rank of ``x`` from shape inference), and the same integer
type for each argument. The intermediate stays when something else reads it.
"""

from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs

from fuser.passes.base import Context, Rule, register
from fuser.passes.match import NotCandidate, Skip, describe, producer


def _arguments(node: gs.Node, rank: int) -> list[np.ndarray]:
    """``[starts, ends, axes, steps]`` of a Slice, axes normalized, steps filled with 1."""
    if len(node.inputs) < 3:
        raise Skip(f"{describe(node)} keeps its arguments in attributes (opset < 10)")
    given = [t if not t.is_empty() else None for t in node.inputs[1:5]]
    given += [None] * (4 - len(given))
    if any(t is not None and not isinstance(t, gs.Constant) for t in given):
        raise Skip(f"{describe(node)} has arguments that are not constants")
    starts, ends = (np.asarray(t.values).reshape(-1) for t in given[:2])
    axes = np.arange(len(starts), dtype=starts.dtype) if given[2] is None else \
        np.asarray(given[2].values).reshape(-1)
    axes = np.where(axes < 0, axes + rank, axes).astype(starts.dtype)
    steps = np.ones(len(starts), starts.dtype) if given[3] is None else \
        np.asarray(given[3].values).reshape(-1)
    return [starts, ends, axes, steps]


@register
class MergeSlices(Rule):
    """Merge Slice followed by Slice on other axes into one Slice."""

    name = "merge-slices"
    ops = ("Slice",)

    def match(self, outer: gs.Node, context: Context) -> tuple:
        inner = producer(outer.inputs[0]) if outer.inputs else None
        if inner is None or inner.op != "Slice":
            raise NotCandidate(describe(outer))
        return inner, outer, self._merged(inner, outer)

    def rewrite(self, found: tuple, context: Context) -> str:
        inner, outer, merged = found
        base = outer.outputs[0].name
        arguments = [gs.Constant(context.names.fresh(f"{base}_{what}"), values)
                     for what, values in zip(("starts", "ends", "axes", "steps"), merged,
                                             strict=True)]
        x = inner.inputs[0]
        outer.inputs.clear()
        outer.inputs.extend([x, *arguments])
        return f"{describe(inner)} merged into {describe(outer)}"

    @staticmethod
    def _merged(inner: gs.Node, outer: gs.Node) -> list[np.ndarray]:
        x = inner.inputs[0]
        if x.shape is None:
            raise Skip(f"{describe(inner)}: rank of its input unknown")
        first, second = _arguments(inner, len(x.shape)), _arguments(outer, len(x.shape))
        if set(first[2].tolist()) & set(second[2].tolist()):
            raise Skip(f"{describe(inner)} and {describe(outer)} slice the same axis")
        if any(a.dtype != b.dtype for a, b in zip(first, second, strict=True)):
            raise Skip(f"{describe(inner)} and {describe(outer)} use different index types")
        return [np.concatenate([a, b]) for a, b in zip(first, second, strict=True)]

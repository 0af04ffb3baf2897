"""Fold a zero Pad into the MaxPool that reads it, where its input is never negative (Keras's
ZeroPadding2D before a ResNet stem's pooling; onnxruntime fuses it at ORT_ENABLE_BASIC).

    y = MaxPool<pads=p>(Pad<constant 0, pads=q>(x))   ->   y = MaxPool<pads=p + q>(x)
                                                         when x >= 0 everywhere

MaxPool pads with -inf, the Pad with 0, so the two agree only where neither decides a
window's maximum: every element of ``x`` is at least 0 (it comes from a Relu, a Sigmoid, an
Abs, a Softplus or a Clip whose lower bound is at least 0), and every window holds an element
of ``x`` (each side's total pad at most ``kernel - 1``: the first window then reaches the
input, and the last one starts inside it). A window's maximum is then the largest element of
``x`` in it, padded either way. Needs ``auto_pad`` NOTSET, ``ceil_mode`` 0, dilations 1, no
Indices output, and the Pad's output read by this MaxPool alone (``fold_pad.pad_amounts``
gives the Pad's own preconditions: constant 0, no cropping, batch and channel axes
untouched).
"""

from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs

from fuser.passes.base import Context, Rule, register
from fuser.passes.exact.fold_pad import pad_amounts
from fuser.passes.match import NotCandidate, Skip, describe, producer, require_sole_consumer
from fuser.passes.surgery import detach

#: Ops whose outputs are never negative.
NON_NEGATIVE = ("Relu", "Sigmoid", "Abs", "Softplus")


def non_negative(tensor: gs.Tensor) -> bool:
    """Whether ``tensor`` is never negative, by the op that makes it."""
    node = producer(tensor)
    if node is None:
        return False
    if node.op in NON_NEGATIVE:
        return True
    if node.op == "Clip":
        low = node.attrs.get("min") if "min" in node.attrs else (
            node.inputs[1] if len(node.inputs) > 1 and node.inputs[1].name else None)
        if isinstance(low, gs.Constant):
            low = float(np.asarray(low.values).reshape(-1)[0])
        return isinstance(low, float | int) and low >= 0
    return False


@register
class FoldPadIntoMaxPool(Rule):
    """Fold a zero Pad into the MaxPool after it, where the Pad's input is never negative."""

    name = "fold-pad-into-maxpool"
    ops = ("MaxPool",)

    def match(self, pool: gs.Node, context: Context) -> tuple[gs.Node, gs.Node, list[int]]:
        pad = producer(pool.inputs[0]) if pool.inputs else None
        if pad is None or pad.op != "Pad":
            raise NotCandidate(describe(pool))
        pads = pad_amounts(pad)
        if not non_negative(pad.inputs[0]):
            raise Skip(f"{describe(pool)} pads with -inf: the zeros of {describe(pad)} "
                       "matter unless its input is never negative")
        if len(pool.outputs) > 1 and pool.outputs[1].name:
            raise Skip(f"{describe(pool)} has an Indices output")
        if pool.attrs.get("auto_pad", "NOTSET") != "NOTSET" or pool.attrs.get("ceil_mode", 0) \
                or any(d != 1 for d in pool.attrs.get("dilations", [])):
            raise Skip(f"{describe(pool)} has auto_pad, ceil_mode or dilations")
        kernel = [int(k) for k in pool.attrs["kernel_shape"]]
        spatial = len(kernel)
        own = [int(p) for p in pool.attrs.get("pads", [0] * 2 * spatial)]
        rank = len(pads) // 2
        added = [int(p) for p in [*pads[2:rank], *pads[rank + 2:]]]
        total = [a + b for a, b in zip(own, added, strict=True)]
        if any(p > kernel[i % spatial] - 1 for i, p in enumerate(total)):
            raise Skip(f"{describe(pool)}: padding {total} would leave a window of "
                       f"{kernel} with no input element")
        require_sole_consumer(pad.outputs[0], context.graph)
        return pool, pad, total

    def rewrite(self, found: tuple[gs.Node, gs.Node, list[int]], context: Context) -> str:
        pool, pad, total = found
        note = f"{describe(pad)} folded into {describe(pool)} (pads {total})"
        pool.inputs[0] = pad.inputs[0]
        pool.attrs["pads"] = total
        detach(pad)
        return note

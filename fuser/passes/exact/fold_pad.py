"""Fold a zero Pad into the Conv that reads it (Keras exports put ZeroPadding2D before
every 'valid' conv).

    y = Conv<pads=p>(Pad<constant 0, pads=q>(x))   ->   y = Conv<pads=p + q_spatial>(x)

A Conv pads its input with zeros itself, so zero padding of the spatial axes adds to its own
pads. Preconditions: Pad mode ``constant`` with value 0 (or no value), non-negative pads, no
padding of the batch or channel axes, pads (and no ``axes``) given as a constant; the Pad's
output read by this Conv alone (as its data input) and not a graph output; the Conv's
``auto_pad`` NOTSET or VALID.
"""

from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs

from fuser.passes.base import Context, Rule, register
from fuser.passes.match import (
    NotCandidate,
    Skip,
    describe,
    detach,
    producer,
    require_sole_consumer,
)


def _pad_amounts(pad: gs.Node) -> np.ndarray:
    """The Pad's pads as ``[begin..., end...]`` over all axes; Skip when not foldable."""
    if pad.attrs.get("mode", "constant") != "constant":
        raise Skip(f"{describe(pad)} has mode {pad.attrs.get('mode')}")
    if "pads" in pad.attrs:  # opset < 11
        pads, value = np.array(pad.attrs["pads"]), float(pad.attrs.get("value", 0.0))
    else:
        if len(pad.inputs) < 2 or not isinstance(pad.inputs[1], gs.Constant):
            raise Skip(f"{describe(pad)} has pads that are not a constant")
        if len(pad.inputs) > 3 and pad.inputs[3].name:
            raise Skip(f"{describe(pad)} pads selected axes")
        pads = np.asarray(pad.inputs[1].values).reshape(-1)
        value = 0.0
        if len(pad.inputs) > 2 and pad.inputs[2].name:
            if not isinstance(pad.inputs[2], gs.Constant):
                raise Skip(f"{describe(pad)} has a padding value that is not a constant")
            value = float(np.asarray(pad.inputs[2].values).reshape(-1)[0])
    if value != 0.0:
        raise Skip(f"{describe(pad)} pads with {value:g}, not 0")
    if np.any(pads < 0):
        raise Skip(f"{describe(pad)} crops (negative pads)")
    rank = len(pads) // 2
    if np.any(pads[[0, 1, rank, rank + 1]]):
        raise Skip(f"{describe(pad)} pads the batch or channel axis")
    return pads


@register
class FoldPadIntoConv(Rule):
    """Fold zero padding (Pad) into the following Conv's pads."""

    name = "fold-pad-into-conv"
    ops = ("Conv",)

    def match(self, conv: gs.Node, context: Context) -> tuple[gs.Node, gs.Node, np.ndarray]:
        pad = producer(conv.inputs[0]) if conv.inputs else None
        if pad is None or pad.op != "Pad":
            raise NotCandidate(describe(conv))
        require_sole_consumer(conv.inputs[0], context.graph)
        if conv.attrs.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
            raise Skip(f"{describe(conv)} has auto_pad={conv.attrs['auto_pad']}")
        return conv, pad, _pad_amounts(pad)

    def rewrite(self, found: tuple[gs.Node, gs.Node, np.ndarray], context: Context) -> str:
        conv, pad, pads = found
        rank = len(pads) // 2
        spatial = rank - 2
        own = conv.attrs.get("pads", [0] * (2 * spatial))
        if conv.attrs.get("auto_pad", "NOTSET") == "VALID":
            own = [0] * (2 * spatial)
        begin = [int(own[i] + pads[2 + i]) for i in range(spatial)]
        end = [int(own[spatial + i] + pads[rank + 2 + i]) for i in range(spatial)]
        conv.attrs["pads"] = begin + end
        conv.attrs.pop("auto_pad", None)
        note = f"{describe(pad)} into {describe(conv)}"  # before detach: the note names an
        conv.inputs[0] = pad.inputs[0]                  # unnamed Pad by its output
        detach(pad)
        return note

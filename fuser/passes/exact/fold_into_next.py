"""Fold a per-channel affine map (BatchNormalization, or Mul/Add/Sub/Div by a constant) into
the Conv that consumes it.

With ``x' = s * x + t`` on input channels (axis 1) and a Conv with weight W (M, C/g, k...):

    Conv(s * x + t) = Conv_{W'}(x) + b'
    W'[o, i, ...] = W[o, i, ...] * s[c(o, i)]
    b'[o]         = b[o] + sum_{i, k} W[o, i, k] * t[c(o, i)]

where ``c(o, i) = (o // (M/g)) * (C/g) + i`` is the input channel that weight column ``i`` of
output ``o`` reads (grouped and depthwise convs included). As for the folds into a producer,
W' and b' are computed in float64 from the unrounded values (a Conv whose BatchNormalization
was folded first is scaled from its original weight: ``_scaled``) and rounded once.

This is exact only where the Conv never reads padding: the padded border is 0 *after* the
affine map in the original, but the rewrite pads ``x`` with 0, which stands for ``t`` after the
map. So a shift folds only into Convs with zero pads (``auto_pad`` NOTSET or VALID); a pure scale
folds into any Conv. Other skips: the affine output has other consumers or is a graph output,
it is not the Conv's data input, its constants are not per-channel, the affine's input has
fewer channels than the Conv reads (a per-channel constant broadcasting a 1-channel input, or
channels unknown), non-constant weights.

Exact is not always faster: a Mul by a constant that ends a GELU written out in elementwise
ops (``x * (1 + erf(x / sqrt 2)) * 0.5``, as paddle2onnx writes it; the tanh form alike) is
left alone. onnxruntime fuses that whole pattern into one ``Gelu`` kernel at session
creation, and only with its final ``* 0.5``: folded into the next Conv, the Div, Erf, Add and
Mul run one by one, each with its NCHWc layout reorders. Measured (onnxruntime 1.31 CPU,
ORT_ENABLE_ALL, 2 threads): PP-OCRv6's recognizer (rapidocr 3.x, 13 such GELUs, each before
a 1x1 Conv) ran 0.91x of the original with the 13 folds and 1.07x without them
(``onnx-fuser bench``, batch 1); its profile had 13 Erf, 13 Div and 13 more Reorder nodes in
the folded model where the original had 13 fused Gelu.
"""

from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs

from fuser.passes.base import Context, PassResult, Rule, register
from fuser.passes.exact._linear import channel_vector
from fuser.passes.exact._scaled import ScaledWeight
from fuser.passes.exact.fold_affine import AFFINE_OPS, affine_of, split_operands
from fuser.passes.match import (
    Names,
    NotCandidate,
    Skip,
    batchnorm_affine,
    cast_back,
    describe,
    float_constant,
    producer,
    require_sole_consumer,
    unrounded,
    weight_dtype,
)
from fuser.passes.surgery import detach


def _input_affine(node: gs.Node, conv: gs.Node, rank: int,
                  channels: int) -> tuple[gs.Tensor, np.ndarray, np.ndarray]:
    """``(x, s, t)``: the affine ``node`` feeding ``conv`` is ``s * x + t`` per channel."""
    if node.op == "BatchNormalization":
        s, t = batchnorm_affine(node)
        if s.shape[0] != channels:
            raise Skip(f"{describe(node)} has {s.shape[0]} channels, {describe(conv)} reads "
                       f"{channels}")
        return node.inputs[0], s, t
    x, c_tensor, c_first = split_operands(node)
    c = unrounded(c_tensor, "operand", node)
    x_shape = getattr(x, "shape", None)
    x_rank = len(x_shape) if x_shape is not None else None
    if c.ndim == rank and x_rank != rank:
        raise Skip(f"{describe(node)}: input rank {x_rank} is not {rank}")
    if c.size > 1:  # a per-channel constant may broadcast a 1-channel x to the Conv's channels
        x_channels = x_shape[1] if x_rank is not None and x_rank >= 2 else None
        if not isinstance(x_channels, int):
            raise Skip(f"{describe(node)}: the channels of its input '{x.name}' are unknown")
        if x_channels != channels:
            raise Skip(f"{describe(node)}: its input '{x.name}' has {x_channels} channel(s), "
                       f"{describe(conv)} reads {channels}")
    s, t = affine_of(node.op, c, c_first, node)
    return x, channel_vector(s, channels, 1, rank, node), channel_vector(t, channels, 1, rank, node)


def _ends_fused_gelu(node: gs.Node) -> bool:
    """``node`` (a Mul) multiplies the product ``x * (1 + erf(...))`` or ``x * (1 +
    tanh(...))``: the tail of a GELU that onnxruntime fuses only whole."""
    if node.op != "Mul":
        return False
    for tensor in node.inputs:
        product = producer(tensor)
        if product is None or product.op != "Mul":
            continue
        for factor in product.inputs:
            shifted = producer(factor)
            if shifted is not None and shifted.op == "Add" and any(
                    (p := producer(t)) is not None and p.op in ("Erf", "Tanh")
                    for t in shifted.inputs):
                return True
    return False


def _pads_zero(conv: gs.Node) -> bool:
    if conv.attrs.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
        return False
    return not any(conv.attrs.get("pads", []))


@register
class FoldIntoNextConv(Rule):
    """Fold BatchNormalization or per-channel Mul/Add right before a Conv into that Conv."""

    name = "fold-into-next-conv"
    ops = ("BatchNormalization", *AFFINE_OPS)
    # Last first: in a chain ``BN -> Mul -> Conv`` the Mul folds, then the BN reads the Conv
    # and folds too, in this one run (first first took one sweep per link).
    reverse = True

    def match(self, node: gs.Node, context: Context) -> tuple[gs.Node, gs.Node]:
        if not node.outputs or len(node.outputs[0].outputs) != 1:
            raise NotCandidate(describe(node))
        conv = node.outputs[0].outputs[0]
        if conv.op != "Conv":
            raise NotCandidate(describe(node))
        return node, conv

    def rewrite(self, found: tuple[gs.Node, gs.Node], context: Context) -> None:
        node, conv = found  # _fold raises Skip before it changes anything
        self._fold(node, conv, context.graph, context.names, context.result)

    @staticmethod
    def _fold(node: gs.Node, conv: gs.Node, graph: gs.Graph, names: Names,
              result: PassResult) -> None:
        y = node.outputs[0]
        if conv.inputs[0] is not y:
            raise Skip(f"{describe(node)} feeds {describe(conv)} as its weight, not its data")
        if _ends_fused_gelu(node):
            raise Skip(f"{describe(node)} ends a GELU that onnxruntime fuses only whole "
                       "(folded, it runs op by op: slower)")
        require_sole_consumer(y, graph)
        weight = float_constant(conv.inputs[1], "weight", conv)
        shape = tuple(weight.shape)
        bias = unrounded(conv.inputs[2], "bias", conv) if len(conv.inputs) > 2 \
            and conv.inputs[2].name else np.zeros(shape[0])
        group = int(conv.attrs.get("group", 1))
        x, s, t = _input_affine(node, conv, len(shape), shape[1] * group)
        if np.any(t) and not _pads_zero(conv):
            raise Skip(f"{describe(node)} shifts the input of padded {describe(conv)} "
                       "(the shift would leak into the zero padding)")
        per_output = np.arange(shape[0]) // (shape[0] // group)  # group of each output
        s_full = s.reshape(group, -1)[per_output]  # (M, C/g): the scale each column sees
        t_full = t.reshape(group, -1)[per_output]
        spatial = tuple(range(2, len(shape)))
        # W' computed on export, rounded once (a weight an earlier fold scaled: from its source)
        new_w = ScaledWeight(weight._values, s_full.reshape(s_full.shape + (1,) * len(spatial)),
                             shape, result.stats)
        if np.any(t_full):  # b' from W before any rounding: unrounded, not the float16 one
            w = unrounded(weight, "weight", conv)
            bias = bias + (w.sum(axis=spatial) * t_full).sum(axis=1)
        base = conv.name or conv.outputs[0].name
        new_b, flushed_b = cast_back(bias, weight_dtype(weight), keep_exact=True)
        result.stats["denormals flushed"] += flushed_b
        if conv.inputs[1].outputs != [conv]:
            result.stats["shared weight cloned"] += 1
        note = f"{describe(node)} into next {describe(conv)}"  # before detach: describe
        detach(node)  # names an unnamed node by its output
        conv.inputs[0] = x
        conv.inputs[1] = gs.Constant(names.fresh(f"{base}_W_folded"), new_w)
        new_bias = gs.Constant(names.fresh(f"{base}_B_folded"), new_b)
        if len(conv.inputs) > 2:
            conv.inputs[2] = new_bias
        else:
            conv.inputs.append(new_bias)
        result.rewrote(note)

"""Fold BatchNormalization into the Conv, ConvTranspose, Gemm or MatMul(+Add) before it.

In inference mode BatchNormalization is a per-channel affine map on axis 1:

    s = gamma / sqrt(var + eps)          t = beta - mean * s
    BN(y) = s * y + t

so for ``y = W x + b`` (see ``_linear`` for where each op keeps its output channels):

    BN(W x + b) = (s W) x + (s b + t)     ->   W' = s W,   b' = s b + t

computed in float64 and cast back to the weight dtype (denormals flushed). MatMul's channels
sit on the last axis, so MatMul + BN folds only when the output is 2-D (there axis 1 is the
last axis); a MatMul without bias gets an ``Add`` for ``t``.

Preconditions (each skip is counted with the node's name): ``training_mode`` 0 and no
optional outputs in use; all BN parameters and the weights constant and float; the producer's
output consumed by this BN alone and not a graph output. A weight shared with another node is
cloned (counted as ``shared weight cloned``) unless ``clone_shared=False``.
"""

from __future__ import annotations

import onnx_graphsurgeon as gs

from fuser.passes.base import Context, Rule, register
from fuser.passes.exact._linear import linear_producer
from fuser.passes.match import (
    NotCandidate,
    Skip,
    batchnorm_affine,
    describe,
    refuse_shared_weight,
)


@register
class FoldBatchNorm(Rule):
    """Fold BatchNormalization into the preceding Conv/ConvTranspose/Gemm/MatMul."""

    name = "fold-batchnorm"
    ops = ("BatchNormalization",)

    def __init__(self, clone_shared: bool = True) -> None:
        self.clone_shared = clone_shared

    def match(self, bn: gs.Node, context: Context) -> tuple:
        scale, shift = batchnorm_affine(bn)
        try:
            linear = linear_producer(bn.inputs[0], context.graph)
        except NotCandidate as reason:  # every BN is a candidate: say why this one stays
            raise Skip(str(reason)) from None
        if linear.out_rank is None or linear.out_axis % linear.out_rank != 1:
            raise Skip(f"{describe(bn)} normalizes axis 1 but {describe(linear.node)} "
                       "keeps its channels on the last axis of a non-2-D output")
        if linear.channels != scale.shape[0]:
            raise Skip(f"{describe(bn)} has {scale.shape[0]} channels, "
                       f"{describe(linear.node)} has {linear.channels}")
        if not self.clone_shared:
            refuse_shared_weight(linear.node)
        return bn, linear, scale, shift

    def rewrite(self, found: tuple, context: Context) -> str:
        bn, linear, scale, shift = found
        return linear.fold(bn, scale, shift, context)

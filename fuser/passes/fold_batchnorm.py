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

from fuser.passes._linear import linear_producer
from fuser.passes._match import (
    Names,
    Skip,
    batchnorm_affine,
    describe,
    refuse_shared_weight,
    take_outputs,
)
from fuser.passes.base import Pass, PassResult, register


@register
class FoldBatchNorm(Pass):
    """Fold BatchNormalization into the preceding Conv/ConvTranspose/Gemm/MatMul."""

    name = "fold-batchnorm"

    def __init__(self, clone_shared: bool = True) -> None:
        self.clone_shared = clone_shared

    def run(self, graph: gs.Graph) -> PassResult:
        result = PassResult()
        names = Names(graph)
        for bn in [n for n in graph.nodes if n.op == "BatchNormalization"]:
            try:
                scale, shift = batchnorm_affine(bn)
                linear = linear_producer(bn.inputs[0], graph)
                if linear.out_rank is None or linear.out_axis % linear.out_rank != 1:
                    raise Skip(f"{describe(bn)} normalizes axis 1 but {describe(linear.node)} "
                               "keeps its channels on the last axis of a non-2-D output")
                if linear.channels != scale.shape[0]:
                    raise Skip(f"{describe(bn)} has {scale.shape[0]} channels, "
                               f"{describe(linear.node)} has {linear.channels}")
                if not self.clone_shared:
                    refuse_shared_weight(linear.node)
            except Skip as reason:
                result.skip(str(reason))
                continue
            linear.absorb(scale, shift, graph, names, result)
            result.rewrote(f"{describe(bn)} into {describe(linear.node)}")
            take_outputs(linear.last_node, bn)
        return result

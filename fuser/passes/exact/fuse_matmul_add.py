"""Fuse a MatMul and the bias Add after it into one Gemm (Keras Dense layers export so).

    y = Add(MatMul(A, B), c)   ->   y = Gemm(A, B, c')      c' = c as a vector of N

Gemm computes ``A @ B + C`` with C broadcast to ``[M, N]``: the same sum, one node.
Preconditions: A of rank 2 (Gemm is 2-D only; the rank comes from shape inference), B a
constant ``[K, N]`` of a float type, the bias a constant of N elements shaped ``[N]`` or
``[1, N]``, the MatMul's output read by the Add alone and not a graph output.
"""

from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs

from fuser.passes.base import Context, Rule, register
from fuser.passes.match import (
    NotCandidate,
    Skip,
    describe,
    float_constant,
    producer,
    require_sole_consumer,
)
from fuser.passes.surgery import take_outputs


def _match(add: gs.Node, graph: gs.Graph) -> tuple[gs.Node, gs.Constant]:
    """The MatMul before ``add`` and the bias; NotCandidate or Skip otherwise."""
    for side in (0, 1):
        matmul = producer(add.inputs[side])
        if matmul is not None and matmul.op == "MatMul":
            break
    else:
        raise NotCandidate(describe(add))
    bias = float_constant(add.inputs[1 - side], "bias", add)
    require_sole_consumer(matmul.outputs[0], graph)
    a, b = matmul.inputs
    if a.shape is None or len(a.shape) != 2:
        raise Skip(f"{describe(matmul)} has an input of rank "
                   f"{'unknown' if a.shape is None else len(a.shape)}, not 2")
    weight = float_constant(b, "weight", matmul)
    if len(weight.shape) != 2:
        raise Skip(f"{describe(matmul)} has a {len(weight.shape)}-D weight, not 2-D")
    n = weight.shape[1]
    if tuple(bias.shape) not in ((n,), (1, n)):
        raise Skip(f"{describe(add)} adds a tensor of shape {tuple(bias.shape)}, not a bias "
                   f"of {n}")
    if np.dtype(bias.dtype) != np.dtype(weight.dtype):
        raise Skip(f"{describe(add)}: bias and weight dtypes differ")
    return matmul, bias


@register
class FuseMatMulAdd(Rule):
    """Fuse MatMul followed by a bias Add into Gemm."""

    name = "fuse-matmul-add"
    ops = ("Add",)

    def match(self, add: gs.Node, context: Context) -> tuple[gs.Node, gs.Node, gs.Constant]:
        if len(add.inputs) != 2:
            raise NotCandidate(describe(add))
        return (add, *_match(add, context.graph))

    def rewrite(self, found: tuple[gs.Node, gs.Node, gs.Constant], context: Context) -> str:
        add, matmul, bias = found
        if len(bias.shape) == 2:
            bias = gs.Constant(context.names.fresh(f"{bias.name}_vector"),
                               np.asarray(bias.values).reshape(-1))
        gemm = gs.Node("Gemm", name=matmul.name, inputs=[*matmul.inputs, bias])
        context.graph.nodes.append(gemm)
        take_outputs(gemm, add)
        matmul.inputs.clear()
        matmul.outputs.clear()
        return f"{describe(matmul)} and {describe(add)} became Gemm '{gemm.name}'"

"""Linear producers (Conv, ConvTranspose, Gemm, MatMul[+Add]) seen as ``y = W x + b``.

Folding a per-channel affine map ``y' = s * y + t`` that follows such a node is the same
algebra for all of them:

    W' = W scaled by s along the output-channel axis of the weight
    b' = s * b + t

Only *where* the output channels sit differs:

- Conv: W is (M, C/g, k...), output channels on weight axis 0; y's channel axis is 1.
- ConvTranspose: W is (C, M/g, k...). Output channel ``m = gi * M/g + j`` lives in rows of
  group ``gi`` at column ``j``, so W is viewed as (g, C/g, M/g, k...) and scaled by
  ``s.reshape(g, 1, M/g, 1...)``: axis 1 of the weight, per group.
- Gemm: ``y = alpha * A' B' + beta * C``; B' columns are output channels (rows of B when
  transB=1). The new bias is ``s * beta * C + t`` and beta becomes 1.
- MatMul with a constant right operand W (K, M): y's channel axis is the last one. A
  following ``Add`` with a per-channel constant is treated as its bias; when a shift must be
  added and there is no such Add, one is created.

W' and b' are computed in float64 from the original values and rounded once to the weight's
dtype: a fold into a node that an earlier fold rewrote (``Conv -> BN -> Mul -> Add``) starts
from the earlier fold's float64 results (``match.unrounded``), not from their float16 or
float32 roundings.
"""

from __future__ import annotations

import collections
import dataclasses

import numpy as np
import onnx_graphsurgeon as gs

from fuser.passes.base import Context, PassResult
from fuser.passes.exact._scaled import ScaledWeight
from fuser.passes.match import (
    Names,
    NotCandidate,
    Skip,
    cast_back,
    describe,
    float_constant,
    producer,
    require_sole_consumer,
    unrounded,
    weight_dtype,
)
from fuser.passes.surgery import take_outputs

LINEAR_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


@dataclasses.dataclass
class Linear:
    """A linear node with constant weights, ready to absorb an affine map on its output."""

    node: gs.Node
    weight: gs.Constant  # float, not read until the folded weight is computed
    bias: np.ndarray | None  # float64 effective bias (beta * C for Gemm), None if absent
    out_axis: int  # channel axis of the output tensor (1 or -1)
    out_rank: int | None  # rank of the output tensor, None if unknown
    bias_node: gs.Node | None = None  # the Add holding a MatMul's bias

    @property
    def channels(self) -> int:
        node, w = self.node, self.weight
        if node.op == "Conv":
            return w.shape[0]
        if node.op == "ConvTranspose":
            return w.shape[1] * int(node.attrs.get("group", 1))
        if node.op == "Gemm":
            return w.shape[0] if node.attrs.get("transB", 0) else w.shape[1]
        return w.shape[1]  # MatMul

    @property
    def output(self) -> gs.Tensor:
        """The tensor holding ``W x + b``."""
        return (self.bias_node or self.node).outputs[0]

    @property
    def last_node(self) -> gs.Node:
        return self.bias_node or self.node

    def scaled_weight(self, s: np.ndarray, stats: collections.Counter) -> ScaledWeight:
        """``W`` scaled by ``s`` along its output channels, computed when it is exported
        (float64, rounded once to the weight's dtype, denormals flushed and counted in
        ``stats``): see ``_scaled``."""
        node, shape = self.node, tuple(self.weight.shape)
        layout = shape
        if node.op == "Conv":
            factor = s.reshape((-1,) + (1,) * (len(shape) - 1))
        elif node.op == "ConvTranspose":
            g = int(node.attrs.get("group", 1))
            layout = (g, shape[0] // g) + shape[1:]
            factor = s.reshape((g, 1, shape[1]) + (1,) * (len(shape) - 2))
        elif node.op == "Gemm" and node.attrs.get("transB", 0):
            factor = s[:, None]
        else:  # Gemm transB=0 and MatMul: columns are outputs
            factor = s[None, :]
        return ScaledWeight(self.weight._values, factor.astype(np.float64), layout, stats)

    def fold(self, node: gs.Node, s: np.ndarray, t: np.ndarray, context: Context) -> str:
        """Fold ``node``, which computes ``s * y + t`` of this linear node's output ``y``:
        the linear node absorbs it and computes ``node``'s output; returns the note."""
        self.absorb(s, t, context.graph, context.names, context.result)
        note = f"{describe(node)} into {describe(self.node)}"  # before: it names an
        take_outputs(self.last_node, node)                    # unnamed node by its output
        return note

    def absorb(self, s: np.ndarray, t: np.ndarray, graph: gs.Graph, names: Names,
               result: PassResult) -> None:
        """Rewrite the node in place so that it computes ``s * (W x + b) + t``."""
        node = self.node
        dtype = weight_dtype(node.inputs[1])
        base = node.name or node.outputs[0].name
        weight = self.scaled_weight(s, result.stats)
        if node.inputs[1].outputs != [node]:
            result.stats["shared weight cloned"] += 1
        node.inputs[1] = gs.Constant(names.fresh(f"{base}_W_folded"), weight)
        bias = t if self.bias is None else s * self.bias + t
        if self.bias is None and not np.any(t):
            return
        bias_c, flushed_b = cast_back(bias, dtype, keep_exact=True)
        result.stats["denormals flushed"] += flushed_b
        new_bias = gs.Constant(names.fresh(f"{base}_B_folded"), bias_c)
        if node.op in ("Conv", "ConvTranspose"):
            if len(node.inputs) > 2:
                node.inputs[2] = new_bias
            else:
                node.inputs.append(new_bias)
        elif node.op == "Gemm":
            node.attrs["beta"] = 1.0
            if len(node.inputs) > 2:
                node.inputs[2] = new_bias
            else:
                node.inputs.append(new_bias)
        elif self.bias_node is not None:
            i = 1 if self.bias_node.inputs[0] is node.outputs[0] else 0
            self.bias_node.inputs[i] = new_bias
        else:  # MatMul without bias: add one
            y = node.outputs[0]
            # Same shape as y: a later fold reads the MatMul's output rank from it.
            matmul_out = gs.Variable(names.fresh(f"{base}_matmul"), dtype=dtype, shape=y.shape)
            node.outputs = [matmul_out]
            self.bias_node = gs.Node("Add", names.fresh(f"{base}_bias"),
                                     inputs=[matmul_out, new_bias], outputs=[y])
            graph.nodes.append(self.bias_node)


def linear_producer(tensor: gs.Tensor, graph: gs.Graph) -> Linear:
    """The linear node (with its bias Add, for MatMul) computing ``tensor``; Skip otherwise.

    ``tensor`` must have no consumer but the one about to be folded and must not be a graph
    output: folding rewrites the value it holds.
    """
    node = producer(tensor)
    if node is None:
        raise NotCandidate(f"'{tensor.name}' is not computed by a node")
    bias_node = None
    if node.op == "Add":
        try:
            bias_node, node = node, _matmul_under_add(node, graph)
        except NotCandidate:  # a residual Add, say
            raise NotCandidate(f"'{tensor.name}' comes from Add, not from "
                               f"{'/'.join(LINEAR_OPS)} or a MatMul's bias Add") from None
    if node.op not in LINEAR_OPS:
        raise NotCandidate(f"'{tensor.name}' comes from {node.op}, not from "
                           f"{'/'.join(LINEAR_OPS)}")
    require_sole_consumer(tensor, graph)
    return _describe_linear(node, bias_node)


def _matmul_under_add(add: gs.Node, graph: gs.Graph) -> gs.Node:
    """For ``Add(MatMul(x, W), b)`` return the MatMul; Skip for any other Add."""
    for i in (0, 1):
        matmul = producer(add.inputs[i])
        constant_bias = isinstance(add.inputs[1 - i], gs.Constant)
        if matmul is not None and matmul.op == "MatMul" and constant_bias:
            require_sole_consumer(add.inputs[i], graph)
            return matmul
    raise NotCandidate(f"{describe(add)} is not a bias Add after a MatMul with a constant "
                       "weight")


def _describe_linear(node: gs.Node, bias_node: gs.Node | None) -> Linear:
    if len(node.inputs) < 2:
        raise Skip(f"{describe(node)} has no weight input")
    if node.op == "MatMul" and isinstance(node.inputs[0], gs.Constant) \
            and not isinstance(node.inputs[1], gs.Constant):
        raise Skip(f"{describe(node)} has its constant on the left")
    weight = float_constant(node.inputs[1], "weight", node)
    bias = None
    if len(node.inputs) > 2 and node.inputs[2].name:  # "" is an omitted optional input
        bias = unrounded(node.inputs[2], "bias", node)  # a folded bias: before its rounding
        if node.op == "Gemm":
            bias = bias * float(node.attrs.get("beta", 1.0))
    out_rank = _rank(node.outputs[0])
    if node.op in ("Conv", "ConvTranspose"):
        out_axis, out_rank = 1, len(weight.shape)
        if node.op == "ConvTranspose" and weight.shape[0] % int(node.attrs.get("group", 1)):
            raise Skip(f"{describe(node)} has {weight.shape[0]} input channels, not divisible "
                       f"by group={node.attrs.get('group')}")
    elif node.op == "Gemm":
        out_axis, out_rank = 1, 2
    else:
        if len(weight.shape) != 2:
            raise Skip(f"{describe(node)} has a {len(weight.shape)}-D weight, not 2-D")
        out_axis = -1
    linear = Linear(node, weight, bias, out_axis, out_rank)
    if bias_node is not None:
        i = 1 if bias_node.inputs[0] is node.outputs[0] else 0
        linear.bias_node = bias_node
        linear.bias = per_channel(unrounded(bias_node.inputs[i], "bias", bias_node),
                                  linear, bias_node)
    return linear


def _rank(tensor: gs.Tensor) -> int | None:
    shape = getattr(tensor, "shape", None)
    return len(shape) if shape is not None else None


def per_channel(values: np.ndarray, linear: Linear, node: gs.Node) -> np.ndarray:
    """The vector (one value per output channel) that ``values`` broadcasts to on the linear
    node's output; Skip when it varies along another axis or would change the output's
    shape."""
    return channel_vector(values, linear.channels, linear.out_axis, linear.out_rank, node)


def channel_vector(values: np.ndarray, channels: int, axis: int, rank: int | None,
                   node: gs.Node) -> np.ndarray:
    """``values`` as one number per channel of a rank-``rank`` tensor whose channels sit on
    ``axis``; Skip when it varies along another axis or has more dims than the tensor."""
    if rank is not None and values.ndim > rank:
        raise Skip(f"{describe(node)} operand has rank {values.ndim} > tensor rank {rank}")
    if values.size == 1:
        return np.full(channels, values.reshape(-1)[0])
    if rank is None:
        if axis == -1 and values.ndim == 1 and values.shape[0] == channels:
            return values
        raise Skip(f"{describe(node)}: the rank of its input is unknown")
    within = axis % rank - (rank - values.ndim)  # channel axis within the operand
    expected = [1] * values.ndim
    if within >= 0:
        expected[within] = channels
    if list(values.shape) == expected:
        return values.reshape(-1)
    raise Skip(f"{describe(node)} operand of shape {list(values.shape)} is not per-channel "
               f"on axis {axis} ({channels} channels)")

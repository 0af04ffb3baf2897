"""Fold per-channel Mul/Add/Sub/Div by constants into the Conv, ConvTranspose, Gemm or MatMul
before them (what Keras 3 exports leave behind after depthwise convolutions).

With ``y = W x + b`` and a constant ``c`` that broadcasts per output channel:

    y * c  ->  W' = c W,     b' = c b          y + c  ->  b' = b + c
    y / c  ->  W' = W / c,   b' = b / c        y - c  ->  b' = b - c
    c - y  ->  W' = -W,      b' = c - b

i.e. the affine map ``s * y + t`` with the (s, t) above, absorbed as in ``fold-batchnorm``
(float64, cast back, denormals flushed). ``c / y`` is not affine and is left alone.

Preconditions: ``c`` is a float constant whose shape broadcasts along the output channel
axis only and does not grow the output's rank; the producer's output has no other consumer
and is not a graph output. An ``Add`` right after a bias-free MatMul is already the MatMul's
bias and stays as it is.
"""

from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs

from fuser.passes._linear import linear_producer, per_channel
from fuser.passes._match import Names, NotCandidate, Skip, constant, describe, take_outputs
from fuser.passes.base import Pass, PassResult, register

AFFINE_OPS = ("Mul", "Add", "Sub", "Div")


def split_operands(node: gs.Node) -> tuple[gs.Tensor, gs.Constant, bool]:
    """``(x, c, c_first)`` for a binary op with exactly one constant operand; Skip otherwise."""
    if len(node.inputs) != 2:
        raise NotCandidate(f"{describe(node)} does not have 2 inputs")
    a, b = node.inputs
    if isinstance(b, gs.Constant) and not isinstance(a, gs.Constant):
        return a, b, False
    if isinstance(a, gs.Constant) and not isinstance(b, gs.Constant):
        return b, a, True
    raise NotCandidate(f"{describe(node)} has no single constant operand")


def affine_of(op: str, c: np.ndarray, c_first: bool,
              node: gs.Node) -> tuple[np.ndarray, np.ndarray]:
    """(s, t) with ``node(x) == s * x + t``, broadcast like ``c``."""
    one, zero = np.ones_like(c), np.zeros_like(c)
    if op == "Mul":
        return c, zero
    if op == "Add":
        return one, c
    if op == "Sub":
        return (-one, c) if c_first else (one, -c)
    if c_first:
        raise Skip(f"{describe(node)} divides a constant by a tensor (not affine)")
    if not np.all(c):
        raise Skip(f"{describe(node)} divides by zero")
    return 1.0 / c, zero


@register
class FoldAffine(Pass):
    """Fold per-channel Mul/Add/Sub/Div by constants into the preceding linear node."""

    name = "fold-affine"

    def run(self, graph: gs.Graph) -> PassResult:
        result = PassResult()
        names = Names(graph)
        for node in [n for n in graph.nodes if n.op in AFFINE_OPS]:
            if not node.inputs or not node.outputs:
                continue  # detached earlier in this run
            try:
                x, c_tensor, c_first = split_operands(node)
                linear = linear_producer(x, graph)
                c = constant(c_tensor, "operand", node)
                s, t = affine_of(node.op, c, c_first, node)
                s, t = per_channel(s, linear, node), per_channel(t, linear, node)
            except NotCandidate:
                continue
            except Skip as reason:
                result.skip(str(reason))
                continue
            if linear.node.op == "MatMul" and linear.bias_node is None and np.all(s == 1):
                continue  # Add after a bare MatMul is its bias already
            linear.absorb(s, t, graph, names, result)
            result.rewrote(f"{describe(node)} into {describe(linear.node)}")
            take_outputs(linear.last_node, node)
        return result

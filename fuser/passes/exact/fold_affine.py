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
bias and stays as it is. A per-channel Mul/Add/Sub/Div (BatchNorm as Keras exports it) that
follows no linear node is counted with the reason; other ops by constants are not candidates.
"""

from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs

from fuser.passes.base import Context, Rule, register
from fuser.passes.exact._linear import linear_producer, per_channel
from fuser.passes.match import NotCandidate, Skip, describe, unrounded

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


def _per_channel_of(c: gs.Tensor, x: gs.Tensor) -> bool:
    """Whether the constant ``c`` varies along axis 1 of ``x`` only (BatchNorm's scale or
    shift as Keras exports it), for a known channel count above 1."""
    shape = getattr(x, "shape", None)
    if not isinstance(c, gs.Constant) or shape is None or len(shape) < 2 or \
            not isinstance(shape[1], int) or shape[1] < 2 or len(c.shape) > len(shape):
        return False
    padded = [1] * (len(shape) - len(c.shape)) + list(c.shape)
    return padded == [1, shape[1]] + [1] * (len(shape) - 2)


@register
class FoldAffine(Rule):
    """Fold per-channel Mul/Add/Sub/Div by constants into the preceding linear node."""

    name = "fold-affine"
    ops = AFFINE_OPS

    def match(self, node: gs.Node, context: Context) -> tuple:
        if not node.inputs or not node.outputs:
            raise NotCandidate(describe(node))
        x, c_tensor, c_first = split_operands(node)
        try:
            linear = linear_producer(x, context.graph)
        except NotCandidate as reason:  # said for per-channel ones: BN's Keras form
            if _per_channel_of(c_tensor, x):
                raise Skip(f"{describe(node)} by a per-channel constant: {reason}") from None
            raise
        c = unrounded(c_tensor, "operand", node)
        s, t = affine_of(node.op, c, c_first, node)
        s, t = per_channel(s, linear, node), per_channel(t, linear, node)
        if linear.node.op == "MatMul" and linear.bias_node is None and np.all(s == 1):
            raise NotCandidate(describe(node))  # Add after a bare MatMul is its bias already
        return node, linear, s, t

    def rewrite(self, found: tuple, context: Context) -> str:
        node, linear, s, t = found
        return linear.fold(node, s, t, context)

"""Fuse tf2onnx's decomposed PReLU back into one PRelu node.

    y = Add(Relu(x), Mul(Relu(Neg(x)), c))   ->   y = PRelu(x, -c)
    y = Sub(Relu(x), Mul(Relu(Neg(x)), a))   ->   y = PRelu(x, a)

Keras's PReLU computes ``relu(x) - alpha * relu(-x)``, and tf2onnx exports it as those five
nodes (the constant ``c = -alpha`` folded by TensorFlow). For ``x >= 0`` the sum is
``x + c * 0 = x``; for ``x < 0`` it is ``0 + c * (-x) = (-c) * x``: PRelu with slope
``-c``, exactly (negation is exact in floating point, and adding 0 changes nothing). The Mul
may take its operands in either order, the Add too. Needs ``c`` a float constant that
broadcasts to ``x``'s shape one way (PRelu's slope is unidirectionally broadcast: its rank at
most ``x``'s, each of its dims 1 or ``x``'s known dim there), and every intermediate
(``Relu(x)``, ``Neg(x)``, ``Relu(Neg(x))``, the product) read by this pattern alone and not a
graph output.
"""

from __future__ import annotations

import onnx_graphsurgeon as gs

from fuser.passes.base import Context, Rule, register
from fuser.passes.match import (
    NotCandidate,
    Skip,
    constant,
    describe,
    made_by,
    require_sole_consumer,
    weight_dtype,
)
from fuser.passes.surgery import detach, take_outputs


def _negative_part(tensor: gs.Tensor) -> tuple[gs.Node, gs.Node, gs.Node, gs.Tensor] | None:
    """``Mul(Relu(Neg(x)), c)``: the Mul, the inner Relu, the Neg and ``c``; None else."""
    mul = made_by(tensor, "Mul")
    if mul is None or len(mul.inputs) != 2:
        return None
    for side in (0, 1):
        relu = made_by(mul.inputs[side], "Relu")
        neg = made_by(relu.inputs[0], "Neg") if relu is not None else None
        if neg is not None:
            return mul, relu, neg, mul.inputs[1 - side]
    return None


def slope_fits(slope: tuple[int, ...], x: tuple | None) -> bool:
    """Whether a slope of shape ``slope`` broadcasts to ``x`` one way (PRelu's rule)."""
    if x is None or len(slope) > len(x):
        return False
    return all(d == 1 or d == s for d, s in zip(slope[::-1], tuple(x)[::-1], strict=False))


@register
class FusePRelu(Rule):
    """Fuse Relu(x) + c * Relu(-x) (tf2onnx's PReLU) into PRelu."""

    name = "fuse-prelu"
    ops = ("Add", "Sub")

    def match(self, node: gs.Node, context: Context) -> tuple:
        if len(node.inputs) != 2:
            raise NotCandidate(describe(node))
        sides = (0, 1) if node.op == "Add" else (0,)
        for side in sides:
            positive = made_by(node.inputs[side], "Relu")
            negative = _negative_part(node.inputs[1 - side])
            if positive is not None and negative is not None and \
                    negative[2].inputs[0] is positive.inputs[0]:
                break
        else:
            raise NotCandidate(describe(node))
        mul, relu, neg, factor = negative
        x = positive.inputs[0]
        values = constant(factor, "factor", mul)
        if not slope_fits(values.shape, x.shape):
            raise Skip(f"{describe(mul)}: its factor of shape {values.shape} does not "
                       f"broadcast to {describe(node)}'s input {x.shape} one way")
        for tensor in (positive.outputs[0], neg.outputs[0], relu.outputs[0], mul.outputs[0]):
            require_sole_consumer(tensor, context.graph)
        slope = -values if node.op == "Add" else values
        return node, x, slope.astype(weight_dtype(factor)), (positive, neg, relu, mul)

    def rewrite(self, found: tuple, context: Context) -> str:
        node, x, slope, parts = found
        note = f"{', '.join(describe(p) for p in parts)} and {describe(node)} became PRelu"
        name = context.names.fresh(f"{node.outputs[0].name}_slope")
        prelu = gs.Node("PRelu", name=node.name, inputs=[x, gs.Constant(name, slope)])
        context.graph.nodes.append(prelu)
        take_outputs(prelu, node)
        for part in parts:
            detach(part)
        return note

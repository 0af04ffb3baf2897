"""Cancel a Transpose pair that elementwise ops separate (tf2onnx's NHWC <-> NCHW debris).

    y = Transpose<p2>(E_k(...E_1(Transpose<p1>(x), c_1)..., c_k))
        ->   y = E_k(...E_1(x, c_1')..., c_k')      when p1[p2[i]] = i,  c' = Transpose<p2>(c)

An elementwise op computes each element from the elements at the same index, so it commutes
with any Transpose of all its operands: ``T(E(a, c)) = E(T(a), T(c))``, with ``c`` first
given the rank of ``a`` by leading 1s (broadcasting aligns the trailing dims; the
transposed constant broadcasts to ``T(a)`` the same way). Moving ``T_p2`` up the chain to
``T_p1`` composes ``p1[p2[i]]``: the identity, so both vanish and each constant is stored
transposed once. tf2onnx leaves such pairs around the per-position Mul of a Keras PReLU and
the Add/Mul of Keras's BatchNormalization where its transpose optimizer stopped; onnxruntime
sinks them at session creation, so they cost the exported model time at every level below.

The ops of the chain: unary elementwise ones (Relu, Sigmoid, Neg, Clip with constant bounds,
LeakyRelu...) and binary ones (Add, Sub, Mul, Div, Pow, Max, Min, PRelu, Where is not one)
whose other operand is a constant of rank at most the tensor's, or a computed tensor whose
transpose moves only dims of 1 (an SE block's ``[N, 1, 1, C]`` gate): that one is reshaped
instead, by its own Reshape's target where a Reshape made it (tf2onnx's SE blocks), else by a
new Reshape (one node for two). Each intermediate tensor is
read by the next op alone and is not a graph output; the constants may be shared (each gets
a transposed copy of its own).
"""

from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs

from fuser.passes.base import Context, Rule, register
from fuser.passes.exact.cancel_transposes import permutation
from fuser.passes.exact.transpose_to_reshape import reshape_target
from fuser.passes.match import NotCandidate, Skip, describe, producer
from fuser.passes.surgery import bypass

UNARY = ("Relu", "Sigmoid", "Tanh", "Neg", "Abs", "Exp", "Log", "Sqrt", "Reciprocal", "Erf",
         "Softplus", "Softsign", "LeakyRelu", "Elu", "Selu", "HardSigmoid", "HardSwish", "Celu",
         "Floor", "Ceil", "Round", "Sign", "Identity", "Clip", "Cast")
BINARY = ("Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "PRelu")


def _step(node: gs.Node | None, p2: list[int]
          ) -> tuple[gs.Tensor, int | None, np.ndarray | None] | None:
    """``node`` as a link of the chain: the operand the chain runs through, the position of
    its other operand (None for a unary op), and, when that operand is computed, the Reshape
    target that transposes it by ``p2`` (``transpose_to_reshape``: it must move only dims of
    1, as an SE block's ``[N, 1, 1, C]`` gate does); None when ``node`` is not a link."""
    if node is None or node.domain not in ("", None) or not node.inputs:
        return None
    if node.op in UNARY:
        extra = node.inputs[1:]
        if any(not (t.is_empty() or isinstance(t, gs.Constant) and t.shape is not None and
                    len(t.shape) == 0) for t in extra):  # Clip's bounds: scalars
            return None
        return node.inputs[0], None, None
    if node.op not in BINARY or len(node.inputs) != 2:
        return None
    rank = len(p2)
    for side in (0, 1):
        other = node.inputs[1 - side]
        if node.op == "PRelu" and side == 1 or other.shape is None or len(other.shape) > rank:
            continue
        if isinstance(other, gs.Constant):
            return node.inputs[side], 1 - side, None
        full = [1] * (rank - len(other.shape)) + list(other.shape)
        if sum(not isinstance(d, int) for d in full) <= 1 and _leads_back(node.inputs[side]):
            target = reshape_target(full, p2)
            if target is not None:
                return node.inputs[side], 1 - side, target
    return None


def _leads_back(tensor: gs.Tensor) -> bool:
    """Whether the chain may go on through ``tensor``: a Transpose or an elementwise op
    made it (the other operand of a binary op with two computed ones is the gate)."""
    node = producer(tensor)
    return node is not None and node.op in ("Transpose", *UNARY, *BINARY)


@register
class CancelTransposesAcross(Rule):
    """Cancel inverse Transposes across elementwise ops (constants transposed, gates reshaped)."""

    name = "cancel-transposes-across"
    ops = ("Transpose",)

    def match(self, last: gs.Node, context: Context) -> tuple:
        p2 = permutation(last)
        rank = len(p2)
        chain, tensor = [], last.inputs[0]
        while True:
            node = producer(tensor)
            if node is not None and node.op == "Transpose" and chain:
                first = node
                break
            step = _step(node, p2)
            if step is None or len(tensor.outputs) != 1 or tensor in context.graph.outputs:
                raise NotCandidate(describe(last))
            chain.append((node, step[1], step[2]))
            tensor = step[0]
        if len(tensor.outputs) != 1 or tensor in context.graph.outputs:
            raise Skip(f"{describe(first)}: its output is read elsewhere")
        p1 = permutation(first)
        if [p1[i] for i in p2] != list(range(rank)):
            raise NotCandidate(describe(last))
        return first, last, chain, p2

    def rewrite(self, found: tuple, context: Context) -> str:
        first, last, chain, p2 = found
        bypass(last, context.graph)  # first: it may refuse (Skip), before anything changed
        for node, slot, target in chain:
            for tensor in node.outputs:  # now in x's layout: its old shape is stale
                if tensor not in context.graph.outputs:
                    tensor.shape = None
            if slot is None:
                continue
            if target is not None:  # a computed operand: reshaped, its elements in place
                node.inputs[slot] = _reshaped(node.inputs[slot], target, context)
                continue
            values = np.asarray(node.inputs[slot].values)
            full = values.reshape((1,) * (len(p2) - values.ndim) + values.shape)
            node.inputs[slot] = gs.Constant(
                context.names.fresh(f"{node.inputs[slot].name}_transposed"),
                np.ascontiguousarray(full.transpose(p2)))
        entry = chain[-1][0]
        entry.inputs[next(i for i, t in enumerate(entry.inputs) if t is first.outputs[0])] = \
            first.inputs[0]
        return (f"{describe(first)} and {describe(last)} cancel across "
                f"{', '.join(describe(n) for n, _, _ in chain)}")


def _reshaped(tensor: gs.Tensor, target: np.ndarray, context: Context) -> gs.Tensor:
    """``tensor`` reshaped to ``target``: by its own Reshape's target where a Reshape with a
    constant target made it for this reader alone, else by a new Reshape node."""
    node = producer(tensor)
    if node is not None and node.op == "Reshape" and len(node.inputs) > 1 and \
            isinstance(node.inputs[1], gs.Constant) and len(tensor.outputs) == 1 and \
            tensor not in context.graph.outputs:
        node.inputs[1] = gs.Constant(context.names.fresh(f"{tensor.name}_shape"), target)
        node.attrs.pop("allowzero", None)  # the target has no 0 to copy
        tensor.shape = None
        return tensor
    out = gs.Variable(context.names.fresh(f"{tensor.name}_reshaped"), dtype=tensor.dtype)
    context.graph.nodes.append(gs.Node("Reshape", inputs=[tensor, gs.Constant(
        context.names.fresh(f"{tensor.name}_shape"), target)], outputs=[out]))
    return out

"""Remove nodes that hand on their input unchanged (the debris constant folding exposes).

    y = Reshape(x, s)        y.shape == x.shape                       ->  consumers read x
    y = Flatten<axis>(x)     y.shape == x.shape (x is already 2-D)    ->  consumers read x
    y = Cast<to=T>(x)        x is already of type T                   ->  consumers read x
    y = Slice(x, ...)        y.shape == x.shape and every step is 1   ->  consumers read x
    y = Expand(x, s)         y.shape == x.shape                       ->  consumers read x
    y = Concat(x)            a single input                           ->  consumers read x
    y = Pad(x, 0...)         every pad amount is 0                    ->  consumers read x

"Shape" means the dims shape inference gave both tensors: every dim known, or the same
symbol (an equal symbolic batch) at the same place; a tensor of unknown rank or dims never
counts as unchanged. A Slice with a step of -1 keeps the shape but reverses: only steps of 1
count; nor does a graph output's declared shape (files declare wrong ones: ddddocr's OCR
model declares ``[1, seqlen]`` for a 3-D output), so only Cast, Concat and Pad are removed before a
graph output, where ``x``'s producer then computes ``y`` directly (the output keeps its name);
joining a graph input or constant straight to a graph output is skipped.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from fuser.passes.base import Context, Rule, register
from fuser.passes.match import NotCandidate, describe
from fuser.passes.surgery import bypass


def _same_shape(x: gs.Tensor, y: gs.Tensor) -> bool:
    if x.shape is None or y.shape is None or len(x.shape) != len(y.shape):
        return False
    for a, b in zip(x.shape, y.shape, strict=True):
        if not (isinstance(a, int | str) and a == b and a != "" and
                (not isinstance(a, int) or a >= 0)):
            return False
    return True


def _is_noop(node: gs.Node) -> bool:
    x, y = node.inputs[0], node.outputs[0]
    if node.op in ("Reshape", "Flatten", "Expand"):
        return _same_shape(x, y)
    if node.op == "Cast":
        if x.dtype is None or not isinstance(x.dtype, np.dtype | type):
            return False
        try:
            return onnx.helper.np_dtype_to_tensor_dtype(np.dtype(x.dtype)) == node.attrs["to"]
        except (KeyError, TypeError, ValueError):
            return False
    if node.op == "Slice":
        steps = node.inputs[4] if len(node.inputs) > 4 and not node.inputs[4].is_empty() else None
        if steps is not None and (not isinstance(steps, gs.Constant) or
                                  np.any(np.asarray(steps.values) != 1)):
            return False
        return _same_shape(x, y)
    if node.op == "Concat":
        return len(node.inputs) == 1
    if node.op == "Pad":
        return _zero_pads(node)
    return False


def _zero_pads(node: gs.Node) -> bool:
    if "pads" in node.attrs:  # opset < 11
        return not any(node.attrs["pads"])
    pads = node.inputs[1] if len(node.inputs) > 1 else None
    return isinstance(pads, gs.Constant) and not np.any(np.asarray(pads.values))


@register
class EliminateNoops(Rule):
    """Remove Reshape/Flatten/Cast/Slice/Expand/Concat/Pad nodes that change nothing."""

    name = "eliminate-noops"
    ops = ("Reshape", "Flatten", "Cast", "Slice", "Expand", "Concat", "Pad")

    def match(self, node: gs.Node, context: Context) -> gs.Node:
        graph = context.graph
        if not node.inputs or len(node.outputs) != 1:
            raise NotCandidate(describe(node))
        # A graph output's shape is the one the file declares, maybe wrongly.
        if node.outputs[0] in graph.outputs and node.op not in ("Cast", "Concat", "Pad") \
                or not _is_noop(node):
            raise NotCandidate(describe(node))
        return node

    def rewrite(self, node: gs.Node, context: Context) -> str:
        bypass(node, context.graph)  # Skip (graph input to graph output) changes nothing
        return f"{describe(node)} changes nothing"

"""Remove nodes that copy their input: Identity, and Dropout in inference mode.

    y = Identity(x)          ->  consumers of y read x
    y = Dropout(x[, r, 0])   ->  consumers of y read x   (mask output unused)

Exporters leave Identity chains behind (torch de-duplicates equal tensors into Identity nodes;
608 of them in ResNet-152). When ``y`` is a graph output, ``x``'s producer computes ``y``
directly so the output keeps its name. Skips: Dropout with ``training_mode`` not a constant
false or with its mask in use; an Identity joining a graph input or constant straight to a
graph output.
"""

from __future__ import annotations

import onnx_graphsurgeon as gs

from fuser.passes.base import Context, Rule, register
from fuser.passes.match import NotCandidate, Skip, describe
from fuser.passes.surgery import bypass


def _check_dropout(node: gs.Node, graph: gs.Graph) -> None:
    if len(node.outputs) > 1 and (node.outputs[1].outputs or node.outputs[1] in graph.outputs):
        raise Skip(f"{describe(node)} has its mask output in use")
    if node.attrs.get("is_test", 1) == 0:
        raise Skip(f"{describe(node)} has is_test=0 (training mode)")
    if len(node.inputs) > 2 and node.inputs[2].name:
        mode = node.inputs[2]
        if not isinstance(mode, gs.Constant) or bool(mode.values.reshape(-1)[0]):
            raise Skip(f"{describe(node)} may run in training mode")


@register
class EliminateIdentity(Rule):
    """Remove Identity nodes and inference-mode Dropout."""

    name = "eliminate-identity"
    ops = ("Identity", "Dropout")

    def match(self, node: gs.Node, context: Context) -> gs.Node:
        if not node.inputs or not node.outputs:
            raise NotCandidate(describe(node))
        if node.op == "Dropout":
            _check_dropout(node, context.graph)
        return node

    def rewrite(self, node: gs.Node, context: Context) -> None:
        bypass(node, context.graph)  # a Skip here has changed nothing
        context.result.rewrites += 1  # one summary note, in finish

    def finish(self, context: Context) -> None:
        if context.result.rewrites:
            context.result.notes.append(
                f"{context.result.rewrites} Identity/Dropout node(s) removed")

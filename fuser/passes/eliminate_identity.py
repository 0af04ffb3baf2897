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

from fuser.passes._match import Skip, bypass, describe
from fuser.passes.base import Pass, PassResult, register


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
class EliminateIdentity(Pass):
    """Remove Identity nodes and inference-mode Dropout."""

    name = "eliminate-identity"

    def run(self, graph: gs.Graph) -> PassResult:
        result = PassResult()
        for node in [n for n in graph.nodes if n.op in ("Identity", "Dropout")]:
            if not node.inputs or not node.outputs:
                continue
            try:
                if node.op == "Dropout":
                    _check_dropout(node, graph)
                bypass(node, graph)
            except Skip as reason:
                result.skip(str(reason))
                continue
            result.rewrites += 1
        if result.rewrites:
            result.notes.append(f"{result.rewrites} Identity/Dropout node(s) removed")
        return result

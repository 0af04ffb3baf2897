"""What ``optimize`` reports about a model besides the passes' records: its statistics
(nodes, ops, parameters, MACs) and notes on what the passes could not see or change."""

from __future__ import annotations

import collections
from collections.abc import Mapping, Sequence

import onnx

from fuser import ir as graph_io
from fuser.passes.exact.fold_constants import folded_at
from fuser.report import ModelStats
from fuser.runtime import inputs as inputs_io


def model_stats(model: onnx.ModelProto, shapes: graph_io.Shapes,
                fixed: Mapping[str, Sequence[int]] | None = None) -> ModelStats:
    """Nodes, op histogram, parameters and MACs of ``model`` at the given shapes.

    When shape arithmetic hides some layers' shapes from shape inference, the MACs are
    counted on a copy with that arithmetic folded (at the ``fixed`` input shapes, if any):
    the layers are the same, their shapes become known.
    """
    macs, coverage, unknown = graph_io.count_macs(model, shapes)
    if unknown:
        folded = folded_at(model, fixed or {})
        again = graph_io.count_macs(folded, graph_io.infer_shapes(folded))
        if len(again[2]) < len(unknown):
            macs, coverage, unknown = again
    return ModelStats(nodes=len(model.graph.node), ops=graph_io.op_histogram(model),
                      params=graph_io.param_count(model), macs=macs, layer_shapes=coverage,
                      unknown_layers=unknown)


def input_notes(model: onnx.ModelProto, static: Mapping[str, Sequence[int]] | None) -> list[str]:
    """The notes on the input: its subgraphs, repeated node names, and with
    ``static`` (the fixed shapes of ``--static-shapes``) the interface the output gets."""
    notes = [*subgraph_notes(model), *repeated_names_note(model)]
    if static is not None:
        notes.append(f"static shapes: the output's inputs are fixed at "
                     f"{inputs_io.describe_shapes(static)} (it runs at those shapes only)")
    return notes


def symbolic_notes(model: onnx.ModelProto, fixed_shapes: graph_io.Shapes,
                   fixed: Mapping[str, Sequence[int]]) -> list[str]:
    """Name the Shape/Size nodes left because they read dims that stay symbolic in the output
    but that the fixed input shapes would fold."""
    kept = []
    for node in model.graph.node:
        if node.op_type in ("Shape", "Size") and node.input and node.input[0] in fixed_shapes:
            dims = fixed_shapes[node.input[0]][1]
            if all(isinstance(d, int) and d >= 0 for d in dims):
                kept.append(f"{node.op_type} '{node.name or node.output[0]}'")
    if not kept:
        return []
    shown = ", ".join(kept[:5]) + (f" and {len(kept) - 5} more" if len(kept) > 5 else "")
    return [f"kept {len(kept)} shape computation(s) that read dims the output keeps symbolic "
            f"({shown}): they fold with --static-shapes (the output then runs at "
            f"{inputs_io.describe_shapes(fixed)} only)"]


def repeated_names_note(model: onnx.ModelProto) -> list[str]:
    """Node names used more than once: onnxruntime refuses them (fuser's sessions rename)."""
    counts = collections.Counter(n.name for n in model.graph.node if n.name)
    repeated = [f"'{name}' x{count}" for name, count in counts.items() if count > 1]
    if not repeated:
        return []
    return [(f"node names repeat ({', '.join(repeated)}): valid ONNX, but onnxruntime refuses "
             "such a model; fuser's sessions used unique names, the output keeps the original "
             "ones")]


def subgraph_notes(model: onnx.ModelProto) -> list[str]:
    """Name the subgraphs (If/Loop/Scan bodies): the rewrite rules run in them too, but the
    node counts and op histograms are the main graph's."""
    holders = []
    for node in model.graph.node:
        inner = sum(graph_io.subgraph_node_count(a) for a in node.attribute)
        if inner:
            holders.append(f"{node.op_type} '{node.name or node.output[0]}' ({inner} nodes)")
    if not holders:
        return []
    return [f"subgraphs (the rules rewrite them too; node and op counts are the main "
            f"graph's): {', '.join(holders)}"]

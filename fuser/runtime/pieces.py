"""A large model's outputs from consecutive pieces of it, each a session of its own.

onnxruntime's session creation grows faster than the node count, even with optimizations
off: 10,000 BatchNormalization nodes in a chain take 3.0 s, 20,000 take 10.5 s (onnxruntime
1.31, this project's machine). Validation makes a session of the original and of the
result; on a 40,000-node Conv+BN chain those two took 26 of the run's 54 s.

ONNX keeps a graph's nodes in topological order, so the node list cut into runs of
``PIECE_NODES`` gives pieces that can run one after the other: piece ``k`` reads the graph's
inputs and the tensors earlier pieces wrote, and writes those that later pieces or the
graph's outputs read. Each piece is a model of the same opset, with the initializers its
nodes read, run by the same kernels at the same optimization level: the outputs are those
of one session on the whole model (a test compares them bit for bit). A model with
subgraphs (If, Loop, Scan: their bodies read outer tensors by name) or with fewer nodes
runs in one session.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import onnx
from onnx import helper

from fuser.runtime import sessions as runtime

#: Nodes per piece: about a second of session creation for the chains above.
PIECE_NODES = 5000


def cut(model: onnx.ModelProto, size: int | None = None) -> list[tuple[int, int]]:
    """The node ranges of the pieces, or one range when the model runs whole: it has at
    most ``size`` nodes, a node with a subgraph, or an output no node or input computes."""
    nodes, size = model.graph.node, size or PIECE_NODES
    computed = {t for n in nodes for t in n.output} | {i.name for i in model.graph.input}
    if len(nodes) <= size or any(o.name not in computed for o in model.graph.output) or any(
            a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
            for n in nodes for a in n.attribute):
        return [(0, len(nodes))]
    return [(start, min(start + size, len(nodes))) for start in range(0, len(nodes), size)]


def run(model: onnx.ModelProto, names: Sequence[str], batches: Sequence[Mapping[str, np.ndarray]],
        *, label: str | None = None, size: int | None = None) -> dict[str, list[np.ndarray]]:
    """The values of the graph outputs ``names`` on each batch (one array per batch), from
    one session per piece (``cut``: ``size`` nodes, ``PIECE_NODES`` by default) at
    ORT_DISABLE_ALL; ``label`` as for ``sessions.session``."""
    ranges = cut(model, size)
    if len(ranges) == 1 or not batches:
        sess = runtime.session(model, label=label)
        values: dict[str, list[np.ndarray]] = {n: [] for n in names}
        for feeds in batches:
            for name, value in zip(names, sess.run(list(names), dict(feeds)), strict=True):
                values[name].append(value)
        return values
    live = [dict(feeds) for feeds in batches]  # per batch: the tensors known so far
    for start, end in ranges:
        piece, wanted = _piece(model, start, end, live[0], set(names))
        sess = runtime.session(piece, label=label)
        for known in live:
            feeds = {i.name: known[i.name] for i in piece.graph.input}
            known.update(zip(wanted, sess.run(wanted, feeds), strict=True))
        del sess
        needed = _read_after(model, end, names)
        for known in live:  # what no later piece reads and no output is goes
            for name in [t for t in known if t not in needed]:
                del known[name]
    return {n: [known[n] for known in live] for n in names}


def _read_after(model: onnx.ModelProto, end: int, names: Sequence[str]) -> set[str]:
    """Tensors nodes from ``end`` on read, and the outputs asked for."""
    return {t for n in model.graph.node[end:] for t in n.input} | set(names)


def _piece(model: onnx.ModelProto, start: int, end: int, known: Mapping[str, np.ndarray],
           names: set[str]) -> tuple[onnx.ModelProto, list[str]]:
    """Nodes ``start:end`` as a model: its inputs the tensors they read that ``known``
    holds (graph inputs, earlier pieces' outputs; types from the arrays), its outputs those
    they write that later nodes read or ``names`` asks for."""
    graph = model.graph
    nodes = graph.node[start:end]
    weights = {t.name: t for t in graph.initializer}
    read = list(dict.fromkeys(t for n in nodes for t in n.input if t))
    later = _read_after(model, end, names)
    written = [t for n in nodes for t in n.output if t]
    outputs = [t for t in written if t in later]
    inputs = [helper.make_tensor_value_info(
        t, helper.np_dtype_to_tensor_dtype(np.asarray(known[t]).dtype), None)
        for t in read if t in known and t not in written]
    piece = helper.make_graph(
        nodes, f"{graph.name}_{start}", inputs,
        [helper.make_empty_tensor_value_info(t) for t in outputs],
        [weights[t] for t in read if t in weights and t not in known])
    out = helper.make_model(piece, opset_imports=model.opset_import,
                            ir_version=model.ir_version)
    out.functions.extend(model.functions)
    return out, outputs

"""Parts of a model that onnxruntime runs instead of the whole (it does not prune a graph to
the outputs asked for: a run computes every node).

- ``prefix(model, names, given)``: only the nodes the tensors ``names`` depend on, which
  become the outputs, starting from the ``given`` tensors where they are known. The search
  builds its layers in network order; fitting layer i needs its input in the approximated
  network, and the prefix stops there; the next layer's part starts from the tensors the
  network after layer i reads (``upstream_inputs``), known from that run.
- ``tail(model, key, dtypes)``: every node downstream of the one that computes the tensor
  ``key``, with each tensor they read from upstream made a graph input. Measuring a layer's
  sensitivity runs only the rewritten layer and this part, fed with the original network's
  upstream tensors (``upstream_inputs``).

Both work on the ModelProto (no shape inference, weights shared by reference into the copy's
initializer list), and treat every name a subgraph (If/Loop/Scan body) reads as an input of
the node that owns it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import onnx
from onnx import helper


def reads(node: onnx.NodeProto) -> set[str]:
    """Every tensor name ``node`` reads, subgraph bodies included."""
    names = {n for n in node.input if n}
    for attribute in node.attribute:
        for graph in [attribute.g, *attribute.graphs] if attribute.type in (
                onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) else []:
            for inner in graph.node:
                names |= reads(inner)
    return names


def _part(model: onnx.ModelProto, nodes: list[onnx.NodeProto], inputs: list[onnx.ValueInfoProto],
          outputs: Iterable[str]) -> onnx.ModelProto:
    read = set().union(*(reads(n) for n in nodes)) if nodes else set()
    graph = helper.make_graph(
        nodes, model.graph.name, inputs,
        [helper.make_empty_tensor_value_info(name) for name in outputs],
        [t for t in model.graph.initializer if t.name in read])
    out = helper.make_model(graph, opset_imports=model.opset_import,
                            ir_version=model.ir_version)
    out.functions.extend(model.functions)
    return out


def prefix(model: onnx.ModelProto, names: list[str],
           given: Mapping[str, np.dtype] | None = None) -> onnx.ModelProto:
    """The part of ``model`` that computes the tensors ``names`` (its outputs, in order);
    with ``given``, from those tensors too (typed inputs; what only they need is left out)."""
    given = given or {}
    producer = {o: n for n in model.graph.node for o in n.output}
    needed, stack, keep = set(), list(names), set()
    while stack:
        name = stack.pop()
        if name in needed:
            continue
        needed.add(name)
        node = None if name in given else producer.get(name)
        if node is not None and id(node) not in keep:
            keep.add(id(node))
            stack.extend(reads(node))
    nodes = [n for n in model.graph.node if id(n) in keep]
    inputs = [i for i in model.graph.input if i.name in needed and i.name not in given]
    inputs += [_typed(name, dtype) for name, dtype in given.items() if name in needed]
    return _part(model, nodes, inputs, names)


def downstream(model: onnx.ModelProto, key: str) -> list[onnx.NodeProto]:
    """The node that computes ``key`` and every node that depends on it, in graph order."""
    made: set[str] = set()
    nodes = []
    for node in model.graph.node:
        if key in node.output or reads(node) & made:
            nodes.append(node)
            made.update(node.output)
    if not nodes:
        raise KeyError(key)
    return nodes


def upstream_inputs(model: onnx.ModelProto, key: str) -> list[str]:
    """The tensors the suffix from ``key``'s node reads from upstream (not weights)."""
    nodes = downstream(model, key)
    made = {o for n in nodes for o in n.output}
    weights = {t.name for t in model.graph.initializer}
    return sorted({r for n in nodes for r in reads(n)} - made - weights)


def tail(model: onnx.ModelProto, key: str, dtypes: Mapping[str, np.dtype]) -> onnx.ModelProto:
    """The part of ``model`` after ``key``'s node: its graph outputs that depend on ``key``,
    computed from ``key`` and the other tensors read from upstream (typed by ``dtypes``).
    Without a node downstream of ``key``, a graph of no nodes."""
    return _from(model, downstream(model, key)[1:], dtypes)


def _from(model: onnx.ModelProto, nodes: list[onnx.NodeProto],
          dtypes: Mapping[str, np.dtype]) -> onnx.ModelProto:
    made = {o for n in nodes for o in n.output}
    weights = {t.name for t in model.graph.initializer}
    upstream = sorted({r for n in nodes for r in reads(n)} - made - weights)
    inputs = [_typed(name, dtypes[name]) for name in upstream]
    return _part(model, nodes, inputs, [o.name for o in model.graph.output if o.name in made])


def _typed(name: str, dtype: np.dtype) -> onnx.ValueInfoProto:
    """A graph input of that element type and unknown shape."""
    return helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(np.dtype(dtype)),
                                         None)

"""Small helpers over ONNX protobuf messages, shared by the graph adapter's modules."""

from __future__ import annotations

import math
from collections.abc import Iterator

import onnx


def all_initializers(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    """Every tensor the graph holds: initializers, tensor attributes, and subgraphs' too."""
    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.TENSOR:
                yield attr.t
            for sub in subgraphs(attr):
                yield from all_initializers(sub)


def subgraphs(attr: onnx.AttributeProto) -> list[onnx.GraphProto]:
    """The subgraphs an attribute holds (If/Loop/Scan bodies)."""
    if attr.type == onnx.AttributeProto.GRAPH:
        return [attr.g]
    if attr.type == onnx.AttributeProto.GRAPHS:
        return list(attr.graphs)
    return []


def subgraph_node_count(attr: onnx.AttributeProto) -> int:
    """Nodes in the subgraphs an attribute holds (nested subgraphs included)."""
    total = 0
    for sub in subgraphs(attr):
        total += len(sub.node)
        total += sum(subgraph_node_count(a) for node in sub.node for a in node.attribute)
    return total


def weights_nbytes(model: onnx.ModelProto) -> int:
    """Bytes held by the model's tensors (initializers and tensor attributes, subgraphs too)."""
    total = 0
    for tensor in all_initializers(model.graph):
        total += tensor_nbytes(tensor)
    return total


def tensor_nbytes(tensor: onnx.TensorProto) -> int:
    """Size from dims and dtype (reading ``raw_data`` would copy the bytes)."""
    if tensor.data_type in (onnx.TensorProto.STRING, onnx.TensorProto.UNDEFINED):
        return 8 * math.prod(tensor.dims)
    return math.prod(tensor.dims) * onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize


def one_line(exc: BaseException, limit: int = 400) -> str:
    """An exception's whole message on one line (the checker names the node on the lines
    after "of node:"), at most ``limit`` characters."""
    text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    text = text or type(exc).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."


def first_line(exc: BaseException) -> str:
    """An exception's message, first line only (its type when it has none)."""
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def overridable_initializers(model: onnx.ModelProto) -> set[str]:
    """Names of initializers that are also graph inputs."""
    inputs = {value.name for value in model.graph.input}
    return {t.name for t in model.graph.initializer if t.name in inputs}


def without_initializers(model: onnx.ModelProto) -> onnx.ModelProto:
    """Copy ``model`` field by field, leaving out the main graph's initializers."""
    out = onnx.ModelProto()
    copy_fields(model, out, skip="graph")
    copy_fields(model.graph, out.graph, skip="initializer")
    return out


def copy_fields(src, dst, skip: str) -> None:
    """Copy the set fields of ``src`` into ``dst``, except ``skip``."""
    for field, value in src.ListFields():
        if field.name == skip:
            continue
        if field.is_repeated:
            getattr(dst, field.name).extend(value)
        elif field.message_type is not None:
            getattr(dst, field.name).CopyFrom(value)
        else:
            setattr(dst, field.name, value)

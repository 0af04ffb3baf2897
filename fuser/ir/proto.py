"""Small helpers over ONNX protobuf messages, shared by the graph adapter's modules."""

from __future__ import annotations

import math
from collections.abc import Iterator

import onnx

from fuser.errors import BadModelError


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
        if field.is_repeated and field.message_type is not None:
            target = getattr(dst, field.name)
            for item in value:  # not extend(): it serializes, which fails past 2 GB
                target.add().CopyFrom(item)
        elif field.is_repeated:
            getattr(dst, field.name).extend(value)
        elif field.message_type is not None:
            getattr(dst, field.name).CopyFrom(value)
        else:
            setattr(dst, field.name, value)


# ------------------------------------------------------------------ tensors and their data

#: Types stored in fewer than 8 bits an element (packed): only a tensor with no data at all
#: is refused; their packing rules differ by onnx version.
_PACKED_TYPES = frozenset(getattr(onnx.TensorProto, name) for name in (
    "INT4", "UINT4", "FLOAT4E2M1", "INT2", "UINT2", "FLOAT6E2M3", "FLOAT6E3M2")
    if hasattr(onnx.TensorProto, name))
_COMPLEX_TYPES = frozenset({onnx.TensorProto.COMPLEX64, onnx.TensorProto.COMPLEX128})


def _stored(tensor: onnx.TensorProto, raw: bool) -> tuple[int, int, str] | None:
    """``(stored, expected, unit)``: what ``tensor`` holds against what its dims declare, in
    bytes of ``raw_data`` or in values of its typed field; None for ``raw_data`` unless
    ``raw`` (its length costs a copy of the bytes)."""
    elements = math.prod(tensor.dims)
    if tensor.data_type == onnx.TensorProto.STRING:
        return len(tensor.string_data), elements, "strings"
    if tensor.HasField("raw_data"):
        if not raw:
            return None
        itemsize = onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize
        return len(tensor.raw_data), elements * itemsize, "bytes"
    field = onnx.helper.tensor_dtype_to_field(tensor.data_type)
    per_element = 2 if tensor.data_type in _COMPLEX_TYPES else 1
    return len(getattr(tensor, field)), elements * per_element, "values"


def malformed_tensor(tensor: onnx.TensorProto, raw: bool = True) -> str | None:
    """Why ``tensor``'s stored data does not match its dims, or None when it does (or when
    the data is external, or the type is one fuser does not size; ``raw``: as ``_stored``)."""
    if any(d < 0 for d in tensor.dims):
        return f"has a negative dimension {list(tensor.dims)}"
    if tensor.data_location == onnx.TensorProto.EXTERNAL or tensor.HasField("segment") \
            or tensor.data_type == onnx.TensorProto.UNDEFINED:
        return None
    try:
        stored, expected, unit = _stored(tensor, raw) or (0, 0, "")
    except (KeyError, ValueError, TypeError):  # a type this onnx does not know
        return None
    packed = tensor.data_type in _PACKED_TYPES
    if stored == expected or (packed and (stored > 0 or expected == 0)):
        return None
    declared = f"declares {math.prod(tensor.dims):,} elements (dims {list(tensor.dims)})"
    if stored == 0:
        return f"{declared} but stores no data"
    return f"{declared} but stores {stored:,} {unit} (needs {expected:,})"


def require_stored_data(model: onnx.ModelProto, name: str = "model", *,
                        raw: bool = True) -> None:
    """Refuse a tensor whose data does not match its dims (a tensor declared with 1e9
    elements and no data made every later step fail with a traceback). ``raw=False`` leaves
    out the length of ``raw_data`` (reading it copies the bytes), so it costs nothing.

    Raises:
        BadModelError: naming ``name``, the tensor, its declared elements and stored size.
    """
    for tensor, where in _named_tensors(model.graph):
        problem = malformed_tensor(tensor, raw)
        if problem is not None:
            raise BadModelError(f"{name}: malformed tensor {where}: {problem}")


def _named_tensors(graph: onnx.GraphProto) -> Iterator[tuple[onnx.TensorProto, str]]:
    """Every tensor of ``graph`` (subgraphs too), with how to name it in a message."""
    for tensor in graph.initializer:
        yield tensor, f"'{tensor.name}'"
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.TENSOR:
                yield attr.t, f"'{attr.t.name or attr.name}' of node {node_label(node)}"
            for sub in subgraphs(attr):
                yield from _named_tensors(sub)


def node_label(node: onnx.NodeProto) -> str:
    """``'name' (OpType)``, or the op type and first output when the node has no name."""
    if node.name:
        return f"'{node.name}' ({node.op_type})"
    return f"{node.op_type} (output '{node.output[0] if node.output else ''}')"


def subgraph_initializers(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    """The initializers of the If/Loop/Scan bodies in ``graph``, nested ones too."""
    for node in graph.node:
        for attr in node.attribute:
            for sub in subgraphs(attr):
                yield from sub.initializer
                yield from subgraph_initializers(sub)


#: The fields of a TensorProto that hold its values.
DATA_FIELDS = ("raw_data", "float_data", "int32_data", "int64_data", "double_data",
               "uint64_data", "string_data")


def point_at_file(tensor: onnx.TensorProto, location: str, offset: int | None = None,
                  length: int | None = None) -> None:
    """Drop the tensor's data and point it at external ``location`` (``length`` bytes at
    ``offset``, when given)."""
    for field in (*DATA_FIELDS, "external_data"):
        tensor.ClearField(field)
    tensor.data_location = onnx.TensorProto.EXTERNAL
    entries = [("location", location)] + ([] if offset is None else [
        ("offset", str(offset)), ("length", str(length))])
    for key, value in entries:
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value

"""The graph adapter: the only module that touches ONNX protobuf.

It loads and saves models (with external data, so models over 2 GB work), converts between
``onnx.ModelProto`` and the onnx-graphsurgeon ``gs.Graph`` that passes mutate, and offers the
checker and shape inference; the model statistics (op histogram, parameters, MACs) are in
``fuser.statistics`` and re-exported here.

Large models: the checker and shape inference run on a *skeleton* of the model, a copy in
which every large initializer is replaced by a reference to an empty external file. That
copy is cheap, never exceeds protobuf's 2 GB limit, and still lets the checker verify every
node, type and shape.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from fuser.errors import BadModelError, FuserError

logger = logging.getLogger(__name__)

#: Protobuf cannot serialize a message of 2 GiB or more; past this we write external data.
PROTOBUF_LIMIT = 2**31 - 1
#: Initializers at least this large are stripped from the checker's skeleton.
_SKELETON_KEEP_BYTES = 1024
#: Initializers at least this large go to the external data file when saving with one.
_EXTERNAL_MIN_BYTES = 1024

ModelLike = onnx.ModelProto | str | os.PathLike


# --------------------------------------------------------------------------- load and save


def load(model: ModelLike) -> onnx.ModelProto:
    """Load a model from a path (external data next to it is loaded too) or pass one through.

    Raises:
        BadModelError: the path is missing, a directory, or not an ONNX protobuf.
    """
    if isinstance(model, onnx.ModelProto):
        return model
    path = Path(model)
    if not path.exists():
        raise BadModelError(f"{path}: no such file")
    if path.is_dir():
        raise BadModelError(f"{path}: is a directory, not an ONNX file")
    try:
        proto = onnx.load(str(path), load_external_data=True)
    except Exception as exc:  # protobuf raises DecodeError, onnx raises various
        raise BadModelError(f"{path}: not a readable ONNX model ({_first_line(exc)})") from exc
    if not proto.HasField("graph") or not proto.opset_import:
        raise BadModelError(f"{path}: not an ONNX model (no graph or no opset_import)")
    return proto


def save(model: onnx.ModelProto, path: str | os.PathLike, *,
         external_data: bool | None = None) -> None:
    """Write ``model`` to ``path`` atomically: into a temporary folder beside it, then rename.

    ``external_data=None`` writes the weights to ``<name>.data`` beside the model only when
    the model would not fit in one protobuf; ``True`` always does so. ``model`` is unchanged
    afterwards.
    """
    path = Path(path)
    folder = path.parent
    if not folder.is_dir():
        raise FuserError(f"{path}: folder {folder} does not exist")
    if path.is_dir():
        raise FuserError(f"{path}: is a directory")
    if external_data is None:
        external_data = weights_nbytes(model) > PROTOBUF_LIMIT - 64 * 2**20
    data_name = f"{path.name}.data"
    with tempfile.TemporaryDirectory(prefix=f".{path.name}.", dir=folder) as tmp:
        tmp_model = os.path.join(tmp, path.name)
        if external_data:
            _write_external(model, tmp_model, os.path.join(tmp, data_name), data_name)
            if os.path.exists(os.path.join(tmp, data_name)):
                os.replace(os.path.join(tmp, data_name), folder / data_name)
        else:
            with open(tmp_model, "wb") as f:
                f.write(model.SerializeToString())
        os.replace(tmp_model, path)


def _write_external(model: onnx.ModelProto, model_path: str, data_path: str,
                    location: str) -> None:
    """Write the main graph's large initializers to ``data_path`` and the rest of the model,
    pointing at them, to ``model_path``, without changing or copying ``model``'s weights."""
    out = _without_initializers(model)
    with open(data_path, "wb") as data:
        for tensor in model.graph.initializer:
            slim = out.graph.initializer.add()
            if _tensor_nbytes(tensor) < _EXTERNAL_MIN_BYTES or \
                    tensor.data_location == onnx.TensorProto.EXTERNAL:
                slim.CopyFrom(tensor)
                continue
            raw = tensor.raw_data if tensor.HasField("raw_data") else \
                onnx.numpy_helper.to_array(tensor).tobytes()
            offset = data.tell()
            data.write(raw)
            data.write(b"\0" * (-len(raw) % 64))  # keep tensors aligned for memory mapping
            slim.name, slim.data_type = tensor.name, tensor.data_type
            slim.dims.extend(tensor.dims)
            slim.data_location = onnx.TensorProto.EXTERNAL
            for key, value in (("location", location), ("offset", str(offset)),
                               ("length", str(len(raw)))):
                entry = slim.external_data.add()
                entry.key, entry.value = key, value
    if os.path.getsize(data_path) == 0:
        os.unlink(data_path)
    with open(model_path, "wb") as f:
        f.write(out.SerializeToString())


def _all_initializers(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.TENSOR:
                yield attr.t
            for sub in _subgraphs(attr):
                yield from _all_initializers(sub)


def _subgraphs(attr: onnx.AttributeProto) -> list[onnx.GraphProto]:
    if attr.type == onnx.AttributeProto.GRAPH:
        return [attr.g]
    if attr.type == onnx.AttributeProto.GRAPHS:
        return list(attr.graphs)
    return []


def weights_nbytes(model: onnx.ModelProto) -> int:
    """Bytes held by the model's tensors (initializers and tensor attributes, subgraphs too)."""
    total = 0
    for tensor in _all_initializers(model.graph):
        total += _tensor_nbytes(tensor)
    return total


def _tensor_nbytes(tensor: onnx.TensorProto) -> int:
    """Size from dims and dtype (reading ``raw_data`` would copy the bytes)."""
    if tensor.data_type in (onnx.TensorProto.STRING, onnx.TensorProto.UNDEFINED):
        return 8 * math.prod(tensor.dims)
    return math.prod(tensor.dims) * onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


# --------------------------------------------------------------------------- gs conversion


def to_graph(model: onnx.ModelProto) -> gs.Graph:
    """Import a model into onnx-graphsurgeon (weights stay lazy until a pass reads them)."""
    try:
        return gs.import_onnx(model)
    except Exception as exc:
        raise BadModelError(f"cannot import the graph: {_first_line(exc)}") from exc


def to_model(graph: gs.Graph, template: onnx.ModelProto | None = None) -> onnx.ModelProto:
    """Export a graph back to ONNX, keeping the template's opsets, IR version and metadata.

    Constants bypass onnx-graphsurgeon's exporter, which builds every tensor and then copies
    it again into the graph (and fails on one over 2 GB): they are exported as data-less
    stand-ins and their data written into place afterwards, in one copy. Only constants that
    gs would convert on export (``export_dtype`` differs, ``data_location`` set) take gs's way.
    """
    kwargs = {}
    if template is not None:
        kwargs = {
            "producer_name": template.producer_name,
            "producer_version": template.producer_version,
            "ir_version": template.ir_version,
            "doc_string": template.doc_string,
            "domain": template.domain,
            "model_version": template.model_version,
        }
    with _constants_as_stand_ins(graph) as originals:
        model = gs.export_onnx(graph, do_type_check=False, **kwargs)
    for tensor in model.graph.initializer:
        values = originals.get(tensor.name)
        if values is not None:
            _fill(tensor, values)
    if template is not None:
        model.ClearField("opset_import")
        model.opset_import.extend(template.opset_import)
        model.ClearField("metadata_props")
        model.metadata_props.extend(template.metadata_props)
        if template.functions and not model.functions:
            model.functions.extend(template.functions)
    return model


def _fill(tensor: onnx.TensorProto, values: object) -> None:
    """Write a constant's values (gs lazy values or a numpy array) into a stand-in ``tensor``
    as gs's exporter would (raw data, the constant's name), without changing the source."""
    from onnx_graphsurgeon.ir.tensor import LazyValues

    name = tensor.name
    if isinstance(values, LazyValues):
        tensor.CopyFrom(values.tensor)
        tensor.name = name
        return
    array = np.asarray(values)
    tensor.Clear()
    tensor.name = name
    tensor.data_type = onnx.helper.np_dtype_to_tensor_dtype(array.dtype)
    tensor.dims.extend(array.shape)
    tensor.raw_data = array.tobytes()


@contextlib.contextmanager
def _constants_as_stand_ins(graph: gs.Graph) -> Iterator[dict[str, object]]:
    """Swap the graph's constants for data-less stand-ins, then back; yield name -> values."""
    from onnx_graphsurgeon.ir.tensor import LazyValues

    swapped: list[tuple[gs.Constant, object]] = []
    originals: dict[str, object] = {}
    for tensor in graph.tensors().values():
        if not isinstance(tensor, gs.Constant):
            continue
        values = tensor._values
        if isinstance(values, np.ndarray):
            if tensor.data_location is not None or tensor.export_dtype != tensor.dtype or \
                    values.dtype.kind not in "biufc":
                continue
            data_type = onnx.helper.np_dtype_to_tensor_dtype(values.dtype)
        elif isinstance(values, LazyValues):
            data_type = values.tensor.data_type
        else:
            continue  # sparse values
        stand_in = onnx.TensorProto(name=tensor.name, data_type=data_type)
        stand_in.dims.extend(values.shape)
        stand_in.data_location = onnx.TensorProto.EXTERNAL
        entry = stand_in.external_data.add()
        entry.key, entry.value = "location", "fuser-stand-in"
        swapped.append((tensor, values))
        originals[tensor.name] = values
        tensor._values = LazyValues(stand_in)
    try:
        yield originals
    finally:
        for tensor, values in swapped:
            tensor._values = values


def opset(model_or_graph: onnx.ModelProto | gs.Graph) -> int:
    """The default-domain opset version."""
    if isinstance(model_or_graph, gs.Graph):
        return int(model_or_graph.opset)
    for entry in model_or_graph.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    return 1


# --------------------------------------------------------------------------- checker, shapes


def skeleton(model: onnx.ModelProto, location: str = "stripped.bin") -> onnx.ModelProto:
    """A copy of ``model`` whose large initializers point at an (empty) external file.

    Small tensors keep their data so that shape inference can read Reshape targets and the
    like. The copy costs almost nothing, whatever the model's size.
    """
    out = _without_initializers(model)
    for tensor in model.graph.initializer:
        slim = out.graph.initializer.add()
        small = _tensor_nbytes(tensor) < _SKELETON_KEEP_BYTES
        if small and tensor.data_location != onnx.TensorProto.EXTERNAL:
            slim.CopyFrom(tensor)
            continue
        slim.name = tensor.name
        slim.data_type = tensor.data_type
        slim.dims.extend(tensor.dims)
        slim.data_location = onnx.TensorProto.EXTERNAL
        entry = slim.external_data.add()
        entry.key, entry.value = "location", location
    return out


def _without_initializers(model: onnx.ModelProto) -> onnx.ModelProto:
    """Copy ``model`` field by field, leaving out the main graph's initializers."""
    out = onnx.ModelProto()
    _copy_fields(model, out, skip="graph")
    _copy_fields(model.graph, out.graph, skip="initializer")
    return out


def _copy_fields(src, dst, skip: str) -> None:
    for field, value in src.ListFields():
        if field.name == skip:
            continue
        if field.is_repeated:
            getattr(dst, field.name).extend(value)
        elif field.message_type is not None:
            getattr(dst, field.name).CopyFrom(value)
        else:
            setattr(dst, field.name, value)


#: One folder (with the empty external file skeletons point at) for every check of this
#: process, removed at exit: creating and removing a folder per check cost more than the check
#: of a small model.
_check_folder: tempfile.TemporaryDirectory | None = None


@contextlib.contextmanager
def _skeleton_on_disk(model: onnx.ModelProto) -> Iterator[str]:
    global _check_folder
    if _check_folder is None or not os.path.isdir(_check_folder.name):
        _check_folder = tempfile.TemporaryDirectory(prefix="fuser-check-")
        Path(_check_folder.name, "stripped.bin").touch()
    handle, path = tempfile.mkstemp(suffix=".onnx", dir=_check_folder.name)
    try:
        with os.fdopen(handle, "wb") as f:
            f.write(skeleton(model).SerializeToString())
        yield path
    finally:
        os.unlink(path)


def check(model: onnx.ModelProto, *, full: bool = True) -> None:
    """Run ``onnx.checker`` (with strict shape inference when ``full``) on any size of model.

    Raises:
        BadModelError: with the checker's first line.
    """
    with _skeleton_on_disk(model) as path:
        try:
            onnx.checker.check_model(path, full_check=full)
        except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
            raise BadModelError(f"invalid model: {_first_line(exc)}") from exc


Shapes = dict[str, tuple[int, tuple[int | str | None, ...]]]


def infer_shapes(model: onnx.ModelProto) -> Shapes:
    """``{tensor name: (onnx elem type, shape)}`` for every tensor inference can type.

    Dims are ints, symbols (str) or None. Inference is best effort: a failure is logged and
    only the declared inputs, outputs and initializers are returned.
    """
    try:
        inferred = onnx.shape_inference.infer_shapes(skeleton(model), data_prop=True)
    except Exception as exc:
        logger.warning("shape inference failed: %s", _first_line(exc))
        inferred = model
    shapes: Shapes = {}
    graph = inferred.graph
    for value in [*graph.input, *graph.value_info, *graph.output]:
        tensor_type = value.type.tensor_type
        if not tensor_type.HasField("shape"):
            continue
        shapes[value.name] = (tensor_type.elem_type, tuple(
            d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
            for d in tensor_type.shape.dim))
    for tensor in model.graph.initializer:
        shapes[tensor.name] = (tensor.data_type, tuple(tensor.dims))
    return shapes


def annotate(graph: gs.Graph, shapes: Shapes) -> None:
    """Give the graph's untyped variables the inferred dtype and shape (passes read ranks)."""
    for name, tensor in graph.tensors().items():
        if isinstance(tensor, gs.Variable) and tensor.shape is None and name in shapes:
            elem_type, shape = shapes[name]
            tensor.shape = list(shape)
            if tensor.dtype is None and elem_type:
                with contextlib.suppress(Exception):  # types numpy lacks stay untyped
                    tensor.dtype = onnx.helper.tensor_dtype_to_np_dtype(elem_type)


def with_outputs(model: onnx.ModelProto, names: list[str]) -> onnx.ModelProto:
    """A copy of ``model`` that also outputs the tensors ``names`` (for calibration)."""
    out = _without_initializers(model)
    out.graph.initializer.extend(model.graph.initializer)
    present = {o.name for o in out.graph.output}
    for name in names:
        if name not in present:
            out.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    return out


# The model statistics live in their own module; graph keeps exporting them.
from fuser.statistics import (  # noqa: E402
    constant_view,
    float_weights,
    mac_count,
    op_histogram,
    param_count,
)

__all__ = [
    "PROTOBUF_LIMIT", "ModelLike", "Shapes", "annotate", "check", "constant_view",
    "float_weights", "infer_shapes", "load", "mac_count", "op_histogram", "opset",
    "param_count", "save", "skeleton", "to_graph", "to_model", "weights_nbytes", "with_outputs",
]

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
import sys
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
    with open(path, "rb") as f:
        head = f.read(8)
    for signature, kind in _FOREIGN_SIGNATURES:
        if head.startswith(signature):
            raise BadModelError(f"{path}: {kind}, not an ONNX model (a Keras model? convert it "
                                "first: onnx-fuser export keras FILE -o MODEL.onnx)")
    try:
        proto = onnx.load(str(path), load_external_data=True)
    except Exception as exc:  # protobuf raises DecodeError, onnx raises various
        raise BadModelError(f"{path}: not a readable ONNX model ({_first_line(exc)})") from exc
    if not proto.HasField("graph") or not proto.opset_import:
        raise BadModelError(f"{path}: not an ONNX model (no graph or no opset_import)")
    require_known_opsets(proto, str(path))
    return proto


def referenced_files(path: str | os.PathLike) -> list[Path]:
    """The model file and the external data files it reads (parsed without the weights)."""
    path = Path(path)
    model = onnx.load(str(path), load_external_data=False)
    files = [path]
    for tensor in _all_initializers(model.graph):
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            location = next((e.value for e in tensor.external_data if e.key == "location"), None)
            if location and path.parent / location not in files:
                files.append(path.parent / location)
    return files


#: File signatures of formats that users pass as ONNX by mistake (Keras .keras and .h5).
_FOREIGN_SIGNATURES = ((b"PK\x03\x04", "a zip archive"), (b"\x89HDF\r\n\x1a\n", "an HDF5 file"))


def require_known_opsets(model: onnx.ModelProto, name: str = "model") -> None:
    """Refuse opsets of the standard domains newer than the installed onnx knows: their
    operators' meaning is unknown to every pass, the checker and shape inference.

    Raises:
        BadModelError: naming the domain, the model's opset and the newest one onnx knows.
    """
    known = onnx.defs.C.schema_version_map()
    for entry in model.opset_import:
        domain = "" if entry.domain == "ai.onnx" else entry.domain
        if domain in known and entry.version > known[domain][1]:
            raise BadModelError(
                f"{name}: opset {entry.version} of domain '{entry.domain or 'ai.onnx'}' is newer "
                f"than onnx {onnx.__version__} supports ({known[domain][1]}); upgrade onnx or "
                "export with an older opset")


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


def subgraph_node_count(attr: onnx.AttributeProto) -> int:
    """Nodes in the subgraphs an attribute holds (nested subgraphs included)."""
    total = 0
    for sub in _subgraphs(attr):
        total += len(sub.node)
        total += sum(subgraph_node_count(a) for node in sub.node for a in node.attribute)
    return total


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
    """Import a model into onnx-graphsurgeon (weights stay lazy until a pass reads them).

    Initializers that are also graph inputs: from IR version 4 on they are defaults that a
    caller may override, so they become graph-input variables here (no pass treats them as
    constants) and ``to_model`` restores their initializers. Before IR 4 they are constants
    (every initializer had to be listed as an input), as onnx-graphsurgeon imports them.
    """
    try:
        graph = gs.import_onnx(model)
    except Exception as exc:
        raise BadModelError(f"cannot import the graph: {_first_line(exc)}") from exc
    if model.ir_version >= 4:
        overridable = _overridable_initializers(model)
        if overridable:
            _inputs_as_variables(graph, model, overridable)
    return graph


def _overridable_initializers(model: onnx.ModelProto) -> set[str]:
    """Names of initializers that are also graph inputs."""
    inputs = {value.name for value in model.graph.input}
    return {t.name for t in model.graph.initializer if t.name in inputs}


def _inputs_as_variables(graph: gs.Graph, model: onnx.ModelProto, names: set[str]) -> None:
    """Put the overridable initializers back as graph inputs (variables), in input order."""
    tensors = graph.tensors()
    inputs = []
    for value in model.graph.input:
        if value.name not in names:
            inputs.append(tensors[value.name] if value.name in tensors else
                          next(t for t in graph.inputs if t.name == value.name))
            continue
        constant = tensors.get(value.name)
        tensor_type = value.type.tensor_type
        try:
            dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor_type.elem_type)
        except (KeyError, TypeError, ValueError):  # types numpy lacks stay onnx enums
            dtype = tensor_type.elem_type
        variable = gs.Variable(value.name, dtype=dtype, shape=[
            d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
            for d in tensor_type.shape.dim])
        for node in list(getattr(constant, "outputs", [])):
            for i, tensor in enumerate(node.inputs):
                if tensor is constant:
                    node.inputs[i] = variable
        inputs.append(variable)
    graph.inputs = inputs


def to_model(graph: gs.Graph, template: onnx.ModelProto | None = None, *,
             free_arrays: bool = False) -> onnx.ModelProto:
    """Export a graph back to ONNX, keeping the template's opsets, IR version and metadata.

    Constants bypass onnx-graphsurgeon's exporter, which copies every array twice more
    (``tobytes``, then a standalone tensor copied into the graph), fails on one over 2 GB,
    and names the value tensors of the *source* model's Constant nodes in place: they are
    exported as data-less stand-ins and their data written into place afterwards, in one
    copy (a tensor read from the source model is copied as it is, then renamed). Only
    constants that gs converts on export (``export_dtype`` differs, ``data_location`` set)
    take gs's way. ``free_arrays`` (for a graph that is exported for the last time) makes
    the graph's constants read their values back from the exported tensors, so that their
    numpy arrays are freed: the weights are not held twice. Without it the graph is
    unchanged (it keeps no reference to the returned model).
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
    with _constants_as_stand_ins(graph) as swapped:
        model = gs.export_onnx(graph, do_type_check=False, **kwargs)
        for tensor in _all_initializers(model.graph):
            entry = swapped.get(tensor.name)
            if entry is None or not _is_stand_in(tensor):
                continue
            constant, values = entry
            _fill(tensor, values)
            if free_arrays and (isinstance(values, np.ndarray) or hasattr(values, "raw_bytes")):
                swapped[tensor.name] = (constant, _lazy(tensor))  # the graph reads it back
    if template is not None:
        _initializers_as_inputs(model, template)
        model.ClearField("opset_import")
        model.opset_import.extend(template.opset_import)
        model.ClearField("metadata_props")
        model.metadata_props.extend(template.metadata_props)
        if template.functions and not model.functions:
            model.functions.extend(template.functions)
    return model


def _initializers_as_inputs(model: onnx.ModelProto, template: onnx.ModelProto) -> None:
    """Keep the template's convention for initializers listed as graph inputs.

    IR >= 4: the overridable ones (graph inputs again since ``to_graph``) get their default
    values back. IR < 4: every initializer must be a graph input (the checker insists).
    """
    if template.ir_version >= 4:
        overridable = _overridable_initializers(template)
        inputs = {value.name for value in model.graph.input}
        model.graph.initializer.extend(t for t in template.graph.initializer
                                       if t.name in overridable and t.name in inputs)
        return
    listed = {value.name for value in model.graph.input}
    for tensor in model.graph.initializer:
        if tensor.name not in listed:
            model.graph.input.append(onnx.helper.make_tensor_value_info(
                tensor.name, tensor.data_type, list(tensor.dims)))


def _lazy(tensor: onnx.TensorProto):
    from onnx_graphsurgeon.ir.tensor import LazyValues

    return LazyValues(tensor)


#: The ``location`` that marks a stand-in (never written to a file).
_STAND_IN = "fuser-stand-in"


def _is_stand_in(tensor: onnx.TensorProto) -> bool:
    return tensor.data_location == onnx.TensorProto.EXTERNAL and \
        any(e.key == "location" and e.value == _STAND_IN for e in tensor.external_data)


def _fill(tensor: onnx.TensorProto, values: object) -> None:
    """Write a constant's values (gs lazy values or a numpy array) into its stand-in
    ``tensor`` as gs's exporter would (raw data, the constant's name), leaving the source
    untouched."""
    from onnx_graphsurgeon.ir.tensor import LazyValues

    name = tensor.name
    raw_bytes = getattr(values, "raw_bytes", None)
    if raw_bytes is not None:  # values computed on export (``fuser.passes._scaled``)
        tensor.data_location = onnx.TensorProto.DEFAULT
        tensor.ClearField("external_data")
        tensor.raw_data = raw_bytes()
        return
    if isinstance(values, LazyValues):
        tensor.CopyFrom(values.tensor)
        tensor.name = name
        return
    array = np.asarray(values)
    tensor.Clear()
    tensor.name = name
    tensor.data_type = onnx.helper.np_dtype_to_tensor_dtype(array.dtype)
    tensor.dims.extend(array.shape)
    if sys.byteorder != "little" or not array.dtype.isnative or array.dtype.kind not in "biufc":
        tensor.raw_data = onnx.numpy_helper.from_array(array).raw_data
    else:
        tensor.raw_data = _whole_bytes(array) or np.ascontiguousarray(array).tobytes()


def _whole_bytes(array: np.ndarray) -> bytes | None:
    """The bytes object ``array`` views in full and in order (``np.frombuffer`` of raw data,
    a scaled weight), which can be exported as it is; None for any other array."""
    base = array.base
    while isinstance(base, np.ndarray):
        base = base.base
    if isinstance(base, bytes) and array.flags.c_contiguous and array.nbytes == len(base):
        return base
    return None


@contextlib.contextmanager
def _constants_as_stand_ins(
        graph: gs.Graph) -> Iterator[dict[str, tuple[gs.Constant, object]]]:
    """Swap the graph's constants (subgraphs too) for data-less stand-ins, then back.

    Yields ``{name: (constant, original values)}``; the caller may replace the values that
    are put back (``to_model`` puts back lazy views of the exported tensors).
    """
    from onnx_graphsurgeon.ir.tensor import LazyValues

    swapped: dict[str, tuple[gs.Constant, object]] = {}
    for g in (graph, *graph.subgraphs(recursive=True)):
        for tensor in g.tensors().values():
            if not isinstance(tensor, gs.Constant) or tensor.name in swapped:
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
                continue  # sparse values: gs's way
            stand_in = onnx.TensorProto(name=tensor.name, data_type=data_type)
            stand_in.dims.extend(values.shape)
            stand_in.data_location = onnx.TensorProto.EXTERNAL
            entry = stand_in.external_data.add()
            entry.key, entry.value = "location", _STAND_IN
            swapped[tensor.name] = (tensor, values)
            tensor._values = LazyValues(stand_in)
    try:
        yield swapped
    finally:
        for tensor, values in swapped.values():
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


@contextlib.contextmanager
def _on_disk(skeleton_model: onnx.ModelProto) -> Iterator[str]:
    """A skeleton written to a temporary folder beside the empty file its tensors point at."""
    with tempfile.TemporaryDirectory(prefix="fuser-check-") as folder:
        Path(folder, "stripped.bin").touch()
        path = os.path.join(folder, "model.onnx")
        with open(path, "wb") as f:
            f.write(skeleton_model.SerializeToString())
        yield path


def _invalid(name: str | None, exc: BaseException) -> BadModelError:
    prefix = f"{name}: " if name else ""
    return BadModelError(f"{prefix}invalid model: {_first_line(exc)}")


def check(model: onnx.ModelProto, *, full: bool = True, name: str | None = None) -> None:
    """Run ``onnx.checker`` (with strict shape inference when ``full``) on any size of model.

    Raises:
        BadModelError: with the checker's first line (after ``name: `` when given).
    """
    with _on_disk(skeleton(model)) as path:
        try:
            onnx.checker.check_model(path, full_check=full)
        except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
            raise _invalid(name, exc) from exc


Shapes = dict[str, tuple[int, tuple[int | str | None, ...]]]


def check_and_infer(model: onnx.ModelProto, *, name: str | None = None) -> Shapes:
    """``check(model)`` then ``infer_shapes(model)``, for about the price of one.

    The skeleton is made once, and the checker's strict shape inference is the one whose
    shapes are returned (with data propagation, as ``infer_shapes``). Data propagation can
    fail where the checker's inference (without it) passes; then the checker decides, and
    the shapes come from best-effort inference.

    Raises:
        BadModelError: as ``check``.
    """
    bare = skeleton(model)
    with _on_disk(bare) as path:
        try:
            onnx.checker.check_model(path, full_check=False)
        except onnx.checker.ValidationError as exc:
            raise _invalid(name, exc) from exc
    try:
        inferred = onnx.shape_inference.infer_shapes(bare, check_type=True, strict_mode=True,
                                                     data_prop=True)
    except onnx.shape_inference.InferenceError:
        check(model, name=name)  # the checker's own verdict; raises when it fails too
        return infer_shapes(model)
    return _shapes_of(inferred, model)


def infer_shapes(model: onnx.ModelProto) -> Shapes:
    """``{tensor name: (onnx elem type, shape)}`` for every tensor inference can type.

    Dims are ints, symbols (str) or None. Inference is best effort: a failure is logged and
    only the declared inputs, outputs and initializers are returned.
    """
    try:
        inferred = onnx.shape_inference.infer_shapes(skeleton(model), data_prop=True)
    except Exception as exc:  # noqa: BLE001 - onnx raises various; best effort by contract
        logger.warning("shape inference failed: %s", _first_line(exc))
        inferred = model
    return _shapes_of(inferred, model)


def _shapes_of(inferred: onnx.ModelProto, model: onnx.ModelProto) -> Shapes:
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
    "PROTOBUF_LIMIT", "ModelLike", "Shapes", "annotate", "check", "check_and_infer",
    "constant_view",
    "float_weights", "infer_shapes", "load", "mac_count", "op_histogram", "opset",
    "param_count", "referenced_files", "require_known_opsets", "save", "skeleton", "subgraph_node_count",
    "to_graph", "to_model", "weights_nbytes", "with_outputs",
]

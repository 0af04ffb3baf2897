"""The graph adapter: with ``graph_export``, ``graph_check`` and ``proto``, the only modules
that touch ONNX protobuf.

It loads and saves models (with external data, so models over 2 GB work), converts between
``onnx.ModelProto`` and the onnx-graphsurgeon ``gs.Graph`` that passes mutate, and offers the
checker and shape inference; the model statistics (op histogram, parameters, MACs) are in
``fuser.ir.statistics`` and re-exported here.

The export back to ONNX is in ``fuser.ir.export``, the checker and shape inference (on
a cheap *skeleton* of the model, whatever its size) in ``fuser.ir.checker``; this module
re-exports both.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import onnx
import onnx_graphsurgeon as gs

from fuser.errors import BadModelError, FuserError
from fuser.ir.checker import (
    Shapes,
    annotate,
    check,
    check_and_infer,
    fix_input_shapes,
    infer_shapes,
    skeleton,
)
from fuser.ir.export import skeleton_of, to_model
from fuser.ir.proto import (
    all_initializers,
    first_line,
    overridable_initializers,
    subgraph_node_count,
    tensor_nbytes,
    weights_nbytes,
    without_initializers,
)
from fuser.ir.statistics import (  # the model statistics, re-exported here
    constant_view,
    count_macs,
    float_weights,
    mac_count,
    op_histogram,
    param_count,
)

logger = logging.getLogger(__name__)

#: Protobuf cannot serialize a message of 2 GiB or more; past this we write external data.
PROTOBUF_LIMIT = 2**31 - 1
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
        raise BadModelError(f"{path}: not a readable ONNX model ({first_line(exc)})") from exc
    if not proto.HasField("graph") or not proto.opset_import:
        raise BadModelError(f"{path}: not an ONNX model (no graph or no opset_import)")
    require_known_opsets(proto, str(path))
    return proto


def referenced_files(path: str | os.PathLike) -> list[Path]:
    """The model file and the external data files it reads (parsed without the weights)."""
    path = Path(path)
    model = onnx.load(str(path), load_external_data=False)
    files = [path]
    for tensor in all_initializers(model.graph):
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
    out = without_initializers(model)
    with open(data_path, "wb") as data:
        for tensor in model.graph.initializer:
            slim = out.graph.initializer.add()
            if tensor_nbytes(tensor) < _EXTERNAL_MIN_BYTES or \
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


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder and a rename.

    The file gets the mode any new file gets (0666 less the umask), like the models: the
    temporary file is created with that mode, not ``mkstemp``'s 0600.
    """
    if not path.parent.is_dir():
        raise FuserError(f"{path}: folder {path.parent} does not exist")
    tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


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
        raise BadModelError(f"cannot import the graph: {first_line(exc)}") from exc
    if model.ir_version >= 4:
        overridable = overridable_initializers(model)
        if overridable:
            _inputs_as_variables(graph, model, overridable)
    return graph


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


def reannotate(graph: gs.Graph) -> None:
    """Infer the graph's shapes again and refine its tensors' (after constant folding made
    Reshape targets and Pad amounts known, the shapes after them can be inferred)."""
    annotate(graph, infer_shapes(skeleton_of(graph)), refine=True)


def fix_graph_shapes(graph: gs.Graph, fixed: Mapping[str, Sequence[int]],
                     shapes: Shapes) -> None:
    """Give the graph's inputs their ``fixed`` shapes, its outputs the shapes inferred for
    them (``shapes``), and forget the other tensors' shapes (inferred for the symbolic dims;
    ``annotate`` with ``shapes`` gives them the fixed ones)."""
    ends = {t.name for t in graph.inputs} | {t.name for t in graph.outputs}
    for tensor in graph.inputs:
        if tensor.name in fixed:
            tensor.shape = list(fixed[tensor.name])
    for tensor in graph.outputs:  # a declared shape that inference cannot confirm goes
        tensor.shape = list(shapes[tensor.name][1]) if tensor.name in shapes else None
    for name, tensor in graph.tensors().items():
        if isinstance(tensor, gs.Variable) and name not in ends:
            tensor.shape = None


@contextlib.contextmanager
def annotated_at(graph: gs.Graph, model: onnx.ModelProto,
                 input_shapes: Mapping[str, Sequence[int]] | None = None) -> Iterator[None]:
    """Annotate the graph of ``model`` with inferred shapes, at ``input_shapes`` when given:
    inside the block its inputs carry the fixed shapes too; after it they (and the outputs)
    have their declared shapes back, so an export keeps the model's interface."""
    shapes = infer_shapes(model, input_shapes)
    ends = [*graph.inputs, *graph.outputs]
    declared = [t.shape for t in ends]
    if input_shapes:
        fix_graph_shapes(graph, input_shapes, shapes)
    annotate(graph, shapes)
    try:
        yield
    finally:
        for tensor, shape in zip(ends, declared, strict=True):
            tensor.shape = shape


def opset(model_or_graph: onnx.ModelProto | gs.Graph) -> int:
    """The default-domain opset version."""
    if isinstance(model_or_graph, gs.Graph):
        return int(model_or_graph.opset)
    for entry in model_or_graph.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    return 1


def with_outputs(model: onnx.ModelProto, names: list[str]) -> onnx.ModelProto:
    """A copy of ``model`` that also outputs the tensors ``names`` (for calibration)."""
    out = without_initializers(model)
    out.graph.initializer.extend(model.graph.initializer)
    present = {o.name for o in out.graph.output}
    for name in names:
        if name not in present:
            out.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    return out


__all__ = [
    "PROTOBUF_LIMIT", "ModelLike", "Shapes", "annotate", "annotated_at", "check", "check_and_infer",
    "constant_view", "count_macs", "fix_graph_shapes", "fix_input_shapes", "float_weights",
    "infer_shapes", "load", "mac_count", "op_histogram", "opset", "param_count", "reannotate",
    "referenced_files", "require_known_opsets", "save", "skeleton", "subgraph_node_count",
    "to_graph", "to_model", "weights_nbytes", "with_outputs",
]

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

import logging
import os
import secrets
import tempfile
from pathlib import Path

import onnx

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
from fuser.ir.export import to_model
from fuser.ir.proto import (
    all_initializers,
    first_line,
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


__all__ = [
    "PROTOBUF_LIMIT",
    "ModelLike",
    "Shapes",
    "annotate",
    "check",
    "check_and_infer",
    "constant_view",
    "count_macs",
    "fix_input_shapes",
    "float_weights",
    "infer_shapes",
    "load",
    "mac_count",
    "op_histogram",
    "param_count",
    "referenced_files",
    "require_known_opsets",
    "save",
    "skeleton",
    "subgraph_node_count",
    "to_model",
    "weights_nbytes",
]

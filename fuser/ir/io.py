"""The graph adapter: with ``graph_export``, ``graph_check`` and ``proto``, the only modules
that touch ONNX protobuf.

It loads and saves models (with external data, so models over 2 GB work), converts between
``onnx.ModelProto`` and the onnx-graphsurgeon ``gs.Graph`` that passes mutate, and offers the
checker and shape inference; the model statistics (op histogram, parameters, MACs) are in
``fuser.ir.statistics`` and re-exported here.

The export back to ONNX is in ``fuser.ir.export``, the checker and shape inference (on
a cheap *skeleton* of the model, whatever its size) in ``fuser.ir.checker``, atomic writes
(a model and its data as a pair) in ``fuser.ir.files``; this module re-exports them.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import onnx

from fuser.errors import BadModelError
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
from fuser.ir.files import (
    PROTOBUF_LIMIT,
    referenced_files,
    replaced_by_save,
    save,
    writing,
    write_text_atomic,
)
from fuser.ir.proto import first_line, require_stored_data, subgraph_node_count, weights_nbytes
from fuser.ir.statistics import (  # the model statistics, re-exported here
    constant_view,
    count_macs,
    float_weights,
    layer_macs,
    mac_count,
    op_histogram,
    param_count,
)

logger = logging.getLogger(__name__)

ModelLike = onnx.ModelProto | str | os.PathLike


# --------------------------------------------------------------------------- load and save


def load(model: ModelLike) -> onnx.ModelProto:
    """Load a model from a path (external data next to it is loaded too) or pass one through.

    Raises:
        BadModelError: the path is missing, a directory, or not an ONNX protobuf, or a
            tensor's data does not match its dims.
    """
    if isinstance(model, onnx.ModelProto):
        require_stored_data(model, model.graph.name or "model", raw=False)  # costs no copy
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
    require_stored_data(proto, str(path))  # a tensor with fewer bytes than its dims declare
    return proto


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
    "layer_macs",
    "mac_count",
    "op_histogram",
    "param_count",
    "referenced_files",
    "replaced_by_save",
    "require_known_opsets",
    "save",
    "skeleton",
    "subgraph_node_count",
    "to_model",
    "weights_nbytes",
    "write_text_atomic",
    "writing",
]

"""Writing files so that a crash or a kill never leaves a half-written one, or a model that
reads another run's weights: models (with their external data, as a pair) and text files go
through a temporary beside the target and a rename; temporaries that a killed process left
are removed by the next write to the same name."""

from __future__ import annotations

import contextlib
import glob
import logging
import mmap
import os
import re
import secrets
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import onnx

from fuser.errors import FuserError
from fuser.ir.proto import (
    all_initializers,
    point_at_file,
    subgraph_initializers,
    tensor_nbytes,
    weights_nbytes,
    without_initializers,
)

logger = logging.getLogger(__name__)

#: Protobuf cannot serialize a message of 2 GiB or more; past this we write external data.
PROTOBUF_LIMIT = 2**31 - 1
#: Initializers at least this large go to the external data file when saving with one.
_EXTERNAL_MIN_BYTES = 1024


def referenced_files(path: str | os.PathLike) -> list[Path]:
    """The model file and the external data files it reads (parsed without the weights).

    A file in which the bytes ``location`` (the key of every external data entry) do not
    occur reads no other file: it is not parsed at all (a 240 MB ResNet-152 took 0.25 s to
    parse, and a run looked at its input and output three times)."""
    path = Path(path)
    if not _may_read_other_files(path):
        return [path]
    model = onnx.load(str(path), load_external_data=False)
    files = [path]
    for tensor in all_initializers(model.graph):
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            location = next((e.value for e in tensor.external_data if e.key == "location"), None)
            if location and path.parent / location not in files:
                files.append(path.parent / location)
    return files


def save(model: onnx.ModelProto, path: str | os.PathLike, *,
         external_data: bool | None = None) -> None:
    """Write ``model`` to ``path`` atomically (``writing``, with nothing between the write
    and the renames)."""
    with writing(model, path, external_data=external_data):
        pass


@contextlib.contextmanager
def writing(model: onnx.ModelProto, path: str | os.PathLike, *,
            external_data: bool | None = None) -> Iterator[float]:
    """Write ``model`` into a temporary folder beside ``path``, run the block (it gets the
    seconds the write took), then rename the files into place; an exception in the block
    leaves ``path`` and its data as they were.

    ``external_data=None`` writes the weights to a data file beside the model only when the
    model would not fit in one protobuf; ``True`` always does so. The model and its data are
    replaced as a pair: the data file is ``<name>.data`` unless the model now at ``path``
    reads that file, in which case it gets a fresh name. The new data is renamed into place
    first (no file anyone reads changes), then the model; only then are the data files the
    previous model read (and the new one does not) removed. A kill at any point leaves a
    model that reads its own data. Temporary folders a killed run left behind are removed
    by the next save to the same name. ``model`` is unchanged afterwards.
    """
    start = time.perf_counter()
    path = Path(path)
    folder = path.parent
    if not folder.is_dir():
        raise FuserError(f"{path}: folder {folder} does not exist")
    if path.is_dir():
        raise FuserError(f"{path}: is a directory")
    if external_data is None:
        external_data = weights_nbytes(model) > PROTOBUF_LIMIT - 64 * 2**20
    remove_stale_temporaries(path)
    previous = _own_data_files(path)
    data_name = _fresh_data_name(path, previous)
    with tempfile.TemporaryDirectory(prefix=_temporary_prefix(path), dir=folder) as tmp:
        tmp_model, tmp_data = os.path.join(tmp, path.name), os.path.join(tmp, data_name)
        if external_data:
            _write_external(model, tmp_model, tmp_data, data_name)
        else:
            with open(tmp_model, "wb") as f:
                write_serialized(model, f)
        yield time.perf_counter() - start
        written: set[Path] = set()
        if os.path.exists(tmp_data):
            os.replace(tmp_data, folder / data_name)
            written.add(folder / data_name)
        os.replace(tmp_model, path)
    for stale in previous - written:
        stale.unlink(missing_ok=True)


def _may_read_other_files(path: Path) -> bool:
    """Whether ``path``'s bytes hold ``location`` (an unreadable or empty file: True, so
    that parsing it gives the error)."""
    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return data.find(b"location") >= 0
    except (OSError, ValueError):
        return True


def replaced_by_save(path: str | os.PathLike) -> list[Path]:
    """The existing files a ``save`` to ``path`` may replace or remove: the model, its
    ``<name>.data`` and the data files of ours the model now there reads."""
    path = Path(path)
    named = [p for p in (path, path.with_name(f"{path.name}.data")) if p.exists()]
    return named + sorted(_own_data_files(path) - set(named))


def _own_data_files(path: Path) -> set[Path]:
    """The data files beside ``path`` that saves to ``path`` wrote and a save may remove:
    ``<name>.data`` or ``<name>.<hex>.data`` when the model now at ``path`` reads it, and
    every ``<name>.<hex>.data`` it does not read (a killed save's). Never a file of
    another name, and never a plain ``<name>.data`` the model does not read."""
    read: set[Path] = set()
    orphans = {f for f in path.parent.glob(f"{glob.escape(path.name)}.*data")
               if _OWN_DATA.fullmatch(f.name[len(path.name):])}
    if path.is_file() and orphans:  # no data file of ours beside it: nothing to look up
        try:
            read = set(referenced_files(path)[1:])
        except Exception:  # noqa: BLE001  (an unreadable old file is simply replaced)
            read = set()
    ours = {f for f in read if f.parent == path.parent and f.name.startswith(path.name)
            and _OWN_DATA.fullmatch(f.name[len(path.name):])}
    return ours | {f for f in orphans if _FRESH_DATA.fullmatch(f.name[len(path.name):])}


#: The suffixes of the data files ``save`` writes: ``.data`` and ``.<8 hex digits>.data``.
_OWN_DATA = re.compile(r"(\.[0-9a-f]{8})?\.data")
_FRESH_DATA = re.compile(r"\.[0-9a-f]{8}\.data")


def _fresh_data_name(path: Path, taken: set[Path]) -> str:
    """``<name>.data``, or a fresh ``<name>.<hex>.data`` when the current model reads it."""
    name = f"{path.name}.data"
    while path.parent / name in taken:
        name = f"{path.name}.{secrets.token_hex(4)}.data"
    return name


def _temporary_prefix(path: Path) -> str:
    """Temporary files and folders for ``path`` are ``.<name>.fuser-<pid>-...``, so that
    a later save can tell which ones a dead process left."""
    return f".{path.name}.fuser-{os.getpid()}-"


def remove_stale_temporaries(path: Path) -> None:
    """Remove the temporary folders and files that writes to ``path`` by processes no
    longer running left beside it (a kill -9 during a save)."""
    pattern = re.compile(re.escape(f".{path.name}.fuser-") + r"(\d+)-")
    for entry in path.parent.glob(f".{glob.escape(path.name)}.fuser-*"):
        match = pattern.match(entry.name)
        if match is None or _process_alive(int(match.group(1))):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        logger.info("removed %s, left by an interrupted write", entry)


def _process_alive(pid: int) -> bool:
    """Whether a process ``pid`` runs on this machine (one of another user counts too)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _write_external(model: onnx.ModelProto, model_path: str, data_path: str,
                    location: str) -> None:
    """Write the large initializers of every graph (If/Loop/Scan bodies' too) to
    ``data_path`` and the rest of the model, pointing at them, to ``model_path``, without
    changing ``model``. The main graph's weights are read, not copied (the rest of the model
    is copied without them: ``without_initializers``); a subgraph's are copied with its node
    and dropped from the copy. Protobuf keeps the bytes of a field that is cleared or set
    anew until its whole message is freed, so the caller's tensors are never touched."""
    out = without_initializers(model)
    with open(data_path, "wb") as data:
        for tensor in model.graph.initializer:
            slim = out.graph.initializer.add()
            if not _goes_external(tensor):
                slim.CopyFrom(tensor)
                continue
            slim.name, slim.data_type = tensor.name, tensor.data_type
            slim.dims.extend(tensor.dims)
            point_at_file(slim, location, *_append(data, tensor))
        for tensor in subgraph_initializers(out.graph):  # in the copy: cleared there
            if _goes_external(tensor):
                point_at_file(tensor, location, *_append(data, tensor))
    if os.path.getsize(data_path) == 0:
        os.unlink(data_path)
    with open(model_path, "wb") as f:
        f.write(out.SerializeToString())


def write_serialized(model: onnx.ModelProto, out: BinaryIO) -> None:
    """Write ``model``'s protobuf encoding to ``out`` in pieces: the model without its graph,
    then the graph's field (key 7) holding the graph without its initializers and then each
    initializer (key 5), serialized one by one.

    Protobuf's encoding of a message is the concatenation of its fields' encodings, in any
    order (a repeated field's elements keep theirs), so the pieces parse to ``model``. upb
    serializes one 240 MB message in 0.37 s (its buffer grows by copies) and the same
    tensors one by one in 0.05-0.15 s; one tensor's copy is held at a time, not the whole
    file's."""
    skeleton = without_initializers(model)
    graph = skeleton.graph.SerializeToString()
    skeleton.ClearField("graph")
    tensors = model.graph.initializer
    sizes = [tensor.ByteSize() for tensor in tensors]
    body = len(graph) + sum(len(_GRAPH_INITIALIZER) + len(_varint(size)) + size
                            for size in sizes)
    out.write(skeleton.SerializeToString())
    out.write(_MODEL_GRAPH + _varint(body))
    out.write(graph)
    for tensor, size in zip(tensors, sizes, strict=True):
        out.write(_GRAPH_INITIALIZER + _varint(size))
        out.write(tensor.SerializeToString())


#: The keys of ModelProto.graph (field 7) and GraphProto.initializer (field 5), both
#: length-delimited (wire type 2): ``field << 3 | 2``.
_MODEL_GRAPH = bytes([7 << 3 | 2])
_GRAPH_INITIALIZER = bytes([5 << 3 | 2])


def _varint(value: int) -> bytes:
    """Protobuf's base-128 varint: 7 bits a byte, low first, the high bit set on all but
    the last."""
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _goes_external(tensor: onnx.TensorProto) -> bool:
    return tensor_nbytes(tensor) >= _EXTERNAL_MIN_BYTES and tensor.data_type not in (
        onnx.TensorProto.STRING, onnx.TensorProto.UNDEFINED) and \
        tensor.data_location != onnx.TensorProto.EXTERNAL


def _append(data: BinaryIO, tensor: onnx.TensorProto) -> tuple[int, int]:
    """Append the tensor's bytes to ``data``, 64-byte aligned; ``(offset, length)``."""
    raw = tensor.raw_data if tensor.HasField("raw_data") else \
        onnx.numpy_helper.to_array(tensor).tobytes()
    offset = data.tell()
    data.write(raw)
    data.write(b"\0" * (-len(raw) % 64))  # keep tensors aligned for memory mapping
    return offset, len(raw)


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder and a rename.

    The file gets the mode any new file gets (0666 less the umask), like the models: the
    temporary file is created with that mode, not ``mkstemp``'s 0600.
    """
    if not path.parent.is_dir():
        raise FuserError(f"{path}: folder {path.parent} does not exist")
    remove_stale_temporaries(path)
    tmp = path.parent / f"{_temporary_prefix(path)}{secrets.token_hex(6)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise

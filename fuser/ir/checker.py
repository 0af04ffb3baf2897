"""The ONNX checker and shape inference on any size of model.

Both run on a *skeleton* of the model, a copy in which every large initializer is replaced
by a reference to an empty external file. That copy is cheap, never exceeds protobuf's 2 GB
limit, and still lets the checker verify every node, type and shape.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import onnx
import onnx_graphsurgeon as gs

from fuser.errors import BadModelError
from fuser.ir.proto import first_line, one_line, tensor_nbytes, without_initializers

logger = logging.getLogger(__name__)

#: Initializers at least this large are stripped from the checker's skeleton.
_SKELETON_KEEP_BYTES = 1024


def skeleton(model: onnx.ModelProto, location: str = "stripped.bin") -> onnx.ModelProto:
    """A copy of ``model`` whose large initializers point at an (empty) external file.

    Small tensors keep their data so that shape inference can read Reshape targets and the
    like. The copy costs almost nothing, whatever the model's size.
    """
    out = without_initializers(model)
    for tensor in model.graph.initializer:
        slim = out.graph.initializer.add()
        small = tensor_nbytes(tensor) < _SKELETON_KEEP_BYTES
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
    return BadModelError(f"{prefix}invalid model: {one_line(exc)}")


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


def _unknowns(shape: object) -> int:
    return sum(not (isinstance(d, int) and d >= 0) for d in shape)


def infer_shapes(model: onnx.ModelProto,
                 input_shapes: Mapping[str, Sequence[int]] | None = None) -> Shapes:
    """``{tensor name: (onnx elem type, shape)}`` for every tensor inference can type.

    Dims are ints, symbols (str) or None. ``input_shapes`` fixes the dims of the inputs it
    names (the model is not changed). Inference is best effort: a failure is logged and only
    the declared inputs, outputs and initializers are returned.
    """
    bare = skeleton(model)
    if input_shapes:
        fix_input_shapes(bare, input_shapes)
    try:
        inferred = onnx.shape_inference.infer_shapes(bare, data_prop=True)
    except Exception as exc:  # noqa: BLE001 - onnx raises various; best effort by contract
        logger.warning("shape inference failed: %s", first_line(exc))
        inferred = bare
    return _shapes_of(inferred, model)


def fix_input_shapes(model: onnx.ModelProto, input_shapes: Mapping[str, Sequence[int]]) -> None:
    """Write fixed dims into the named graph inputs of ``model`` (in place) and drop the
    value_info and output dims that were inferred for the symbolic ones."""
    for value in model.graph.input:
        if value.name in input_shapes:
            dims = value.type.tensor_type.shape.dim
            for dim, size in zip(dims, input_shapes[value.name], strict=True):
                dim.Clear()
                dim.dim_value = int(size)
    model.graph.ClearField("value_info")
    for value in model.graph.output:
        if value.type.HasField("tensor_type"):
            value.type.tensor_type.ClearField("shape")


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


def annotate(graph: gs.Graph, shapes: Shapes, *, refine: bool = False) -> None:
    """Give the graph's untyped variables the inferred dtype and shape (passes read ranks).

    ``refine`` also replaces shapes that have unknown dims by better-known inferred ones (after
    constant folding made more of them known); graph inputs keep theirs.
    """
    inputs = {t.name for t in graph.inputs}
    for name, tensor in graph.tensors().items():
        if refine and isinstance(tensor, gs.Variable) and name in shapes \
                and name not in inputs and tensor.shape is not None \
                and _unknowns(shapes[name][1]) < _unknowns(tensor.shape):
            tensor.shape = list(shapes[name][1])
        if isinstance(tensor, gs.Variable) and tensor.shape is None and name in shapes:
            elem_type, shape = shapes[name]
            tensor.shape = list(shape)
            if tensor.dtype is None and elem_type:
                with contextlib.suppress(Exception):  # types numpy lacks stay untyped
                    tensor.dtype = onnx.helper.tensor_dtype_to_np_dtype(elem_type)

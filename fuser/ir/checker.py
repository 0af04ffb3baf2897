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
from fuser.ir.proto import (
    first_line,
    one_line,
    point_at_file,
    subgraph_initializers,
    subgraphs,
    tensor_nbytes,
    without_initializers,
)

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
        point_at_file(slim, location)
    for tensor in subgraph_initializers(out.graph):  # copies: stripped in the copy
        if tensor_nbytes(tensor) >= _SKELETON_KEEP_BYTES:
            point_at_file(tensor, location)
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
        inferred = _infer(bare, check_type=True, strict_mode=True)
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
        inferred = _infer(bare)
    except Exception as exc:  # noqa: BLE001 - onnx raises various; best effort by contract
        logger.warning("shape inference failed: %s", first_line(exc))
        inferred = bare
    return _shapes_of(inferred, model)


#: Data propagation holds the values of every 0-D and 1-D tensor it reaches as a shape
#: proto, about 140 bytes an element: a 1-D tensor of 1e7 elements took 1.4 GB, one of 1e9
#: (a 140-byte ConstantOfShape model) ended in bad_alloc. Shape tensors are short: when a
#: longer 1-D tensor exists, shapes are inferred without data propagation.
DATA_PROP_MAX_ELEMENTS = 1 << 16
#: Ops whose output dims depend on the values of their inputs: data propagation can make
#: them known (and long) where inference without it cannot.
VALUE_SHAPED_OPS = frozenset({
    "ConstantOfShape", "Expand", "Tile", "Range", "Reshape", "Resize", "Upsample", "Pad",
    "OneHot", "Slice", "Split", "TopK", "CenterCropPad", "Col2Im", "MaxUnpool", "DFT",
    "STFT", "Squeeze", "Unsqueeze", "HannWindow", "HammingWindow", "BlackmanWindow",
    "MelWeightMatrix"})


def _infer(bare: onnx.ModelProto, **options: bool) -> onnx.ModelProto:
    """Shape inference, with data propagation unless a 1-D tensor (known without it, or
    made known by it: ``_probed_long``) is longer than ``DATA_PROP_MAX_ELEMENTS``."""
    plain = onnx.shape_inference.infer_shapes(bare, **options)
    long = _long_vector(plain.graph) or _probed_long(bare, plain)
    if long is not None:
        logger.info("shapes inferred without data propagation: %s has %s elements", *long)
        return plain
    try:
        return onnx.shape_inference.infer_shapes(bare, data_prop=True, **options)
    except MemoryError:  # a case the probe did not foresee: the plain shapes are still good
        logger.warning("shape inference with data propagation ran out of memory")
        return plain


def _long_vector(graph: onnx.GraphProto) -> tuple[str, int] | None:
    """A 1-D tensor of ``graph`` (or its subgraphs) longer than data propagation allows."""
    for value in [*graph.input, *graph.value_info, *graph.output]:
        dims = value.type.tensor_type.shape.dim
        if len(dims) == 1 and dims[0].dim_value > DATA_PROP_MAX_ELEMENTS:
            return value.name, dims[0].dim_value
    for tensor in graph.initializer:
        if len(tensor.dims) == 1 and tensor.dims[0] > DATA_PROP_MAX_ELEMENTS:
            return tensor.name, tensor.dims[0]
    subs = (sub for node in graph.node for attr in node.attribute for sub in subgraphs(attr))
    return next(filter(None, map(_long_vector, subs)), None)


def _unknown_length(graph: onnx.GraphProto) -> set[str]:
    """Outputs of value-shaped ops that have no shape, or one dim of unknown length."""
    typed = {v.name: v.type.tensor_type for v in [*graph.value_info, *graph.output]}
    found = set()
    for node in graph.node:
        for name in node.output if node.op_type in VALUE_SHAPED_OPS else ():
            t = typed.get(name)
            if name and (t is None or not t.HasField("shape") or (
                    len(t.shape.dim) == 1 and not t.shape.dim[0].HasField("dim_value"))):
                found.add(name)
    return found


def _probed_long(bare: onnx.ModelProto, plain: onnx.ModelProto) -> tuple[str, int] | None:
    """A 1-D tensor that data propagation would make longer than it allows, found safely.

    The outputs of value-shaped ops whose length only data propagation can know are cut from
    their consumers (who see an unshaped input instead) and inferred with data propagation:
    their lengths become known and nothing reads them. The ones found short are joined again
    and the next round looks further, until none is left or nothing changes. When a long
    one is found, the shapes the probe learnt are written into ``plain``.
    """
    pending = _unknown_length(plain.graph)
    elems = {v.name: v.type.tensor_type.elem_type for v in plain.graph.value_info}
    for _ in range(8):
        if not pending:
            return None
        probe = onnx.ModelProto()
        probe.CopyFrom(bare)
        for node in probe.graph.node:
            for i, name in enumerate(node.output):
                if name in pending:
                    node.output[i] = f"{name}::probed"
                    probe.graph.input.append(onnx.helper.make_tensor_value_info(
                        name, elems.get(name, onnx.TensorProto.UNDEFINED), None))
        try:
            graph = onnx.shape_inference.infer_shapes(probe, data_prop=True).graph
        except Exception:  # noqa: BLE001 - the probe failing says nothing of the sizes
            return None
        long = _long_vector(graph)
        if long is not None:
            _keep_probed(plain, graph)
            return long[0].removesuffix("::probed"), long[1]
        still = {name.removesuffix("::probed") for name in _unknown_length(graph)}
        if still >= pending:
            return None  # no output got known: data propagation cannot know them either
        pending &= still
    return f"{min(pending)} (after a chain of value-shaped ops)", 0


def _keep_probed(plain: onnx.ModelProto, graph: onnx.GraphProto) -> None:
    """Write the shapes that a probe learnt for the outputs it cut into ``plain``."""
    learnt = {v.name.removesuffix("::probed"): v for v in graph.value_info
              if v.name.endswith("::probed") and v.type.tensor_type.HasField("shape")}
    for value in plain.graph.value_info:
        if value.name in learnt:
            value.type.CopyFrom(learnt.pop(value.name).type)
    for name, value in learnt.items():
        kept = plain.graph.value_info.add()
        kept.CopyFrom(value)
        kept.name = name


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

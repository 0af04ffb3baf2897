"""ONNX <-> onnx-graphsurgeon: the graph the passes rewrite, its shapes (inferred, refined
after constant folding, fixed for an analysis), and small model copies for calibration."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence

import onnx
import onnx_graphsurgeon as gs

from fuser.errors import BadModelError
from fuser.ir.checker import Shapes, annotate, infer_shapes
from fuser.ir.export import skeleton_of
from fuser.ir.proto import first_line, overridable_initializers, without_initializers


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


def annotate_fixed(graph: gs.Graph, fixed: Mapping[str, Sequence[int]],
                   shapes: Shapes) -> None:
    """Give the graph's inputs their ``fixed`` shapes and every other tensor the shape
    inferred at them (``shapes``), replacing those inferred for the symbolic dims; an output
    whose declared shape inference cannot confirm loses it."""
    ends = {t.name for t in graph.inputs} | {t.name for t in graph.outputs}
    for tensor in graph.inputs:
        if tensor.name in fixed:
            tensor.shape = list(fixed[tensor.name])
    for tensor in graph.outputs:  # a declared shape that inference cannot confirm goes
        tensor.shape = list(shapes[tensor.name][1]) if tensor.name in shapes else None
    for name, tensor in graph.tensors().items():
        if isinstance(tensor, gs.Variable) and name not in ends:
            tensor.shape = None
    annotate(graph, shapes)


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
        annotate_fixed(graph, input_shapes, shapes)
    else:
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

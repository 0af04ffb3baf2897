"""Export an onnx-graphsurgeon graph back to an ``onnx.ModelProto`` (see ``to_model``)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

import numpy as np
import onnx
import onnx_graphsurgeon as gs
from onnx_graphsurgeon.ir.tensor import LazyValues

from fuser.ir.proto import all_initializers, overridable_initializers


def to_model(graph: gs.Graph, template: onnx.ModelProto | None = None, *,
             free_arrays: bool = False) -> onnx.ModelProto:
    """Export a graph back to ONNX, keeping the template's opsets, IR version and metadata.

    Constants bypass onnx-graphsurgeon's exporter, which copies every array twice more
    (``tobytes``, then a standalone tensor copied into the graph), fails on one over 2 GB,
    and names the value tensors of the *source* model's Constant nodes in place: they are
    exported as data-less stand-ins and their data written into place afterwards, in one
    copy (a tensor read from the source model is copied as it is, then renamed). Only
    constants that gs converts on export (``export_dtype`` differs, ``data_location`` set)
    take gs's way. Values that compute themselves on export (those with ``raw_bytes()``: the
    folds' ``fuser.passes.exact._scaled.ScaledWeight``) are computed here, one at a time, straight
    into their tensors. ``free_arrays`` (for a graph that is exported for the last time) makes
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
        for tensor in all_initializers(model.graph):
            entry = swapped.get(tensor.name)
            if entry is None or not _is_stand_in(tensor):
                continue
            constant, values = entry
            _fill(tensor, values)
            if free_arrays and isinstance(values, np.ndarray):  # the graph reads it back
                swapped[tensor.name] = (constant, LazyValues(tensor))
    if template is not None:
        _initializers_as_inputs(model, template)
        model.ClearField("opset_import")
        model.opset_import.extend(template.opset_import)
        model.ClearField("metadata_props")
        model.metadata_props.extend(template.metadata_props)
        if template.functions and not model.functions:
            model.functions.extend(template.functions)
    return model


def skeleton_of(graph: gs.Graph, keep_bytes: int = 1024) -> onnx.ModelProto:
    """The graph as a model for shape inference: constants of ``keep_bytes`` or more stay
    data-less stand-ins (cheap for any size of model); smaller ones, such as Reshape targets,
    keep their values. The graph is unchanged."""
    with _constants_as_stand_ins(graph) as swapped:
        model = gs.export_onnx(graph, do_type_check=False)
        for tensor in all_initializers(model.graph):
            entry = swapped.get(tensor.name)
            if entry is None or not _is_stand_in(tensor):
                continue
            values = entry[1]
            size = np.dtype(values.dtype).itemsize * int(np.prod(values.shape)) \
                if isinstance(values.dtype, np.dtype | type) else keep_bytes
            if size < keep_bytes:
                _fill(tensor, values)
    return model


def _initializers_as_inputs(model: onnx.ModelProto, template: onnx.ModelProto) -> None:
    """Keep the template's convention for initializers listed as graph inputs.

    IR >= 4: the overridable ones (graph inputs again since ``to_graph``) get their default
    values back. IR < 4: every initializer must be a graph input (the checker insists).
    """
    if template.ir_version >= 4:
        overridable = overridable_initializers(template)
        inputs = {value.name for value in model.graph.input}
        model.graph.initializer.extend(t for t in template.graph.initializer
                                       if t.name in overridable and t.name in inputs)
        return
    listed = {value.name for value in model.graph.input}
    for tensor in model.graph.initializer:
        if tensor.name not in listed:
            model.graph.input.append(onnx.helper.make_tensor_value_info(
                tensor.name, tensor.data_type, list(tensor.dims)))


#: The ``location`` that marks a stand-in (never written to a file).
_STAND_IN = "fuser-stand-in"


def _is_stand_in(tensor: onnx.TensorProto) -> bool:
    return tensor.data_location == onnx.TensorProto.EXTERNAL and \
        any(e.key == "location" and e.value == _STAND_IN for e in tensor.external_data)


def _fill(tensor: onnx.TensorProto, values: object) -> None:
    """Write a constant's values (gs lazy values or a numpy array) into its stand-in
    ``tensor`` as gs's exporter would (raw data, the constant's name), leaving the source
    untouched."""
    name = tensor.name
    raw_bytes = getattr(values, "raw_bytes", None)
    if raw_bytes is not None:  # values computed on export (``fuser.passes.exact._scaled``)
        tensor.ClearField("data_location")
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

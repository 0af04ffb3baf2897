"""Keras frontend: Keras 3 models (and legacy Keras 2 ``.h5`` files) to ONNX via tf2onnx.

Where BatchNormalization goes. Keras 3 computes BN with plain TensorFlow ops (no
FusedBatchNorm), so no ONNX BatchNormalization node can come out of it: BN reaches ONNX as a
per-channel Mul and Add. By default three optimizers then fold them away before fuser sees
them: TensorFlow grappler's constant folding (which pushes the Mul into Conv2D weights), and
tf2onnx's transpose optimizer and back-to-back optimizer (which fold a Mul/Add that follows a
Conv into its weights and bias). After a DepthwiseConv2D the Mul + Add survive either way.

``keep_batchnorm=True`` (the default) switches those three off for the duration of the
export: grappler runs without 'constfold', the transpose optimizer still removes the
NHWC<->NCHW transposes but no longer absorbs Mul/Add into a Conv, and the back-to-back
Conv+BN fusion is skipped. Every BN then arrives as ``Conv -> Mul -> Add``, which fuser folds
(``fold-affine``) and reports. With ``keep_batchnorm=False`` the export is tf2onnx's own and
the report says BN was folded by the exporter. This relies on tf2onnx internals (checked
with tf2onnx 1.17); if they change, the export falls back to the default path and says so.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from fuser import ir as graph_io
from fuser.errors import FuserError, MissingDependencyError
from fuser.frontends import ExportResult, count_batchnorm
from fuser.frontends.tensorflow_import import import_tensorflow
from fuser.runtime import sessions as runtime

logger = logging.getLogger(__name__)


def _frameworks():
    try:
        import_tensorflow()
        import keras
        import tensorflow as tf

        level = os.environ.get("TF_CPP_MIN_LOG_LEVEL")
        import tf2onnx
        import tf2onnx.convert  # noqa: F401 - it sets TF_CPP_MIN_LOG_LEVEL=3 (errors hidden)
        if level is not None:
            os.environ["TF_CPP_MIN_LOG_LEVEL"] = level
    except ImportError as exc:
        raise MissingDependencyError(
            "exporting Keras models needs tensorflow and tf2onnx: "
            "pip install 'onnx-fuser[keras]'") from exc
    return keras, tf, tf2onnx


def load_keras(path: str | Path) -> Any:
    """A Keras model from ``.keras`` or a legacy Keras 2 ``.h5`` file."""
    keras, _, _ = _frameworks()
    path = Path(path)
    if not path.exists():
        raise FuserError(f"{path}: no such file")
    try:
        return keras.models.load_model(path, compile=False)
    except Exception as exc:
        raise FuserError(f"{path}: not a loadable Keras model ({str(exc).splitlines()[0]})") \
            from exc


def export(model: Any, path: str | Path | None = None, *, opset: int | None = None,
           keep_batchnorm: bool = True, nchw: bool = False, check: bool = True,
           seed: int = 0, input_shape: tuple[int | None, ...] | None = None) -> ExportResult:
    """Export a Keras 3 model (or a ``.keras``/``.h5`` path) to ONNX.

    Args:
        model: a ``keras.Model`` (functional, Sequential or subclassed) or a path to one.
        path: also write the ONNX model there (atomically).
        opset: ONNX opset (default 17).
        keep_batchnorm: leave BatchNorm's Mul + Add for fuser (see the module docstring).
        nchw: make the inputs NCHW (the model's NHWC layout is kept by default).
        check: compare Keras's eager output with onnxruntime's (optimizations off).
        input_shape: the input's shape without the batch, e.g. ``(32, 32, 3)``, in the Keras
            model's layout: the shape of the check's inputs where the model leaves a dimension
            besides the batch dynamic (a variable-length time axis, say; the ONNX input keeps
            it dynamic), and the input's shape for a subclassed model never called.

    Raises:
        FuserError: a dynamic dimension besides the batch and no ``input_shape`` to check
            with (the message names the input and the dimensions).
    """
    keras, tf, tf2onnx = _frameworks()

    if isinstance(model, str | Path):
        model = load_keras(model)
    if not isinstance(model, keras.Model):
        raise FuserError(f"expected a keras.Model, got {type(model).__name__}")
    specs = _input_specs(tf, model, input_shape)
    check_shapes = _check_shapes(specs, input_shape) if check else None

    @tf.function(input_signature=specs)
    def forward(*args: Any) -> Any:
        return model(args[0] if len(args) == 1 else list(args), training=False)

    notes = []
    exporter = "tf2onnx.convert.from_function"
    nchw_names = [s.name for s in specs] if nchw else None
    with _exporter_folding_off(tf, tf2onnx, notes) if keep_batchnorm else \
            contextlib.nullcontext():
        onnx_model, _ = tf2onnx.convert.from_function(
            forward, input_signature=specs, opset=opset or 17, inputs_as_nchw=nchw_names)
    bn_layers = sum(isinstance(layer, keras.layers.BatchNormalization)
                    for layer in _all_layers(model))
    if bn_layers:
        notes.append("Keras 3 has no fused BatchNormalization op: BN is exported as "
                     "per-channel Mul + Add" + (" for fuser to fold" if keep_batchnorm else
                                                ", folded by the exporter where it could"))
    diff = scale = None
    if check:
        diff, scale = _difference(model, onnx_model, specs, check_shapes, nchw, seed)
    if path is not None:
        graph_io.save(onnx_model, path)
    return ExportResult(onnx_model, "keras", exporter + (" (exporter folding off)"
                                                         if keep_batchnorm else ""),
                        bn_layers, count_batchnorm(onnx_model), diff, scale, notes)


def _input_specs(tf: Any, model: Any, input_shape: tuple | None) -> tuple:
    """One ``tf.TensorSpec`` per model input, batch dimension left open (and any other the
    model leaves open)."""
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):
        inputs = None
    if not inputs and input_shape is not None:
        return (tf.TensorSpec((None, *input_shape), tf.float32, name="input"),)
    if not inputs:
        raise FuserError(f"model {model.name!r} has no defined inputs (a subclassed model "
                         "never called): give input_shape, e.g. (224, 224, 3)")
    return tuple(tf.TensorSpec((None, *tuple(t.shape)[1:]), t.dtype,
                               name=f"input{i}" if len(inputs) > 1 else "input")
                 for i, t in enumerate(inputs))


def _all_layers(model: Any) -> Iterator[Any]:
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):  # nested models
            yield from _all_layers(layer)


@contextlib.contextmanager
def _exporter_folding_off(tf: Any, tf2onnx: Any, notes: list[str]) -> Iterator[None]:
    """Run tf2onnx without the three optimizations that fold BatchNorm (module docstring)."""
    try:
        from tf2onnx import optimizer, tf_loader
        from tf2onnx.optimizer.transpose_optimizer import TransposeOptimizer
    except ImportError:
        notes.append("tf2onnx internals changed: exported with its default folding")
        yield
        return
    saved_optimizers = optimizer._optimizers.copy()
    saved_grappler = tf_loader.tf_optimize_grappler
    grappler_without_constfold = _grappler_without_constfold(tf)
    TransposesOnly = _transposes_only(TransposeOptimizer)  # noqa: N806 - a class

    try:
        tf_loader.tf_optimize_grappler = grappler_without_constfold
        optimizer._optimizers["optimize_transpose"] = TransposesOnly
        optimizer._optimizers.pop("remove_back_to_back", None)
        yield
    finally:
        tf_loader.tf_optimize_grappler = saved_grappler
        optimizer._optimizers.clear()
        optimizer._optimizers.update(saved_optimizers)


def _grappler_without_constfold(tf: Any) -> Any:
    """tf2onnx's grappler step with constant folding off (it folds BN into the Conv)."""

    def grappler(input_names, output_names, graph_def):
        from tensorflow.core.protobuf import config_pb2, meta_graph_pb2
        from tensorflow.python.grappler import tf_optimizer

        config = config_pb2.ConfigProto()
        config.graph_options.infer_shapes = True
        rewrite = config.graph_options.rewrite_options
        rewrite.optimizers[:] = ["function", "dependency"]
        rewrite.experimental_disable_folding_quantization_emulation = True
        meta_graph = tf.compat.v1.train.export_meta_graph(graph_def=graph_def)
        fetch = meta_graph_pb2.CollectionDef()
        fetch.node_list.value.extend(input_names + output_names)
        meta_graph.collection_def["train_op"].CopyFrom(fetch)
        return tf_optimizer.OptimizeGraph(config, meta_graph)

    return grappler


def _transposes_only(transpose_optimizer: type) -> type:
    """tf2onnx's transpose optimizer, minus its folding of a Mul/Add into a Conv."""

    class TransposesOnly(transpose_optimizer):
        """Removes layout transposes but never folds a Mul/Add into a Conv."""

        def _mul_handler(self, trans, node):
            if trans.inputs[0].type in ("Conv", "ConvTranspose") and _is_per_channel(node, trans):
                return self._push_down(trans, node)
            return super()._mul_handler(trans, node)

        def _add_handler(self, trans, node):
            if trans.inputs[0].type in ("Conv", "ConvTranspose") and _is_per_channel(node, trans):
                return self._push_down(trans, node)
            return super()._add_handler(trans, node)

        def _push_down(self, trans, node):
            """Move the transpose below a per-channel op, reshaping its constant."""
            const = next(i for i in node.inputs if i is not None and i.is_const())
            values = const.get_tensor_value(as_list=False)
            perm = list(trans.get_attr("perm").ints)
            shape = np.ones(len(perm), dtype=np.int64)
            shape[perm[-1]] = values.shape[-1]
            if not self._nodes_has_single_consumer_node([const]):
                const = self._g.copy_const(const)
                index = [i for i, n in enumerate(node.inputs) if n is not None
                         and n.is_const()][0]
                self._g.replace_input(node, node.input[index], const.output[0], index)
            const.set_tensor_value(values.reshape(shape))
            return self._switch_transpose_and_node(node, trans)

    return TransposesOnly


def _is_per_channel(node: Any, trans: Any) -> bool:
    """A Mul/Add whose constant varies along the last (channel) axis only."""
    const = next((i for i in node.inputs if i is not None and i.is_const()), None)
    if const is None or list(trans.get_attr("perm").ints) != [0, 2, 3, 1]:
        return False
    values = const.get_tensor_value(as_list=False)
    return values.ndim >= 1 and int(np.prod(values.shape)) == values.shape[-1]


def _check_shapes(specs: tuple, input_shape: tuple | None) -> list[tuple[int, ...]]:
    """The shapes (batch 2) of the inputs the export is checked with: the model's, with
    ``input_shape`` for the dimensions it leaves dynamic besides the batch."""
    shapes = []
    for spec in specs:
        dims = tuple(spec.shape)[1:]
        given = tuple(input_shape) if input_shape is not None and len(specs) == 1 else None
        shown = "[N, " + ", ".join("?" if d is None else str(d) for d in dims) + "]"
        if given is not None and (len(given) != len(dims) or any(
                d is not None and d != g for d, g in zip(dims, given, strict=False))):
            raise FuserError(f"--input-shape for '{spec.name}' gives {list(given)} after the "
                             f"batch, the model's input is {shown}")
        dynamic = [axis + 1 for axis, d in enumerate(dims) if d is None]
        if dynamic and given is None:
            example = "x".join("1" if i == 0 else "?" if i in dynamic else str(dims[i - 1])
                               for i in range(len(dims) + 1))
            raise FuserError(
                f"input '{spec.name}' {shown}: dimension(s) {', '.join(map(str, dynamic))} "
                f"dynamic; give their sizes for the export's check against Keras, e.g. "
                f"--input-shape {spec.name}:{example} with each ? a number (the ONNX input "
                "keeps them dynamic)")
        shapes.append((2, *(given if given is not None else dims)))
    return shapes


def _difference(model: Any, onnx_model: onnx.ModelProto, specs: tuple, shapes: list, nchw: bool,
                seed: int) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal(shape).astype(np.float32) for shape in shapes]
    expected = model(arrays[0] if len(arrays) == 1 else arrays, training=False)
    expected = [np.asarray(e) for e in (expected if isinstance(expected, list | tuple)
                                        else [expected])]
    feeds = {spec.name: (a.transpose(0, 3, 1, 2) if nchw and a.ndim == 4 else a)
             for spec, a in zip(specs, arrays, strict=True)}
    got = list(runtime.run(onnx_model, feeds).values())
    diff = max(float(np.abs(g - e).max()) for g, e in zip(got, expected, strict=True))
    return diff, max(float(np.abs(e).max()) for e in expected)

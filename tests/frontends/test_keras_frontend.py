"""Keras frontend: BN reaches ONNX as Mul + Add for fuser to fold; legacy .h5; parity with
the PyTorch export of the same weights."""

from __future__ import annotations

import numpy as np
import pytest

import fuser
from fuser import ir as graph_io
from fuser.runtime import sessions as runtime
from fuser.zoo import TINY, build

keras = pytest.importorskip("keras")
pytest.importorskip("tf2onnx")
from fuser.frontends import keras as keras_frontend  # noqa: E402


def _per_channel_after_conv(model) -> int:
    """Mul/Add by a constant that read a Conv output directly (BN left for fuser)."""
    producers = {o: n.op_type for n in model.graph.node for o in n.output}
    constants = {t.name for t in model.graph.initializer}
    return sum(n.op_type in ("Mul", "Add") and producers.get(n.input[0]) == "Conv"
               and n.input[1] in constants for n in model.graph.node)


@pytest.mark.parametrize("name", list(TINY))
def test_bn_is_left_for_fuser_and_folded(name, rng):
    arch, params = TINY[name]
    model = build(arch, "keras", **params)
    result = keras_frontend.export(model)
    assert result.batchnorm_nodes == 0 and result.batchnorm_layers > 0
    assert result.max_abs_diff < 1e-5
    left_for_fuser = _per_channel_after_conv(result.model)
    if not params.get("preact"):  # pre-activation BN follows an Add, not a Conv
        assert left_for_fuser >= result.batchnorm_layers
    optimized, report = fuser.optimize(result.model, validate=fuser.Validation(batch=2))
    assert report.passed and report.rewrites("fold-affine") >= left_for_fuser
    assert _per_channel_after_conv(optimized) == 0
    x = rng.standard_normal((2, 32, 32, 3)).astype(np.float32)
    eager = np.asarray(model(x, training=False))
    for onnx_model in (result.model, optimized):
        got = next(iter(runtime.run(onnx_model, {"input": x}).values()))
        np.testing.assert_allclose(got, eager, rtol=1e-4, atol=1e-5)


def test_default_tf2onnx_path_reports_exporter_folding():
    arch, params = TINY["resnet10"]
    result = keras_frontend.export(build(arch, "keras", **params), keep_batchnorm=False)
    assert _per_channel_after_conv(result.model) == 0
    assert any("folded by the exporter" in note for note in result.notes)


def test_depthwise_mul_add_survives_the_exporter_and_fuser_folds_it():
    arch, params = TINY["mobilenet"]
    result = keras_frontend.export(build(arch, "keras", **params), keep_batchnorm=False)
    left = _per_channel_after_conv(result.model)
    assert left > 0  # after DepthwiseConv2D the exporter cannot fold BN
    optimized, report = fuser.optimize(result.model, validate=fuser.Validation(batch=2))
    assert report.passed and report.rewrites("fold-affine") == 2 * left  # each Mul, then its Add
    assert _per_channel_after_conv(optimized) == 0


def test_nchw_inputs(rng):
    arch, params = TINY["resnet10"]
    model = build(arch, "keras", **params)
    result = keras_frontend.export(model, nchw=True)
    dims = [d.dim_value for d in result.model.graph.input[0].type.tensor_type.shape.dim]
    assert dims[1:] == [3, 32, 32] and result.max_abs_diff < 1e-5


def test_legacy_h5_file_loads_and_exports(tmp_path):
    arch, params = TINY["vgg11"]
    model = build(arch, "keras", **params)
    model.save(tmp_path / "legacy.h5")  # the Keras 2 HDF5 format
    result = keras_frontend.export(tmp_path / "legacy.h5", tmp_path / "legacy.onnx")
    assert result.max_abs_diff < 1e-5 and result.batchnorm_layers == 8
    assert graph_io.load(tmp_path / "legacy.onnx") == result.model


def test_unreadable_keras_file_is_a_user_error(tmp_path):
    from fuser.errors import FuserError

    (tmp_path / "bad.h5").write_bytes(b"not hdf5")
    with pytest.raises(FuserError, match="not a loadable Keras model"):
        keras_frontend.export(tmp_path / "bad.h5")


@pytest.mark.parametrize("name", ["resnet10", "se_resnet10", "mobilenet"])
def test_cross_framework_parity_after_fuser(name, rng):
    """The same weights exported from PyTorch and from Keras give the same outputs after
    fuser: the two frameworks' graphs differ, the function does not."""
    torch = pytest.importorskip("torch")
    from fuser.frontends import torch as torch_frontend

    arch, params = TINY[name]
    from_torch = torch_frontend.export(build(arch, "torch", **params), (1, 3, 32, 32)).model
    from_keras = keras_frontend.export(build(arch, "keras", **params), nchw=True).model
    assert torch is not None
    x = rng.standard_normal((4, 3, 32, 32)).astype(np.float32)
    outputs = []
    for model in (from_torch, from_keras):
        optimized, _ = fuser.optimize(model, validate=False)
        outputs.append(next(iter(runtime.run(optimized, {"input": x}).values())))
    np.testing.assert_allclose(outputs[1], outputs[0], rtol=1e-4, atol=1e-5)


def test_sequential_model(rng):
    model = keras.Sequential([
        keras.Input((12, 12, 3)), keras.layers.Conv2D(4, 3), keras.layers.BatchNormalization(),
        keras.layers.ReLU(), keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(5)])
    result = keras_frontend.export(model)
    assert result.batchnorm_layers == 1 and result.max_abs_diff < 1e-5
    optimized, report = fuser.optimize(result.model, validate=fuser.Validation(batch=2))
    assert report.passed and report.rewrites("fold-affine") == 2


class Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.conv = keras.layers.Conv2D(4, 3)
        self.bn = keras.layers.BatchNormalization()
        self.head = keras.layers.Dense(5)

    def call(self, x):
        y = keras.ops.relu(self.bn(self.conv(x)))
        return self.head(keras.ops.mean(y, axis=(1, 2)))


def test_subclassed_model_needs_and_takes_an_input_shape():
    from fuser.errors import FuserError

    with pytest.raises(FuserError, match="give input_shape"):
        keras_frontend.export(Subclassed())
    result = keras_frontend.export(Subclassed(), input_shape=(12, 12, 3))
    assert result.max_abs_diff < 1e-5 and result.batchnorm_layers == 1
    optimized, report = fuser.optimize(result.model, validate=fuser.Validation(batch=2))
    assert report.passed and report.rewrites("fold-affine") == 2


def _variable_length_model():
    """Like the trained OCR models of a public package: input (None, 40, None, 1), a
    variable-length time axis besides the batch (issue 16, item 9)."""
    inp = keras.Input((40, None, 1))
    x = keras.layers.Conv2D(4, 3, padding="same")(inp)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(6, 3, padding="same")(x))
    return keras.Model(inp, keras.layers.Dense(5)(x))


def test_dynamic_dimension_besides_the_batch_is_named_when_no_shape_is_given(tmp_path, capsys):
    from fuser.cli import main

    _variable_length_model().save(tmp_path / "ocr.h5")
    out = tmp_path / "ocr.onnx"
    assert main(["export", "keras", str(tmp_path / "ocr.h5"), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("onnx-fuser: error: input 'input' [N, 40, ?, 1]: dimension(s) 2 dynamic; "
                   "give their sizes for the export's check against Keras, e.g. --input-shape "
                   "input:1x40x?x1 with each ? a number (the ONNX input keeps them dynamic)")
    assert not out.exists()


def test_dynamic_dimension_is_checked_with_the_given_shape_and_stays_dynamic(tmp_path, capsys,
                                                                            rng):
    from fuser.cli import main

    model = _variable_length_model()
    model.save(tmp_path / "ocr.h5")
    out = tmp_path / "ocr.onnx"
    assert main(["export", "keras", str(tmp_path / "ocr.h5"), "-o", str(out),
                 "--input-shape", "input:1x40x50x1"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("PASSED")
    exported = graph_io.load(out)
    dims = exported.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims][1::2] == [40, 1] and dims[2].dim_param  # still dynamic
    for width in (17, 64):  # any length runs, as in Keras
        x = rng.standard_normal((1, 40, width, 1)).astype(np.float32)
        got = next(iter(runtime.run(exported, {"input": x}).values()))
        np.testing.assert_allclose(got, np.asarray(model(x, training=False)), rtol=1e-4,
                                   atol=1e-5)


def test_a_shape_that_contradicts_the_model_is_refused():
    from fuser.errors import FuserError

    with pytest.raises(FuserError, match=r"gives \[41, 50, 1\] after the batch, the model's "
                                         r"input is \[N, 40, \?, 1\]"):
        keras_frontend.export(_variable_length_model(), input_shape=(41, 50, 1))

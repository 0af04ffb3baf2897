"""Validation: planted errors fail, exact folds pass, NaN handling, inputs from files."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

import fuser
from fuser.cli import options
from fuser.errors import FuserError
from fuser.runtime import inputs
from fuser.runtime import validate as validation
from tests.helpers import make_model

CONV_BN = """
    g (float[N,3,8,8] x) => (float[N,4,8,8] y) {
        c = Conv<pads=[1,1,1,1]>(x, W)
        y = BatchNormalization(c, s, b, mean, var)
    }"""
CLASSIFIER = """
    g (float[N,3,8,8] x) => (float[N,10] logits) {
        c = Conv(x, W)
        p = GlobalAveragePool(c)
        logits = Flatten(p)
    }"""


@pytest.fixture
def conv_bn(rng):
    return make_model(CONV_BN, rng, W=(4, 3, 3, 3), s=(4,), b=(4,), mean=(4,), var=(4,))


def perturbed(model: onnx.ModelProto, name: str, delta: float) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(model)
    tensor = next(t for t in out.graph.initializer if t.name == name)
    values = onnx.numpy_helper.to_array(tensor).copy()
    values.reshape(-1)[0] += delta
    tensor.CopyFrom(onnx.numpy_helper.from_array(values, name))
    return out


def test_an_exact_fold_passes(conv_bn):
    optimized, _ = fuser.optimize(conv_bn, validate=False)
    result = validation.validate(conv_bn, optimized, batch=2)
    assert result.passed and result.batches == 3 and result.samples == 6
    (out,) = result.outputs
    assert out.name == "y" and out.shape == [2, 4, 8, 8]
    assert 0 < out.max_abs < 1e-5 and out.cosine > 0.999999 and out.rel_l2 < 1e-6


def test_one_weight_changed_by_1e_2_fails(conv_bn):
    result = validation.validate(conv_bn, perturbed(conv_bn, "W", 1e-2))
    assert not result.passed
    (message,) = result.failures
    assert message.startswith("output 'y' max abs diff")


def test_sessions_from_mapped_weight_files_compute_the_same_and_catch_the_same(
        conv_bn, monkeypatch, tmp_path):
    """Large models reach onnxruntime as a temporary file with external data (memory-mapped);
    forced here on a small one: same outputs as from bytes, planted error still caught, and
    the temporary files are gone afterwards."""
    from fuser.runtime import sessions as runtime

    feeds = {"x": np.random.default_rng(1).standard_normal((2, 3, 8, 8)).astype(np.float32)}
    from_bytes = runtime.session(conv_bn).run(None, feeds)[0]
    monkeypatch.setattr(runtime, "MAPPED_WEIGHTS_BYTES", 0)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    from_file = runtime.session(conv_bn).run(None, feeds)[0]
    np.testing.assert_array_equal(from_file, from_bytes)
    assert not validation.validate(conv_bn, perturbed(conv_bn, "W", 1e-2)).passed
    assert validation.validate(conv_bn, fuser.optimize(conv_bn, validate=False)[0]).passed
    assert list(tmp_path.iterdir()) == []


def test_per_output_tolerance_can_accept_it(conv_bn):
    result = validation.validate(conv_bn, perturbed(conv_bn, "W", 1e-2), atol={"": 0, "y": 1.0})
    assert result.passed


def test_nan_in_both_models_is_not_a_failure(rng):
    text = "g (float[N,4] x) => (float[N,4] y) { y = Sqrt(x) }"
    model = make_model(text, rng)
    result = validation.validate(model, model)
    assert result.passed and result.outputs[0].nan_reference > 0


def test_nan_where_the_reference_has_none_fails(rng):
    reference = make_model("g (float[N,4] x) => (float[N,4] y) { y = Relu(x) }", rng)
    candidate = make_model("g (float[N,4] x) => (float[N,4] y) { y = Sqrt(x) }", rng)
    result = validation.validate(reference, candidate)
    assert not result.passed
    assert "NaN" in result.failures[0] and "where the reference has none" in result.failures[0]


def test_a_missing_output_fails(rng):
    reference = make_model("g (float[N,4] x) => (float[N,4] y) { y = Relu(x) }", rng)
    candidate = make_model("g (float[N,4] x) => (float[N,4] z) { z = Relu(x) }", rng)
    result = validation.validate(reference, candidate)
    assert result.failures == ["output 'y' is missing from the candidate"]


def test_class_scores_report_top1_and_top5_agreement(rng):
    model = make_model(CLASSIFIER, rng, W=(10, 3, 3, 3))
    result = validation.validate(model, perturbed(model, "W", 5.0), batch=8)
    (out,) = result.outputs
    assert out.top1 is not None and 0 <= out.top1 <= out.top5 <= 1
    same = validation.validate(model, model, batch=8).outputs[0]
    assert same.top1 == same.top5 == 1.0


def test_multi_label_maps_get_no_top1_figures(rng):
    """Regression: validation printed top-1/top-5 for [N, T, 88] note maps (independent
    sigmoids, which ``class_scores`` tells from class scores); logits keep them."""
    maps = make_model("""
        g (float[N,6,88] x) => (float[N,6,88] y) {
            y = Sigmoid(x)
        }""", rng)
    (out,) = validation.validate(maps, maps, batch=4).outputs
    assert out.top1 is None and out.top5 is None
    assert "top-1" not in validation.validate(maps, maps, batch=4).to_text()
    logits = make_model("g (float[N,6,88] x) => (float[N,6,88] y) { y = Relu(x) }", rng)
    assert validation.validate(logits, logits, batch=4).outputs[0].top1 == 1.0


def test_dynamic_dims_are_refused_with_the_input_and_dimension_named(rng):
    model = make_model("g (float[N,3,H,W] x) => (float[N,3,H,W] y) { y = Relu(x) }", rng)
    with pytest.raises(FuserError, match=r"input 'x' dimension 2 \(H\) is dynamic: give "
                                         r"--input-shape x:\?x3x\?x\?"):
        validation.validate(model, model)
    assert validation.validate(model, model, input_shapes={"x": (1, 3, 5, 5)}).passed


def test_an_input_shape_for_an_unknown_input_is_refused(conv_bn):
    with pytest.raises(FuserError, match="names 'image', but the model's inputs are: x"):
        validation.validate(conv_bn, conv_bn, input_shapes={"image": (1, 3, 8, 8)})


def test_inputs_from_npz(tmp_path, conv_bn, rng):
    np.savez(tmp_path / "data.npz", x=rng.standard_normal((6, 3, 8, 8)).astype(np.float32))
    result = validation.validate(conv_bn, conv_bn, inputs=str(tmp_path / "data.npz"), batch=2)
    assert result.passed and result.batches == 3 and result.inputs.endswith("data.npz")


def test_inputs_from_npy_named_per_input(tmp_path, conv_bn, rng):
    np.save(tmp_path / "x.npy", rng.standard_normal((2, 3, 8, 8)).astype(np.float32))
    result = validation.validate(conv_bn, conv_bn, inputs=f"x={tmp_path / 'x.npy'}")
    assert result.passed and result.batches == 2


def test_npz_with_wrong_shapes_is_refused(tmp_path, conv_bn, rng):
    np.savez(tmp_path / "bad.npz", x=rng.standard_normal((4, 3, 9, 9)).astype(np.float32))
    with pytest.raises(FuserError, match=r"'x' has shape \[4, 3, 9, 9\], the model takes "
                                         r"\[N, 3, 8, 8\]"):
        validation.validate(conv_bn, conv_bn, inputs=str(tmp_path / "bad.npz"))


def test_npz_with_wrong_dtype_is_refused(tmp_path, conv_bn):
    np.savez(tmp_path / "bad.npz", x=np.zeros((2, 3, 8, 8), np.int64))
    with pytest.raises(FuserError, match="'x' is int64, the model takes float32"):
        validation.validate(conv_bn, conv_bn, inputs=str(tmp_path / "bad.npz"))


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_inputs_from_an_image_folder(tmp_path, rng, layout):
    from PIL import Image

    for i in range(3):
        pixels = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(tmp_path / f"img{i}.png")
    (tmp_path / "notes.txt").write_text("not an image")
    dims = "N,3,8,8" if layout == "NCHW" else "N,8,8,3"
    model = make_model(f"g (float[{dims}] x) => (float[{dims}] y) {{ y = Relu(x) }}", rng)
    shapes = inputs.resolve_shapes(model)
    batches = inputs.load_batches(tmp_path, model, shapes)
    assert len(batches) == 3
    image = batches[0]["x"]
    assert image.shape == ((1, 3, 8, 8) if layout == "NCHW" else (1, 8, 8, 3))
    assert image.dtype == np.float32 and 0 <= image.min() and image.max() <= 1
    assert validation.validate(model, model, inputs=str(tmp_path)).passed


def test_an_empty_image_folder_is_refused(tmp_path, conv_bn):
    with pytest.raises(FuserError, match="no images"):
        validation.validate(conv_bn, conv_bn, inputs=str(tmp_path))


def test_tolerance_flags_parse_per_output():
    assert validation.parse_tolerances(["1e-3", "logits:0.5"], 1e-5) == {"": 1e-3, "logits": 0.5}
    with pytest.raises(FuserError, match="expected a number"):
        validation.parse_tolerances(["logits:lots"], 1e-5)


def test_input_shape_flags_parse():
    assert options.parse_input_shapes(["x:1x3x224x224"]) == {"x": (1, 3, 224, 224)}
    with pytest.raises(FuserError, match="expected NAME:DxDxD"):
        options.parse_input_shapes(["1x3x224x224"])

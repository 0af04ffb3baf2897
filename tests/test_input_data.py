"""Inputs from a file: every sample is used by default, in batches of --batch (issue 16,
item 14: 8 batches at most were used, 8 of 360 samples with the default batch of 1)."""

from __future__ import annotations

import logging

import numpy as np
import onnx
import pytest

from fuser import ir as graph_io
from fuser.cli import lossy_options, main
from fuser.cli.main import build_parser
from fuser.errors import FuserError
from fuser.runtime import inputs
from tests.helpers import make_model

CONV = """
    g (float[{batch},3,8,8] x) => (float[{batch},4,8,8] y) {{
        y = Conv<pads=[1,1,1,1]>(x, W)
    }}"""


@pytest.fixture
def data(tmp_path):
    path = tmp_path / "test.npz"
    np.savez(path, x=np.random.default_rng(0).standard_normal((360, 3, 8, 8), dtype=np.float32))
    return path


@pytest.fixture
def model_path(tmp_path, rng):
    path = tmp_path / "m.onnx"
    graph_io.save(make_model(CONV.format(batch="N"), rng, W=(4, 3, 3, 3)), path)
    return path


@pytest.mark.parametrize(("batch", "batches"), [(None, 360), (50, 8), (360, 1)])
def test_validate_uses_every_sample_of_the_file(model_path, data, capsys, batch, batches):
    extra = [] if batch is None else ["--batch", str(batch)]
    assert main(["validate", str(model_path), str(model_path), "--inputs", str(data),
                 *extra]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first == f"validation on {data} ({batches} batch(es), 360 sample(s)): PASSED"


def test_optimize_validates_on_every_sample(model_path, data, tmp_path, capsys):
    assert main(["optimize", str(model_path), "-o", str(tmp_path / "o.onnx"), "--no-bench",
                 "--inputs", str(data), "--batch", "64"]) == 0
    assert "(6 batch(es), 360 sample(s))" in capsys.readouterr().out


def test_a_fixed_batch_size_leaves_the_remainder_out_and_says_so(tmp_path, rng, caplog):
    model = make_model(CONV.format(batch="4"), rng, W=(4, 3, 3, 3))
    np.savez(tmp_path / "d.npz", x=np.zeros((10, 3, 8, 8), np.float32))
    shapes = inputs.resolve_shapes(model)
    with caplog.at_level(logging.WARNING, logger="fuser.runtime.inputs"):
        batches = inputs.load_batches(tmp_path / "d.npz", model, shapes)
    assert [len(b["x"]) for b in batches] == [4, 4]
    assert "8 of 10 samples used, in batches of 4 (the model fixes the batch size)" in caplog.text


def test_max_batches_still_limits_calibration(tmp_path, rng, data, caplog):
    model = make_model(CONV.format(batch="N"), rng, W=(4, 3, 3, 3))
    shapes = inputs.resolve_shapes(model, batch=16)
    with caplog.at_level(logging.WARNING, logger="fuser.runtime.inputs"):
        batches = inputs.load_batches(data, model, shapes, max_batches=3, remainder=False)
    assert [len(b["x"]) for b in batches] == [16, 16, 16]
    assert "48 of 360 samples used, in batches of 16 (at most 3 batch(es))" in caplog.text


def test_a_model_fixed_at_batch_1_gets_every_calibration_sample_asked_for(tmp_path, rng):
    """Regression: on a model whose batch is fixed at 1, ``--calibration-samples 1024`` (at
    ``--calibration-batch 16``) read 64 batches of 1, and the guard then had 1 held-out
    sample. The count of batches comes from the batch the model really takes."""
    model = make_model("""
        g (float[1,3,4,4] x) => (float[1,4,4,4] y) {
            y = Conv<pads=[1,1,1,1]>(x, W)
        }""", rng, W=(4, 3, 3, 3))
    path, data = tmp_path / "m.onnx", tmp_path / "c.npz"
    graph_io.save(model, path)
    np.savez(data, x=rng.standard_normal((300, 3, 4, 4)).astype(np.float32))
    args = build_parser("optimize").parse_args(
        ["optimize", str(path), "-o", str(tmp_path / "o.onnx"), "--lossy", "lowrank",
         "--calibration", str(data), "--calibration-samples", "200"])
    batches, labels = lossy_options.lowrank(args).calibration_data(model)
    assert len(batches) == 200 and labels is None
    assert {len(batch["x"]) for batch in batches} == {1}


def test_calibration_labels_of_any_shape_with_one_row_per_sample(tmp_path, rng):
    """Issue 29: 2-D labels (one row per sample) were refused with "must hold one label per
    sample"; a scalar or too few rows still are, naming the shape."""
    data = tmp_path / "c.npz"
    np.savez(data, x=np.zeros((8, 3)), labels=rng.integers(0, 2, (8, 5)))
    assert inputs.CalibrationData(data).labels(6).shape == (6, 5)
    np.savez(data, x=np.zeros((8, 3)), labels=rng.integers(0, 2, (4, 5)))
    with pytest.raises(FuserError, match=r"'labels' \[4, 5\] must hold one row per sample "
                                         r"\(6 used\)"):
        inputs.CalibrationData(data).labels(6)


def _stateful() -> onnx.ModelProto:
    """x [N, 4], an RNN-like state h [2, N, 3] and a rank-0 rate."""
    helper, f = onnx.helper, onnx.TensorProto.FLOAT
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "rate"], ["y"]), helper.make_node("Relu", ["h"], ["h2"])],
        "stateful",
        [helper.make_tensor_value_info("x", f, ["N", 4]),
         helper.make_tensor_value_info("h", f, [2, "N", 3]),
         helper.make_tensor_value_info("rate", f, [])],
        [helper.make_tensor_value_info("y", f, ["N", 4]),
         helper.make_tensor_value_info("h2", f, [2, "N", 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    return model


def test_an_input_with_its_batch_on_another_axis_and_a_constant_one_feed_from_npz(
        tmp_path, rng, capsys):
    """Issue 29: an RNN state [2, N, 3] (the batch on axis 1, found by the first input's
    symbol N) and a rank-0 input (a sample rate) could not be fed from a .npz; a user had to
    wrap the model. The state is cut along axis 1, the constant fed whole with every batch."""
    model = _stateful()
    assert inputs.batch_axes(inputs.input_specs(model)) == {"x": 0, "h": 1, "rate": None}
    spec = inputs.InputSpec  # tf2onnx names each input's dims apart: the one symbolic axis
    assert inputs.batch_axes([spec("x", np.float32, ("unk__1", 4)),
                              spec("h", np.float32, (2, "unk__2", 3)),
                              spec("t", np.float32, (2, 5))]) == {"x": 0, "h": 1, "t": None}
    assert inputs.batch_axes([spec("x", np.float32, (1, 4)),
                              spec("h", np.float32, (2, 1, 3))]) == {"x": 0, "h": 0}
    assert inputs.resolve_shapes(model, None, 2) == {"x": (2, 4), "h": (2, 2, 3), "rate": ()}
    data = tmp_path / "d.npz"
    x, h = rng.standard_normal((6, 4)), rng.standard_normal((2, 6, 3))
    np.savez(data, x=x, h=h, rate=np.array(16000.0))
    batches = inputs.load_batches(data, model, inputs.resolve_shapes(model, None, 2))
    assert len(batches) == 3 and list(batches[0]) == ["x", "h", "rate"]
    np.testing.assert_array_equal(batches[1]["h"], h[:, 2:4].astype(np.float32))
    assert all(b["rate"].shape == () and b["rate"] == 16000 for b in batches)
    graph_io.save(model, tmp_path / "m.onnx")
    path = str(tmp_path / "m.onnx")
    assert main(["validate", path, path, "--inputs", str(data), "--batch", "2"]) == 0
    assert "(3 batch(es), 6 sample(s))" in capsys.readouterr().out
    np.savez(data, x=x, h=h, rate=np.array([16000.0]))
    assert main(["validate", path, path, "--inputs", str(data), "--batch", "2"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"onnx-fuser: error: {data}: 'rate' has shape [1]; the model takes it whole with "
        "every batch, as []")
    np.savez(data, x=x, h=h[:, :, :2], rate=np.array(16000.0))
    assert main(["validate", path, path, "--inputs", str(data)]) == 2
    assert "'h' has shape [2, 6, 2], the model takes [2, N, 3]" in capsys.readouterr().err

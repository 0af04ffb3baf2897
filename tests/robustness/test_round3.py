"""Reliability round 3 (issue 25), the parts done so far: zero samples and zero dimensions,
NaN, infinite and negative tolerances, counts of 0, a dump folder that is a file, Ctrl-C.
Each ends in one line and exit 2 (130 for Ctrl-C), nothing written; the API raises."""

from __future__ import annotations

import re

import numpy as np
import pytest

import fuser
from fuser import ir as graph_io
from fuser.api import Validation
from fuser.cli import main
from fuser.errors import FuserError
from tests.helpers import make_model
from tests.robustness.test_bad_inputs import MODEL, PARAMS, _digests, refused
from tests.test_lowrank_guard import REGRESSION


@pytest.fixture
def files(tmp_path, rng):
    model = make_model(MODEL, rng, **PARAMS)
    graph_io.save(model, tmp_path / "a.onnx")
    return tmp_path


def usage_refused(args: list[str], folder, capsys, message: str) -> None:
    """An option argparse refuses: exit 2, one line naming the option and the value."""
    before = _digests(folder)
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err and "Traceback" not in err, err
    assert _digests(folder) == before


@pytest.mark.parametrize("value", ["nan", "inf", "-1e-3", "y:nan", "y:-inf"])
@pytest.mark.parametrize("flag", ["--atol", "--rtol"])
def test_unusable_tolerances_are_refused(files, capsys, flag, value):
    """NaN compares false: ``--atol nan`` passed a max diff of 5.52."""
    a = str(files / "a.onnx")
    for command in (["validate", a, a], ["optimize", a, "-o", str(files / "o.onnx")]):
        refused([*command, f"{flag}={value}"], files, capsys,
                "a tolerance must be a finite number of at least 0")


@pytest.mark.parametrize("tolerance", [float("nan"), float("inf"), -1.0, {"y": float("nan")}])
def test_the_api_refuses_unusable_tolerances(files, tolerance):
    with pytest.raises(FuserError, match="a tolerance must be a finite number of at least 0"):
        fuser.validate(files / "a.onnx", files / "a.onnx", atol=tolerance)
    with pytest.raises(FuserError, match="a tolerance must be a finite number of at least 0"):
        fuser.optimize(files / "a.onnx", validate=Validation(rtol=tolerance))


@pytest.mark.parametrize("args", [
    ["validate", "A", "A", "--batch", "0"],
    ["optimize", "A", "-o", "O", "--batch", "0"],
    ["optimize", "A", "-o", "O", "--batches", "0"],
    ["optimize", "A", "-o", "O", "--max-steps", "0"],
    ["optimize", "A", "-o", "O", "--rounds", "0"],
    ["optimize", "A", "-o", "O", "--threads", "0"],
    ["optimize", "A", "-o", "O", "--warmup", "-1"],
    ["optimize", "A", "-o", "O", "--lossy", "lowrank", "--calibration-batch", "0"],
    ["optimize", "A", "-o", "O", "--lossy", "lowrank", "--calibration-samples", "0"],
])
def test_counts_of_zero_are_usage_errors(files, capsys, args):
    args = [str(files / "a.onnx") if a == "A" else str(files / "o.onnx") if a == "O" else a
            for a in args]
    usage_refused(args, files, capsys, "must be")


@pytest.mark.parametrize("command", [["validate", "A", "A"], ["optimize", "A", "-o", "O"],
                                     ["bench", "A"]])
def test_a_zero_dimension_is_refused(files, capsys, command):
    args = [str(files / "a.onnx") if a == "A" else str(files / "o.onnx") if a == "O" else a
            for a in command]
    refused([*args, "--input-shape", "x:0x3x8x8"], files, capsys,
            "input shape of 'x' (0, 3, 8, 8): must be at least 1 in every dimension")


def test_bench_batch_zero_is_refused(files, capsys):
    refused(["bench", str(files / "a.onnx"), "--batch", "1,0"], files, capsys,
            "batch sizes must be at least 1")


def test_the_api_refuses_a_batch_of_zero(files):
    with pytest.raises(FuserError, match="batch 0: must be at least 1"):
        fuser.optimize(files / "a.onnx", validate=Validation(batch=0))
    with pytest.raises(FuserError, match=r"input shape of 'x' \(0, 3, 8, 8\): must be at "):
        fuser.optimize(files / "a.onnx", input_shapes={"x": (0, 3, 8, 8)})


def test_a_dump_dir_that_is_a_file_is_refused_before_the_work(files, capsys):
    (files / "dump").write_text("not a folder")
    refused(["optimize", str(files / "a.onnx"), "-o", str(files / "o.onnx"), "--dump-dir",
             str(files / "dump")], files, capsys, "is a file, not a folder")


def test_ctrl_c_is_one_line_and_exit_130(files, capsys, monkeypatch):
    from fuser.cli import optimize

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(optimize, "run", interrupted)
    assert main(["optimize", str(files / "a.onnx"), "-o", str(files / "o.onnx")]) == 130
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "interrupted (Ctrl-C) during optimize" in err
    assert not (files / "o.onnx").exists()


def test_a_usable_zero_tolerance_is_accepted(files):
    """0 is a tolerance (exact equality), not a refusal."""
    result = fuser.validate(files / "a.onnx", files / "a.onnx", atol=0.0, rtol=0.0)
    assert result.passed and np.isfinite(result.outputs[0].max_abs)


# ------------------------------------------------------------------ check baselines


@pytest.fixture
def baseline(files, capsys):
    path = files / "base.json"
    assert main(["check", str(files / "a.onnx"), "--baseline", str(path), "--update"]) == 0
    capsys.readouterr()
    return path


@pytest.mark.parametrize(("edit", "message"), [
    (lambda b: b["checks"]["outputs"].update(atol=float("nan")),
     "checks.outputs.atol is nan: expected a finite number of at least 0"),
    (lambda b: b["checks"]["outputs"].update(rtol="abc"),
     "checks.outputs.rtol is 'abc': expected a finite number of at least 0"),
    (lambda b: b["checks"]["batchnorm"].pop("max"),
     "checks.batchnorm.max is None: expected a finite number of at least 0"),
    (lambda b: b["checks"].pop("ops"), "checks.ops is missing or not an object"),
    (lambda b: b["checks"]["ops"].update(max_changed=-1),
     "checks.ops.max_changed is -1: expected a finite number of at least 0"),
    (lambda b: b.update(batches=0), "'batches' is 0: expected an integer of at least 1"),
])
def test_a_malformed_baseline_is_refused_naming_the_field(files, baseline, capsys, edit,
                                                          message):
    import json

    data = json.loads(baseline.read_text())
    edit(data)
    baseline.write_text(json.dumps(data))
    refused(["check", str(files / "a.onnx"), "--baseline", str(baseline)], files, capsys,
            message)


def test_an_emptied_golden_file_is_refused(files, baseline, capsys):
    np.savez(baseline.with_suffix(".npz"))
    refused(["check", str(files / "a.onnx"), "--baseline", str(baseline)], files, capsys,
            "the golden arrays of batch 0 are missing")


# ------------------------------------------------------------- the user's own code


def test_export_takes_a_relative_file_path(tmp_path, capsys, monkeypatch):
    """``export torch ./my_models.py:net`` ended in a relative-import TypeError; a sibling
    module the file imports is found too."""
    pytest.importorskip("torch")
    (tmp_path / "helpers_here.py").write_text("import torch\nLAYER = torch.nn.Conv2d\n")
    (tmp_path / "my_models.py").write_text(
        "import torch\nfrom helpers_here import LAYER\n\n"
        "def net():\n    return torch.nn.Sequential(LAYER(3, 4, 3), torch.nn.ReLU()).eval()\n")
    monkeypatch.chdir(tmp_path)
    code = main(["export", "torch", "./my_models.py:net", "-o", "m.onnx", "--input-shape",
                 "input:1x3x8x8"])
    assert code == 0, capsys.readouterr().err
    assert (tmp_path / "m.onnx").exists()


def test_a_factory_that_raises_is_one_line(tmp_path, capsys, monkeypatch):
    (tmp_path / "broken.py").write_text("def net():\n    raise KeyError('weights')\n")
    monkeypatch.chdir(tmp_path)
    refused(["export", "torch", "broken:net", "-o", "m.onnx"], tmp_path, capsys,
            "'broken:net': net() raised KeyError: 'weights'")


def test_a_read_only_output_folder_is_refused_before_the_work(files, capsys, monkeypatch):
    """The error came after all the work; tests run as root, which writes anywhere, so the
    permission check itself is faked."""
    import os

    from fuser.cli import optimize

    def no_writes(path, mode):
        return mode != os.W_OK

    monkeypatch.setattr(optimize.os, "access", no_writes)
    monkeypatch.setattr(optimize, "_optimize", lambda *a: pytest.fail("the work ran"))
    refused(["optimize", str(files / "a.onnx"), "-o", str(files / "o.onnx")], files, capsys,
            "is not writable")


# ----------------------------------------------------------- graph errors name the node


def _graph(nodes):
    import onnx

    graph = onnx.helper.make_graph(
        nodes, "g", [onnx.helper.make_tensor_value_info("x", 1, [1, 2])],
        [onnx.helper.make_tensor_value_info("y", 1, [1, 2])])
    return onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)],
                                  ir_version=8)


@pytest.mark.parametrize(("nodes", "named"), [
    ([("Relu", ["x"], ["a"], "first"), ("Add", ["a", "nowhere"], ["y"], "adder")],
     "input 'nowhere' of node: name: adder OpType: Add is not output of any previous nodes"),
    ([("Relu", ["b"], ["a"], "r1"), ("Relu", ["a"], ["b"], "r2"),
      ("Identity", ["a"], ["y"], "out")],
     "input 'b' of node: name: r1 OpType: Relu is not output of any previous nodes"),
])
def test_dangling_inputs_and_cycles_name_the_node(tmp_path, capsys, nodes, named):
    import onnx

    model = _graph([onnx.helper.make_node(op, i, o, name=n) for op, i, o, n in nodes])
    graph_io.save(model, tmp_path / "bad.onnx")
    refused(["optimize", str(tmp_path / "bad.onnx"), "-o", str(tmp_path / "o.onnx")],
            tmp_path, capsys, named)


@pytest.mark.parametrize(("body", "message"), [
    ("return outputs['logits'].mean()",  # the sensitivity probe's 64 or the guard's 512
     ("metric function 'score' raised KeyError: 'logits' (given outputs y [N, 1]; "
      "labels none)")),
    ("return None", "metric function 'score' returned NoneType 'None', not a number"),
    ("return float('nan')", "metric function 'score' returned nan, not a finite number"),
])
def test_a_users_metric_that_fails_is_one_line(tmp_path, rng, capsys, monkeypatch, body,
                                               message):
    """A metric that raised ended in a KeyError traceback; one returning None or NaN too."""
    graph_io.save(make_model(REGRESSION, rng, W1=(64, 64), W2=(1, 64)), tmp_path / "m.onnx")
    np.savez(tmp_path / "c.npz", x=rng.standard_normal((640, 64)).astype(np.float32))
    (tmp_path / "bad.py").write_text(f"def score(outputs, labels):\n    {body}\n")
    monkeypatch.chdir(tmp_path)
    before = _digests(tmp_path)
    assert main(["optimize", "m.onnx", "-o", "o.onnx", "--no-bench", "--lossy", "lowrank",
                 "--calibration", "c.npz", "--metric", "bad.py:score", "--search-time",
                 "10"]) == 2
    err = capsys.readouterr().err.strip()
    errors = [re.sub(r"\[\d+, 1\]", "[N, 1]", line) for line in err.splitlines()
              if line.startswith("onnx-fuser: error:")]  # whichever run calls it first
    assert errors == [f"onnx-fuser: error: {message}"] and "Traceback" not in err, err
    assert _digests(tmp_path) == before


def test_a_users_metric_that_raises_is_a_fuser_error_in_the_api(rng):
    def score(outputs, labels):
        raise ValueError("boom")

    model = make_model(REGRESSION, rng, W1=(64, 64), W2=(1, 64))
    data = rng.standard_normal((640, 64)).astype(np.float32)
    lossy = fuser.api.LowRank([{"x": data[i:i + 16]} for i in range(0, 640, 16)],
                              metric=score, search_time=10)
    with pytest.raises(FuserError, match="metric function 'score' raised ValueError: boom"):
        fuser.optimize(model, lossy=lossy)


def test_an_input_declaring_a_0_is_refused_in_one_line(tmp_path, rng, capsys):
    """onnxruntime takes a declared 0 as fixed; fuser fed 1 there and onnxruntime's
    INVALID_ARGUMENT escaped as a traceback."""
    model = make_model(MODEL, rng, **PARAMS)
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 0
    graph_io.save(model, tmp_path / "z.onnx")
    for command in (["optimize", str(tmp_path / "z.onnx"), "-o", str(tmp_path / "o.onnx")],
                    ["bench", str(tmp_path / "z.onnx")]):
        assert main(command) == 2
        err = capsys.readouterr().err.strip()
        assert err == ("onnx-fuser: error: input 'x' declares dimension 0 as 0: the model "
                       "takes no sample, so nothing can be run or compared"), err
    with pytest.raises(FuserError, match="declares dimension 0 as 0"):
        fuser.optimize(model)
    out, _ = fuser.optimize(model, validate=False)  # nothing run: optimized all the same
    assert [n.op_type for n in out.graph.node] == ["Conv"]

"""The onnx-fuser command: exit codes, JSON, atomic output, untouched input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from fuser import ir as graph_io
from fuser.cli import main
from tests.helpers import make_model

MODEL = """
    g (float[N,3,8,8] x) => (float[N,4,8,8] y) {
        c = Conv<pads=[1,1,1,1]>(x, W)
        y = BatchNormalization(c, s, b, mean, var)
    }"""


@pytest.fixture
def model_path(tmp_path, rng):
    path = tmp_path / "in.onnx"
    graph_io.save(make_model(MODEL, rng, W=(4, 3, 3, 3), s=(4,), b=(4,), mean=(4,), var=(4,)),
                  path)
    return path


def test_optimize_writes_the_model_and_the_report(model_path, tmp_path, capsys):
    before = model_path.read_bytes()
    code = main(["optimize", str(model_path), "-o", str(tmp_path / "out.onnx"),
                 "--report", str(tmp_path / "r.json"), "--no-bench"])
    out = capsys.readouterr().out
    assert code == 0
    assert out.splitlines()[-1].startswith("PASSED | ")
    assert "BatchNormalization left 0" in out
    assert "fold-batchnorm" in out and "BatchNormalization: 1 -> 0" in out
    assert graph_io.op_histogram(graph_io.load(tmp_path / "out.onnx")) == {"Conv": 1}
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["summary"]["fold-batchnorm"]["rewrites"] == 1
    assert model_path.read_bytes() == before  # the input is never modified
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.onnx", "out.onnx", "r.json"]


def test_json_flag_prints_only_json_on_stdout(model_path, tmp_path, capsys):
    assert main(["optimize", str(model_path), "-o", str(tmp_path / "o.onnx"), "--json",
                 "--no-bench"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["after"]["ops"] == {"Conv": 1}
    assert "PASSED" in captured.err


def test_passes_and_skip_flags(model_path, tmp_path, capsys):
    assert main(["optimize", str(model_path), "-o", str(tmp_path / "o.onnx"),
                 "--skip", "fold-batchnorm", "--json", "--no-bench"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert "fold-batchnorm" not in report["pipeline"]
    assert report["after"]["ops"]["BatchNormalization"] == 1


@pytest.mark.parametrize("args, message", [
    (["optimize", "{tmp}/missing.onnx", "-o", "{tmp}/o.onnx"], "no such file"),
    (["optimize", "{tmp}", "-o", "{tmp}/o.onnx"], "is a directory"),
    (["optimize", "{tmp}/junk.onnx", "-o", "{tmp}/o.onnx"], "not a readable ONNX model"),
    (["optimize", "{model}", "-o", "{tmp}/nope/o.onnx"], "does not exist"),
    (["optimize", "{model}", "-o", "{model}"], "output path is the input path"),
    (["optimize", "{model}", "-o", "{tmp}/o.onnx", "--passes", "fold-all"], "unknown pass"),
])
def test_user_errors_exit_2_with_one_line(model_path, tmp_path, capsys, args, message):
    (tmp_path / "junk.onnx").write_bytes(b"\x08\x01\x12\xff\xff garbage")
    before = model_path.read_bytes()
    args = [a.format(tmp=tmp_path, model=model_path) for a in args]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err and "Traceback" not in err
    assert not (tmp_path / "o.onnx").exists()
    assert model_path.read_bytes() == before


def test_usage_error_exits_2(capsys):
    assert main(["optimize"]) == 2


def test_passes_lists_the_registry(capsys):
    assert main(["passes", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["fold-batchnorm"]["default"] and not rows["fold-batchnorm"]["lossy"]
    assert not rows["batchnorm-to-affine"]["default"]


def test_console_script_and_module_run(model_path, tmp_path):
    script = Path(sys.executable).with_name("onnx-fuser")  # installed beside this Python
    for command in ([script], [sys.executable, "-m", "fuser"]):
        done = subprocess.run([*command, "optimize", str(model_path), "-o",
                               str(tmp_path / "o.onnx")], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines()[-1].startswith("PASSED")


# ---------------------------------------------------------------- validation and timing

FAST = ["--rounds", "3", "--warmup", "1", "--time-budget", "0.2", "--threads", "1"]


def test_optimize_validates_and_times_by_default(model_path, tmp_path, capsys):
    code = main(["optimize", str(model_path), "-o", str(tmp_path / "out.onnx"), "--json",
                 *FAST])
    report = json.loads(capsys.readouterr().out)
    assert code == 0
    assert report["validation"]["passed"] and report["validation"]["batches"] == 3
    levels = {(t["model"], t["level"]) for t in report["timings"]["timings"]}
    assert levels == {(m, lv) for m in ("original", "optimized") for lv in ("disable", "all")}
    assert report["timings"]["provider"]["used"] == "cpu"


def test_markdown_report_by_extension(model_path, tmp_path, capsys):
    assert main(["optimize", str(model_path), "-o", str(tmp_path / "out.onnx"),
                 "--report", str(tmp_path / "r.md"), *FAST]) == 0
    text = (tmp_path / "r.md").read_text()
    assert text.startswith("# fuser report") and "## Validation" in text and "## Timing" in text
    assert "latency ms (all)" in text


@pytest.fixture
def perturb_pass():
    """A registered pass that breaks the outputs (scales a Conv weight by 1.01)."""
    import onnx_graphsurgeon as gs

    from fuser.passes.base import REGISTRY, Pass, PassResult, register

    @register
    class TestPerturb(Pass):
        """Breaks the outputs (test only)."""

        name = "test-perturb"

        def run(self, graph):
            result = PassResult()
            conv = next(n for n in graph.nodes if n.op == "Conv")
            if conv.name != "perturbed":
                conv.name = "perturbed"
                conv.inputs[1] = gs.Constant("W_perturbed", conv.inputs[1].values * 1.01)
                result.rewrote("perturbed")
            return result

    yield "test-perturb"
    del REGISTRY["test-perturb"]


def test_failed_validation_exits_1_names_the_culprit_and_writes_nothing(
        model_path, tmp_path, capsys, perturb_pass):
    out = tmp_path / "out.onnx"
    code = main(["optimize", str(model_path), "-o", str(out), "--no-bench",
                 "--passes", f"fold-batchnorm,{perturb_pass}"])
    last = capsys.readouterr().out.splitlines()[-1]
    assert code == 1 and not out.exists()
    assert last.startswith("FAILED") and "culprit pass: test-perturb" in last


def test_force_writes_despite_failed_validation(model_path, tmp_path, perturb_pass):
    out = tmp_path / "out.onnx"
    assert main(["optimize", str(model_path), "-o", str(out), "--no-bench", "--force",
                 "--passes", f"fold-batchnorm,{perturb_pass}"]) == 1
    assert out.exists()


def test_rollback_keeps_the_good_passes(model_path, tmp_path, capsys, perturb_pass):
    out = tmp_path / "out.onnx"
    assert main(["optimize", str(model_path), "-o", str(out), "--no-bench", "--rollback",
                 "--passes", f"fold-batchnorm,{perturb_pass}", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["rolled_back"] == ["test-perturb"] and report["validation"]["passed"]
    assert graph_io.op_histogram(graph_io.load(out)) == {"Conv": 1}


def test_validate_command_exit_codes(model_path, tmp_path, capsys, rng):
    optimized = tmp_path / "opt.onnx"
    assert main(["optimize", str(model_path), "-o", str(optimized), "--no-bench"]) == 0
    assert main(["validate", str(model_path), str(optimized)]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("PASSED")
    broken = graph_io.load(optimized)
    weight = broken.graph.initializer[0]
    values = onnx.numpy_helper.to_array(weight) + np.float32(1e-2)
    weight.CopyFrom(onnx.numpy_helper.from_array(values, weight.name))
    graph_io.save(broken, tmp_path / "broken.onnx")
    assert main(["validate", str(model_path), str(tmp_path / "broken.onnx"), "--json"]) == 1
    captured = capsys.readouterr()
    assert not json.loads(captured.out)["passed"]
    assert "FAILED" in captured.err and "max abs diff" in captured.err
    assert main(["validate", str(model_path), str(tmp_path / "missing.onnx")]) == 2


def test_dynamic_dims_without_input_shape_exit_2(tmp_path, capsys, rng):
    model = make_model("g (float[N,3,H,W] x) => (float[N,3,H,W] y) { y = Relu(x) }", rng)
    graph_io.save(model, tmp_path / "dyn.onnx")
    assert main(["validate", str(tmp_path / "dyn.onnx"), str(tmp_path / "dyn.onnx")]) == 2
    assert "dimension 2 (H) is dynamic: give --input-shape x:" in capsys.readouterr().err
    assert main(["validate", str(tmp_path / "dyn.onnx"), str(tmp_path / "dyn.onnx"),
                 "--input-shape", "x:1x3x4x4"]) == 0


def test_bench_one_and_two_models(model_path, tmp_path, capsys):
    assert main(["bench", str(model_path), "--json", "--batch", "1,2", *FAST]) == 0
    result = json.loads(capsys.readouterr().out)
    assert {(t["level"], t["batch"]) for t in result["timings"]} == {
        (lv, b) for lv in ("disable", "all") for b in (1, 2)}
    assert main(["bench", str(model_path), str(model_path), "--level", "all", *FAST]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1].startswith("PASSED") and "all b1:" in lines[-1]
    assert main(["bench", str(model_path), "--provider", "gpu"]) == 2


def test_bench_refuses_a_batch_size_the_model_fixes(tmp_path, capsys, rng):
    model = make_model("g (float[1,4] x) => (float[1,4] y) { y = Relu(x) }", rng)
    graph_io.save(model, tmp_path / "fixed.onnx")
    assert main(["bench", str(tmp_path / "fixed.onnx"), "--batch", "8"]) == 2
    assert "input 'x' has a fixed first dimension 1" in capsys.readouterr().err

"""One-line errors instead of onnxruntime tracebacks (issue 16, items 2-5): models whose inputs
differ, the benchmark API on paths, tolerances for outputs that do not exist, and a result
that onnxruntime cannot run, blamed on the pass that made it."""

from __future__ import annotations

import sys

import numpy as np
import pytest

import fuser
from fuser import ir as graph_io
from fuser.cli import main
from fuser.errors import FuserError
from fuser.usercode import load_callable
from tests.helpers import make_model

FAST = ["--rounds", "3", "--warmup", "1", "--time-budget", "0.2", "--threads", "1"]


def _model(rng, x="float[N,3,8,8] x", y="float[N,4,8,8] y", size=3):
    return make_model(f"""
        g ({x}) => ({y}) {{
            y = Conv<pads=[1,1,1,1]>({x.split()[-1]}, W)
        }}""", rng, W=(4, size, 3, 3))


@pytest.fixture
def files(tmp_path, rng):
    """A model and variants whose input differs in shape, name and dtype."""
    paths = {}
    variants = {
        "a": _model(rng),
        "shape": _model(rng, x="float[N,3,9,9] x", y="float[N,4,9,9] y"),
        "channels": _model(rng, x="float[N,2,8,8] x", size=2),
        "name": _model(rng, x="float[N,3,8,8] image"),
        "dtype": make_model("""
            g (double[N,3,8,8] x) => (double[N,4,8,8] y) {
                y = Conv<pads=[1,1,1,1]>(x, W)
            }""", rng, W=(4, 3, 3, 3), dtype=np.float64),
    }
    for name, model in variants.items():
        paths[name] = tmp_path / f"{name}.onnx"
        graph_io.save(model, paths[name])
    return paths


MESSAGES = {
    "shape": "input 'x': {a} takes [N, 3, 8, 8] float32, {b} takes [N, 3, 9, 9] float32",
    "channels": "input 'x': {a} takes [N, 3, 8, 8] float32, {b} takes [N, 2, 8, 8] float32",
    "name": "input 'x': {a} takes [N, 3, 8, 8] float32, {b} has no such input (its inputs: "
            "image)",
    "dtype": "input 'x': {a} takes [N, 3, 8, 8] float32, {b} takes [N, 3, 8, 8] float64",
}


@pytest.mark.parametrize("variant", sorted(MESSAGES))
@pytest.mark.parametrize("command", ["validate", "bench"])
def test_models_whose_inputs_differ_exit_2_with_one_line(files, capsys, command, variant):
    a, b = files["a"], files[variant]
    extra = FAST if command == "bench" else []
    assert main([command, str(a), str(b), *extra]) == 2
    err = capsys.readouterr().err.strip()
    labels = (str(a), str(b)) if command == "validate" else (a.name, b.name)
    assert err == "onnx-fuser: error: " + MESSAGES[variant].format(a=labels[0], b=labels[1])


def test_the_python_api_names_both_models(files):
    with pytest.raises(FuserError, match=r"input 'x': .*a.onnx takes \[N, 3, 8, 8\] float32, "
                                         r".*shape.onnx takes \[N, 3, 9, 9\] float32"):
        fuser.validate(files["a"], files["shape"])


def test_benchmark_takes_paths(files):
    """``fuser.benchmark`` takes what ``optimize`` and ``validate`` take (item 4)."""
    feeds = {"x": np.random.default_rng(0).standard_normal((1, 3, 8, 8), dtype=np.float32)}
    result = fuser.benchmark({"original": files["a"], "optimized": str(files["a"])}, {1: feeds},
                             levels=("disable",), threads=1, warmup=1, rounds=3,
                             time_budget=None, provider="cpu")
    assert [t.model for t in result.timings] == ["original", "optimized"]


@pytest.mark.parametrize("flag", ["--atol", "--rtol"])
@pytest.mark.parametrize("command", ["validate", "optimize"])
def test_tolerance_for_an_output_that_does_not_exist_exits_2(files, tmp_path, capsys, flag,
                                                             command):
    a = str(files["a"])
    args = [a, a] if command == "validate" else [a, "-o", str(tmp_path / "o.onnx"), "--no-bench"]
    assert main([command, *args, flag, "logits:1e-3"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"onnx-fuser: error: {flag} logits:0.001: the model has no output 'logits' "
                   "(its outputs: y)")
    assert not (tmp_path / "o.onnx").exists()


def test_tolerance_for_an_existing_output_is_accepted(files, capsys):
    a = str(files["a"])
    assert main(["validate", a, a, "--atol", "y:1e-3", "--rtol", "1e-3"]) == 0


@pytest.fixture
def channel_rewire():
    """A registered pass that makes the old fold-into-next-conv mistake (item 2): the Conv
    reads the 1-channel input of a Mul that broadcast it to 4 channels. The checker accepts
    the result; onnxruntime refuses to run it."""
    from fuser.passes.base import REGISTRY, Pass, PassResult, register

    @register
    class TestRewire(Pass):
        """Rewires a Conv to the input of the Mul before it (test only)."""

        name = "test-rewire"

        def run(self, graph):
            result = PassResult()
            for conv in [n for n in graph.nodes if n.op == "Conv"]:
                mul = conv.inputs[0].inputs[0] if conv.inputs[0].inputs else None
                if mul is not None and mul.op == "Mul":
                    conv.inputs[0] = mul.inputs[0]
                    result.rewrote("rewired")
            return result

    yield "test-rewire"
    del REGISTRY["test-rewire"]


def test_a_result_onnxruntime_cannot_run_fails_validation_naming_the_pass(
        tmp_path, rng, capsys, channel_rewire):
    model = make_model("""
        g (float[N,1,6,6] x) => (float[N,8,6,6] y) {
            z = Mul(x, k)
            y = Conv(z, W)
        }""", rng, W=(8, 4, 1, 1), k=(1, 4, 1, 1))
    path, out = tmp_path / "m.onnx", tmp_path / "o.onnx"
    graph_io.save(model, path)
    code = main(["optimize", str(path), "-o", str(out), "--no-bench", "--passes",
                 f"eliminate-identity,{channel_rewire}"])
    captured = capsys.readouterr()
    assert code == 1 and not out.exists() and "Traceback" not in captured.err
    assert "onnxruntime cannot run the result" in captured.out
    last = captured.out.splitlines()[-1]
    assert last.startswith("FAILED") and f"culprit pass: {channel_rewire}" in last


@pytest.mark.parametrize("command", ["optimize", "validate", "bench"])
def test_a_report_extension_that_names_no_format_exits_2_before_the_work(
        files, tmp_path, capsys, command):
    """``--report r.txt`` once wrote JSON without saying so: the extension names the format
    (.json, .md), anything else is refused before any model is run, and nothing is
    written."""
    a = str(files["a"])
    args = {"optimize": ["optimize", a, "-o", str(tmp_path / "o.onnx"), "--no-bench"],
            "validate": ["validate", a, a], "bench": ["bench", a, *FAST]}[command]
    assert main([*args, "--report", str(tmp_path / "r.txt")]) == 2
    err = capsys.readouterr().err.strip()
    kinds = ".json, .md, .markdown" + (", .html, .htm" if command == "optimize" else "")
    assert err == (f"onnx-fuser: error: --report {tmp_path / 'r.txt'}: the extension names "
                   f"the format: {kinds}")
    assert not (tmp_path / "r.txt").exists() and not (tmp_path / "o.onnx").exists()
    assert main([*args, "--report", str(tmp_path / "r.md")]) == 0
    assert "|---|" in (tmp_path / "r.md").read_text()  # a markdown table, not JSON


def test_an_input_shape_given_twice_exits_2(files, tmp_path, capsys):
    """Two ``--input-shape`` for one input once used the last one silently; the same shape
    twice is harmless."""
    a, out = str(files["a"]), str(tmp_path / "o.onnx")
    assert main(["optimize", a, "-o", out, "--no-bench", "--input-shape", "x:1x3x8x8",
                 "--input-shape", "x:2x3x8x8"]) == 2
    assert capsys.readouterr().err.strip() == (
        "onnx-fuser: error: --input-shape 'x' given twice (1x3x8x8 and 2x3x8x8): give it once")
    assert main(["optimize", a, "-o", out, "--no-bench", "--input-shape", "x:2x3x8x8",
                 "--input-shape", "x:2x3x8x8"]) == 0


def test_module_function_resolves_from_the_current_folder(tmp_path, monkeypatch):
    """Issue 29: ``check --torch my_models:resnet`` needed PYTHONPATH=. while
    ``my_models.py:resnet`` worked. A module name is looked up in the current folder too
    (as ``python -m`` does), and the folder is not left on sys.path."""
    import sys

    from fuser.usercode import load_callable

    (tmp_path / "my_models_29.py").write_text("def resnet():\n    return 'built'\n")
    monkeypatch.chdir(tmp_path)
    before = list(sys.path)
    assert load_callable("my_models_29", "resnet", "--torch my_models_29:resnet")() == "built"
    assert sys.path == before
    with pytest.raises(FuserError, match="no function 'nope'"):
        load_callable("my_models_29", "nope", "--torch my_models_29:nope")

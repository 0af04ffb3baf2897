"""The onnx-fuser command: exit codes, JSON, atomic output, untouched input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from fuser import graph as graph_io
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
                 "--report", str(tmp_path / "r.json")])
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
    assert main(["optimize", str(model_path), "-o", str(tmp_path / "o.onnx"), "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["after"]["ops"] == {"Conv": 1}
    assert "PASSED" in captured.err


def test_passes_and_skip_flags(model_path, tmp_path, capsys):
    assert main(["optimize", str(model_path), "-o", str(tmp_path / "o.onnx"),
                 "--skip", "fold-batchnorm", "--json"]) == 0
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


def test_demo_runs_and_folds_every_batchnorm(tmp_path, capsys):
    assert main(["demo", "-o", str(tmp_path / "demo")]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[-1].startswith("PASSED")
    assert "BatchNormalization 20 -> 0" in out.splitlines()[-1]


def test_console_script_and_module_run(model_path, tmp_path):
    script = Path(sys.executable).with_name("onnx-fuser")  # installed beside this Python
    for command in ([script], [sys.executable, "-m", "fuser"]):
        done = subprocess.run([*command, "optimize", str(model_path), "-o",
                               str(tmp_path / "o.onnx")], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines()[-1].startswith("PASSED")

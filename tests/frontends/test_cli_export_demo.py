"""`onnx-fuser export` and `onnx-fuser demo --quick`."""

from __future__ import annotations

import json
import sys

import pytest

from fuser import ir as graph_io
from fuser.cli import main

pytest.importorskip("torch")
pytest.importorskip("tf2onnx")


def test_export_torch_from_the_zoo(tmp_path, capsys):
    out = tmp_path / "r.onnx"
    assert main(["export", "torch", "zoo:resnet10", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "BatchNorm layers 12 -> BatchNormalization nodes 12" in text
    assert text.splitlines()[-1].startswith("PASSED")
    assert graph_io.op_histogram(graph_io.load(out))["BatchNormalization"] == 12


def test_export_torch_from_a_factory(tmp_path, capsys, monkeypatch):
    (tmp_path / "my_models.py").write_text(
        "import torch\n"
        "def small():\n"
        "    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "s.onnx"
    assert main(["export", "torch", "my_models:small", "-o", str(out)]) == 2
    assert "needs the example input's shape" in capsys.readouterr().err
    assert main(["export", "torch", "my_models:small", "-o", str(out),
                 "--input-shape", "input:1x3x8x8"]) == 0
    assert out.exists()
    sys.modules.pop("my_models", None)


def test_export_keras_file(tmp_path, capsys):
    from fuser.zoo import TINY, build

    arch, params = TINY["resnet10"]
    build(arch, "keras", **params).save(tmp_path / "m.keras")
    assert main(["export", "keras", str(tmp_path / "m.keras"), "-o", str(tmp_path / "m.onnx")]
                ) == 0
    assert "for fuser to fold" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["export", "torch", "nosuchmodule:f"], "cannot load nosuchmodule: ModuleNotFoundError"),
    (["export", "torch", "zoo:alexnet"], "unknown zoo model"),
    (["export", "keras", "{tmp}/missing.h5"], "no such file"),
    (["export", "torch", "justaname"], "expected module:factory"),
])
def test_export_user_errors_exit_2(tmp_path, capsys, args, message):
    args = [a.format(tmp=tmp_path) for a in args] + ["-o", str(tmp_path / "o.onnx")]
    assert main(args) == 2
    assert message in capsys.readouterr().err


def test_demo_quick_runs_both_frameworks(tmp_path, capsys):
    assert main(["demo", "--quick", "-o", str(tmp_path), "--time-budget", "0.2"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[-1].startswith("PASSED")
    last = out.splitlines()[-1]
    assert "6 models, " in last and "against their originals at ORT_ENABLE_ALL" in last
    assert last.endswith(", 64 of 64 BatchNorms folded")
    rows = json.loads((tmp_path / "demo.json").read_text())["rows"]
    assert all(r["speed"]["rounds"] >= 10 and r["vs original (all)"] for r in rows)
    assert {(r["model"], r["framework"]) for r in rows} == {
        (m, f) for m in ("vgg11", "resnet10", "se_resnet10") for f in ("torch", "keras")}
    assert all(r["passed"] for r in rows)
    assert (tmp_path / "demo.md").read_text().startswith("# onnx-fuser demo")

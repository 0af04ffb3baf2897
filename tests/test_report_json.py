"""The JSON report survives every pass's stats (issue 16, item 1): a fold that flushes
denormals used to crash ``--report r.json`` (a tuple key) after the model was written."""

from __future__ import annotations

import json

import numpy as np
import pytest

import fuser
from fuser import ir as graph_io
from fuser.cli import main
from tests.helpers import make_model

TINY = 1e-36  # scaled by a BN or Mul of ~1e-3, such weights become float32 denormals


def _c(shape, scale=1.0):
    return (np.random.default_rng(1).standard_normal(shape) * scale).astype(np.float32)


def _bn(c, scale=1.0):
    return {"s": np.full(c, scale, np.float32), "b": _c(c), "mean": _c(c),
            "var": np.ones(c, np.float32)}


#: pass -> (model text, initializers, the stat it must report)
CASES = {
    "fold-batchnorm": ("""
        g (float[N,3,6,6] x) => (float[N,4,6,6] y) {
            c = Conv(x, W)
            y = BatchNormalization(c, s, b, mean, var)
        }""", {"W": _c((4, 3, 1, 1), TINY), **_bn(4, 1e-3)}, "denormals flushed"),
    "fold-affine": ("""
        g (float[N,3,6,6] x) => (float[N,4,6,6] y) {
            c = Conv(x, W)
            y = Mul(c, k)
        }""", {"W": _c((4, 3, 1, 1), TINY), "k": np.full((4, 1, 1), 1e-3, np.float32)},
        "denormals flushed"),
    "fold-into-next-conv": ("""
        g (float[N,4,6,6] x) => (float[N,4,6,6] y) {
            r = Relu(x)
            m = Mul(r, k)
            y = Conv(m, W)
        }""", {"W": _c((4, 4, 1, 1), TINY), "k": np.full((4, 1, 1), 1e-3, np.float32)},
        "denormals flushed"),
    "batchnorm-to-affine": ("""
        g (float[N,4,6,6] x) => (float[N,4,6,6] y) {
            r = Relu(x)
            y = BatchNormalization(r, s, b, mean, var)
        }""", {**_bn(4, 1e-40)}, "denormals flushed"),
    "flush-denormals": ("""
        g (float[N,3,6,6] x) => (float[N,4,6,6] y) {
            y = Conv(x, W)
        }""", {"W": _c((4, 3, 1, 1), 1e-40)}, "denormals flushed"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_pass_stats_reach_the_json_report(rng, name):
    text, inits, stat = CASES[name]
    model = make_model(text, rng, **inits)
    _, report = fuser.optimize(model, [name], validate=False)
    data = json.loads(report.to_json())
    counted = [r for r in report.passes if r.stats]
    assert counted and counted[0].stats[stat] > 0  # the case really exercises the stat
    for record, item in zip(report.passes, data["passes"], strict=True):
        assert item["stats"] == dict(record.stats)
        assert all(isinstance(k, str) and isinstance(v, int) for k, v in item["stats"].items())


def test_shared_weight_cloned_stat_reaches_the_json_report(rng):
    model = make_model("""
        g (float[N,3,6,6] x) => (float[N,4,6,6] y, float[N,4,6,6] z) {
            c = Conv(x, W)
            y = BatchNormalization(c, s, b, mean, var)
            z = Conv(x, W)
        }""", rng, W=(4, 3, 1, 1), **_bn(4))
    _, report = fuser.optimize(model, ["fold-batchnorm"], validate=False)
    data = json.loads(report.to_json())
    assert data["passes"][1]["stats"] == {"shared weight cloned": 1}


@pytest.fixture
def tiny_weights(tmp_path, rng):
    """Conv + BN with tiny weights: the fold flushes denormals (as in two trained OCR models)."""
    text, inits, _ = CASES["fold-batchnorm"]
    path = tmp_path / "m.onnx"
    graph_io.save(make_model(text, rng, **inits), path)
    return path


def test_report_of_a_fold_that_flushed_denormals_is_written(tiny_weights, tmp_path, capsys):
    out, report = tmp_path / "o.onnx", tmp_path / "r.json"
    assert main(["optimize", str(tiny_weights), "-o", str(out), "--report", str(report),
                 "--no-bench"]) == 0
    assert "denormals flushed to zero" in capsys.readouterr().out
    data = json.loads(report.read_text())
    fold = next(p for p in data["passes"] if p["name"] == "fold-batchnorm")
    assert fold["stats"]["denormals flushed"] > 0
    assert out.exists()


def test_a_report_that_cannot_be_written_leaves_no_model(tiny_weights, tmp_path, capsys):
    out = tmp_path / "o.onnx"
    code = main(["optimize", str(tiny_weights), "-o", str(out), "--report",
                 str(tmp_path / "missing" / "r.json"), "--no-bench"])
    err = capsys.readouterr().err
    assert code == 2 and "folder" in err and "missing" in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_a_report_that_cannot_be_made_leaves_no_model(tiny_weights, tmp_path, monkeypatch):
    """Whatever fails while the report is made, it fails before the model is written."""
    def broken(self):
        raise RuntimeError("report broken")

    monkeypatch.setattr(fuser.Report, "to_dict", broken)
    out = tmp_path / "o.onnx"
    with pytest.raises(RuntimeError, match="report broken"):
        main(["optimize", str(tiny_weights), "-o", str(out), "--report",
              str(tmp_path / "r.json"), "--no-bench"])
    assert not out.exists()


@pytest.mark.parametrize("name", sorted(fuser.REGISTRY))
def test_the_report_of_any_single_pass_is_json(rng, name):
    """Every registered pass, alone, on a model with a fold that flushes denormals."""
    text, inits, _ = CASES["fold-batchnorm"]
    model = make_model(text, rng, **inits)
    _, report = fuser.optimize(model, [name], validate=False)
    data = json.loads(report.to_json())
    assert [p["name"] for p in data["passes"]] == [r.name for r in report.passes]
    assert all(isinstance(k, str) for p in data["passes"] for k in p["stats"])

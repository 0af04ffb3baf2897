"""The demo explains BatchNorms left with the skip reasons the passes gave, not a fixed
sentence (issue 16, item 15)."""

from __future__ import annotations

import fuser
from fuser.cli import demo_job as demo
from fuser.cli import main
from tests.helpers import make_model


def test_reasons_of_a_batchnorm_after_relu_and_of_its_keras_form(rng):
    model = make_model("""
        g (float[N,4,6,6] x) => (float[N,4,6,6] y, float[N,4,6,6] z) {
            r = Relu(x)
            y = BatchNormalization(r, s, b, mean, var)
            p = MaxPool<kernel_shape=[1,1]>(x)
            m = Mul(p, k)
            z = Add(m, t)
        }""", rng, s=(4,), b=(4,), mean=(4,), var=(4,), k=(4, 1, 1), t=(4, 1, 1))
    optimized, report = fuser.optimize(model, validate=False)
    assert demo.batchnorm_left(optimized) == 2  # the BN, and the Mul of the Keras form
    assert demo.left_reasons(optimized, report) == {
        "fold-batchnorm: '*' comes from Relu, not from Conv/ConvTranspose/Gemm/MatMul": 1,
        "fold-affine: Mul -> '*' by a per-channel constant: '*' comes from MaxPool, not from "
        "Conv/ConvTranspose/Gemm/MatMul": 1,
        "fold-affine: Add -> '*' by a per-channel constant: '*' comes from Mul, not from "
        "Conv/ConvTranspose/Gemm/MatMul": 1,
    }


ROWS = [
    {"model": "a", "framework": "torch", "BN": "4 -> 0", "passed": True,
     "speed": {"speedup": 1.02, "slower": False}},
    {"model": "pre", "framework": "torch", "BN": "18 -> 9", "passed": True,
     "left because": {"fold-batchnorm: '*' comes from Add, not from X": 8,
                      "fold-batchnorm: '*' comes from MaxPool, not from X": 1},
     "speed": {"speedup": 0.99, "slower": False}},
    {"model": "odd", "framework": "keras", "BN": "2 -> 1", "passed": True,
     "speed": {"speedup": 0.90, "slower": True}},
]


def test_the_demo_prints_the_reasons_before_its_last_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(demo, "run", lambda *args: ROWS)
    monkeypatch.setattr(demo, "table", lambda rows: "TABLE")
    assert main(["demo", "-o", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-4:-1] == [
        "BatchNorms left, with the reasons the passes gave:",
        "  pre (torch): 9 left: 8x fold-batchnorm: '*' comes from Add, not from X; "
        "1x fold-batchnorm: '*' comes from MaxPool, not from X",
        "  odd (keras): 1 left: no pass gave one"]
    assert lines[-1].endswith("3 models, 0.90x-1.02x against their originals at "
                              "ORT_ENABLE_ALL, slower: odd (keras), 14 of 24 BatchNorms folded "
                              "(10 left: the passes' reasons above)")
    assert "pre-activation" not in "\n".join(lines)

"""One source for every figure (issue 29): the last line, the text, the markdown and the JSON
of one run are rendered from the same record, so each figure reads the same in all of them.
A trial once found "speed-up 1.05x at ORT_ENABLE_ALL" in the last line and 1.0 in the JSON.
"""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest

from fuser import ir as graph_io
from fuser.cli import main
from fuser.frontends import torch as torch_frontend
from fuser.zoo import digits
from tests.helpers import FAST_TIMING, conv_bn_model


def _run(args: list[str], report) -> tuple[dict, str, str, str]:
    """One run with ``--json`` and ``--report r.md``: its JSON, text, last line, markdown."""
    with contextlib.redirect_stdout(io.StringIO()) as out, \
            contextlib.redirect_stderr(io.StringIO()) as err:
        code = main([*args, "--json", "--report", str(report)])
    assert code == 0, err.getvalue()
    text = err.getvalue()  # with --json the human text goes to stderr
    last = text.strip().splitlines()[-1]
    return json.loads(out.getvalue()), text, last, report.read_text()


def _speed(data: dict) -> str:
    ratio = data["speed"]["ratios"][0]
    low, high = ratio["speedup_ci"]
    return f"{ratio['speedup']:.2f}x [{low:.2f}, {high:.2f}]"


def test_an_exact_run_says_the_same_figures_everywhere(tmp_path, rng):
    model = conv_bn_model(rng)
    graph_io.save(model, tmp_path / "m.onnx")
    data, text, last, markdown = _run(
        ["optimize", str(tmp_path / "m.onnx"), "-o", str(tmp_path / "o.onnx"), *FAST_TIMING],
        tmp_path / "r.md")
    speed = _speed(data)
    nodes = f"{data['before']['nodes']} -> {data['after']['nodes']}"
    worst = f"{max(o['max_abs'] for o in data['validation']['outputs']):.1e}"
    assert last.startswith("PASSED")
    for form in (last, text, markdown):
        assert speed in form
    assert f"nodes {nodes}" in last and nodes in markdown
    assert f"nodes {nodes}" in " ".join(text.split())  # the text's columns
    assert f"max diff {worst}" in last and worst in markdown


@pytest.fixture(scope="module")
def digits_vgg(tmp_path_factory):
    """The trained digits VGG as the user's file, and 496 labelled calibration images (128
    fit, 368 held out: the fewest that resolve a 1-point drop)."""
    folder = tmp_path_factory.mktemp("agree")
    data = digits.load(32)
    model = torch_frontend.export(digits.load_trained("digits_vgg"), (1, 1, 32, 32)).model
    graph_io.save(model, folder / "vgg.onnx")
    np.savez(folder / "calib.npz", input=data.train_x[:496], labels=data.train_y[:496])
    return folder


def test_a_lossy_run_says_the_same_figures_everywhere(digits_vgg, tmp_path):
    data, text, last, markdown = _run(
        ["optimize", str(digits_vgg / "vgg.onnx"), "-o", str(tmp_path / "o.onnx"), *FAST_TIMING,
         "--lossy", "lowrank", "--calibration", str(digits_vgg / "calib.npz"),
         "--search-time", "20"], tmp_path / "r.md")
    lossy = data["lowrank"]
    metric = (f"{lossy['metric']} {lossy['metric_before']:.2%} -> "
              f"{lossy['metric_after']:.2%} (drop {lossy['drop']:.2%}")
    macs = f"MACs {lossy['macs_before'] / 1e6:.2f}M -> {lossy['macs_after'] / 1e6:.2f}M"
    speed = _speed(data)
    for form in (last, text, markdown):
        assert metric in form and macs in form and speed in form
    kept = any(layer["method"] != "dense" for layer in lossy["layers"])
    ratio = data["speed"]["ratios"][0]["speedup"]
    said = f"speed-up {ratio:.2f}x at ORT_ENABLE_ALL" if kept else "every layer kept dense"
    for form in (last, text, markdown):  # the delivered model's, against the file given
        assert said in form

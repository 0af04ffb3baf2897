"""`onnx-fuser check`: a fresh baseline passes; planted regressions fail with the right
message and exit 1; JUnit parses; --update is idempotent; folder mode with -j 2."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET

import numpy as np
import onnx
import pytest

from fuser import ir as graph_io
from fuser.cli import main
from fuser.testing import assert_equivalent, assert_no_regression
from tests.helpers import make_model

MODEL = """
    g (float[N,3,8,8] x) => (float[N,4,8,8] y) {
        c = Conv<pads=[1,1,1,1]>(x, W)
        y = BatchNormalization(c, s, b, mean, var)
    }"""


def build(rng, text=MODEL, **overrides):
    inits = {"W": (4, 3, 3, 3), "s": (4,), "b": (4,), "mean": (4,), "var": (4,), **overrides}
    return make_model(text, np.random.default_rng(0), **inits)


@pytest.fixture
def checked(tmp_path, rng):
    """A model file and its fresh baseline (written through the CLI)."""
    path = tmp_path / "m.onnx"
    graph_io.save(build(rng), path)
    baseline = tmp_path / "base" / "m.json"
    baseline.parent.mkdir()
    assert main(["check", str(path), "--baseline", str(baseline), "--update"]) == 0
    return path, baseline


def run(path, baseline, capsys, *extra):
    code = main(["check", str(path), "--baseline", str(baseline), *extra])
    return code, capsys.readouterr().out


def test_a_model_passes_against_its_own_fresh_baseline(checked, capsys):
    path, baseline = checked
    capsys.readouterr()
    code, out = run(path, baseline, capsys)
    assert code == 0 and out.splitlines()[-1].startswith("PASSED")
    assert baseline.with_suffix(".npz").exists()


def planted(rng, kind):
    if kind == "changed weight":
        weight = np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(np.float32)
        weight[0, 0, 0, 0] += 0.5
        return build(rng, W=weight)
    if kind == "added node":
        return build(rng, MODEL.replace("y = BatchNormalization(c, s, b, mean, var)",
                                        "z = BatchNormalization(c, s, b, mean, var)\n"
                                        "        y = Identity(z)"))
    if kind == "output renamed":
        return build(rng, MODEL.replace("y)", "out)").replace("y = ", "out = "))
    if kind == "input shape changed":
        return build(rng, MODEL.replace("float[N,3,8,8] x", "float[N,3,9,9] x")
                     .replace("float[N,4,8,8]", "float[N,4,9,9]"))
    raise ValueError(kind)


@pytest.mark.parametrize("kind, message", [
    ("changed weight", "output 'y' max abs diff"),
    ("added node", "Identity 0 -> 1"),
    ("output renamed", "outputs ['y'] -> ['out'] (renamed or changed)"),
    ("input shape changed", "input 'x' shape ['N', 3, 8, 8] -> ['N', 3, 9, 9]"),
])
def test_planted_regressions_fail_with_the_right_message(checked, capsys, rng, kind, message):
    path, baseline = checked
    graph_io.save(planted(rng, kind), path)
    capsys.readouterr()
    code, out = run(path, baseline, capsys)
    assert code == 1 and message in out
    assert out.splitlines()[-1].startswith("FAILED")


def test_unfolded_batchnorm_fails_an_optimize_baseline(tmp_path, capsys, rng):
    """Baseline of the optimized model; then the pipeline stops folding (planted by a BN
    after a Relu, which cannot fold)."""
    path, baseline = tmp_path / "m.onnx", tmp_path / "m.json"
    graph_io.save(build(rng), path)
    assert main(["check", str(path), "--baseline", str(baseline), "--update", "--optimize"]) == 0
    stuck = build(rng, MODEL.replace("y = BatchNormalization(c,", "r = Relu(c)\n"
                                     "        y = BatchNormalization(r,"))
    graph_io.save(stuck, path)
    capsys.readouterr()
    code, out = run(path, baseline, capsys, "--optimize")
    assert code == 1
    assert "BatchNormalization nodes 0 -> 1" in out and "fold-batchnorm rewrites 1 -> 0" in out


def test_junit_has_one_testcase_per_check_and_parses(checked, capsys, rng, tmp_path):
    path, baseline = checked
    graph_io.save(planted(rng, "added node"), path)
    junit = tmp_path / "j.xml"
    code, _ = run(path, baseline, capsys, "--junit", str(junit))
    assert code == 1
    root = ET.parse(junit).getroot()
    assert root.tag == "testsuites"
    suite = root.find("testsuite")
    cases = suite.findall("testcase")
    assert int(suite.get("tests")) == len(cases) >= 6
    failures = [c for c in cases if c.find("failure") is not None]
    assert int(suite.get("failures")) == len(failures) >= 1
    assert all(c.get("classname") == "m.onnx" and c.get("name") for c in cases)
    assert "Identity 0 -> 1" in failures[0].find("failure").get("message")


def test_update_is_idempotent_and_keeps_edited_tolerances(checked):
    path, baseline = checked
    data = json.loads(baseline.read_text())
    data["checks"]["outputs"]["atol"] = 0.5
    baseline.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    assert main(["check", str(path), "--baseline", str(baseline), "--update"]) == 0
    first = baseline.read_bytes()
    assert main(["check", str(path), "--baseline", str(baseline), "--update"]) == 0
    assert baseline.read_bytes() == first
    assert json.loads(first)["checks"]["outputs"]["atol"] == 0.5


def test_folder_mode_with_two_jobs(tmp_path, capsys, rng):
    models, baselines = tmp_path / "models", tmp_path / "baselines"
    models.mkdir()
    for i in range(3):
        weight = np.random.default_rng(i).standard_normal((4, 3, 3, 3)).astype(np.float32)
        graph_io.save(build(rng, W=weight), models / f"m{i}.onnx")
    args = ["check", str(models), "--baseline-dir", str(baselines), "-j", "2"]
    assert main([*args, "--update"]) == 0
    assert sorted(p.name for p in baselines.glob("*.json")) == ["m0.json", "m1.json", "m2.json"]
    graph_io.save(planted(rng, "added node"), models / "m1.onnx")
    capsys.readouterr()
    assert main([*args, "--junit", str(tmp_path / "all.xml"), "--json"]) == 1
    results = {r["model"]: r["passed"] for r in json.loads(capsys.readouterr().out)}
    assert results == {"m0.onnx": True, "m1.onnx": False, "m2.onnx": True}
    classes = {c.get("classname") for c in ET.parse(tmp_path / "all.xml").iter("testcase")}
    assert classes == {"m0.onnx", "m1.onnx", "m2.onnx"}


def test_latency_ratio_against_a_reference(checked, capsys):
    path, baseline = checked
    assert main(["check", str(path), "--baseline", str(baseline), "--update",
                 "--reference", str(path)]) == 0
    spec = json.loads(baseline.read_text())["checks"]["latency"]
    assert spec["reference"] == str(path) and 0.2 < spec["ratio"] < 5  # itself: ~1, noisy
    edit(baseline, "latency", max_ratio=100.0)  # timing noise must not decide this test
    capsys.readouterr()
    code, out = run(path, baseline, capsys)
    assert code == 0 and "ok   latency: latency ratio to" in out
    edit(baseline, "latency", max_ratio=0.001)
    code, out = run(path, baseline, capsys)
    assert code == 1 and "FAIL latency: latency ratio to" in out and "(max 0.001)" in out


def edit(baseline, check, **fields):
    """Edit a check's values or tolerances in the baseline, as a team may."""
    data = json.loads(baseline.read_text())
    data["checks"][check].update(fields)
    baseline.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


@pytest.mark.parametrize("check", ["params", "macs"])
def test_params_and_macs_checks_fail_when_the_count_moves(checked, capsys, check):
    path, baseline = checked
    want = json.loads(baseline.read_text())["checks"][check]["value"]
    edit(baseline, check, value=want * 2)
    capsys.readouterr()
    code, out = run(path, baseline, capsys)
    assert code == 1 and f"FAIL {check}: {check} {want * 2:,} -> {want:,}" in out
    assert out.splitlines()[-1].startswith("FAILED")
    edit(baseline, check, rtol=0.6)  # a tolerance a team edited lets it pass
    code, out = run(path, baseline, capsys)
    assert code == 0 and f"ok   {check}:" in out


@pytest.mark.parametrize("args, message", [
    (["{m}"], "give --baseline"),
    (["{m}", "--baseline", "{tmp}/none.json"], "no baseline (write one with --update)"),
    (["{tmp}", "--baseline", "x.json"], "is a folder: give --baseline-dir"),
])
def test_bad_input_exits_2(checked, tmp_path, capsys, args, message):
    path, _ = checked
    args = [a.format(m=path, tmp=tmp_path) for a in args]
    assert main(["check", *args]) == 2
    assert message in capsys.readouterr().err


def test_torch_leg_checks_the_export(tmp_path, capsys):
    pytest.importorskip("torch")
    baseline = tmp_path / "t.json"
    args = ["check", "--torch", "zoo:resnet10", "--baseline", str(baseline)]
    assert main([*args, "--update"]) == 0
    capsys.readouterr()
    code = main(args)
    out = capsys.readouterr().out
    assert code == 0 and "framework vs ONNX max abs diff" in out
    edit(baseline, "export", max_abs_diff=0.0)
    code = main(args)
    out = capsys.readouterr().out
    assert code == 1 and "FAIL export: framework vs ONNX max abs diff" in out and "(> 0)" in out


def test_pytest_helpers(checked, tmp_path, rng):
    path, baseline = checked
    assert_no_regression(path, baseline)
    assert_equivalent(path, path)
    broken = tmp_path / "b.onnx"
    graph_io.save(planted(rng, "changed weight"), broken)
    with pytest.raises(AssertionError, match="output 'y' max abs diff"):
        assert_no_regression(broken, baseline)
    with pytest.raises(AssertionError, match="max abs diff"):
        assert_equivalent(path, broken)
    assert onnx is not None


def test_progress_goes_to_stderr_a_line_per_model_and_q_silences_it(checked, capsys):
    """Issue 29: long work was silent in a log. ``check`` says each model as it finishes,
    on stderr (a pipe or a terminal alike); ``-q`` says nothing there."""
    path, baseline = checked
    capsys.readouterr()
    assert main(["check", str(path), "--baseline", str(baseline)]) == 0
    err = capsys.readouterr().err
    assert re.fullmatch(r"check: \S*m\.onnx passed \(1 of 1, \d+\.\ds\)\n", err), err
    assert main(["-q", "check", str(path), "--baseline", str(baseline)]) == 0
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out.splitlines()[-1].startswith("PASSED")

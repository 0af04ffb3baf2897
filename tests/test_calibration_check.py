"""Degenerate calibration data (issue 25): constant samples, near-copies and outputs that
hardly vary are refused before any search, in one line; allowed, the run goes on, says so on
its last line, and the guard's interval counts distinct samples, not rows."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fuser import ir as graph_io
from fuser.cli import main
from fuser.errors import FuserError
from fuser.search import calibration_check as check
from fuser.search import search as search_module
from fuser.search.config import Search
from fuser.search.metric import judge, resolve
from fuser.search.search import compress
from tests.test_lowrank_guard import _plant, _scores
from tests.test_lowrank_search import PlantedTable


def _batches(x: np.ndarray, size: int = 16) -> list[dict]:
    return [{"x": x[i:i + size]} for i in range(0, len(x), size)]


def _copies(rows: int, noise: float, seed: int = 0) -> np.ndarray:
    """``rows`` copies of one 1x8x8 image, each with its own noise of this size."""
    rng = np.random.default_rng(seed)
    image = rng.random((1, 1, 8, 8)).astype(np.float32)
    return image + noise * rng.standard_normal((rows, 1, 8, 8)).astype(np.float32)


# ----------------------------------------------------------------------------- the inputs


def test_all_zero_samples_are_constant_and_one_distinct_sample():
    found = check.check_inputs(_batches(np.zeros((1024, 1, 8, 8), np.float32)), allow=True)
    assert (found.rows, found.distinct, found.constant) == (1024, 1, 1024)
    assert found.findings == ("1024 of 1024 samples are constant (every value the same)",
                              "1024 samples hold 1 distinct one (the rest are within 1% RMS "
                              "of another)")
    with pytest.raises(FuserError, match=r"^degenerate calibration data: 1024 of 1024 samples "
                                         r"are constant .*--allow-degenerate-calibration"):
        check.check_inputs(_batches(np.zeros((1024, 1, 8, 8), np.float32)))


def test_near_copies_of_one_image_are_one_distinct_sample():
    found = check.check_inputs(_batches(_copies(1024, 1e-3)), allow=True)
    assert (found.distinct, found.constant) == (1, 0)
    assert len(found.findings) == 1 and "hold 1 distinct one" in found.findings[0]


def test_varied_samples_pass_and_some_repeats_are_counted_not_refused(rng):
    """Negative: varied data has no findings; 30 % repeated rows are below the refusal's
    share, but the groups still count them once."""
    x = rng.random((100, 1, 8, 8)).astype(np.float32)
    assert check.check_inputs(_batches(x)).distinct == 100
    x[70:] = x[:30] + 1e-4  # rows 70..99 repeat rows 0..29
    found = check.check_inputs(_batches(x))
    assert found.findings == () and found.distinct == 70
    np.testing.assert_array_equal(found.groups[70:], found.groups[:30])


def test_a_slow_drift_is_not_chained_into_one_group():
    """Frames 0.3 % apart: each joins the group of a leader within 1 %, so the groups stay
    a few frames long instead of chaining the whole ramp into one."""
    rng = np.random.default_rng(0)
    start, step = rng.random((1, 1, 8, 8)), rng.standard_normal((1, 1, 8, 8))
    step *= 0.003 * np.sqrt((start ** 2).mean()) / np.sqrt((step ** 2).mean())
    frames = (start + np.arange(120)[:, None, None, None] * step).astype(np.float32)
    found = check.check_inputs(_batches(frames), allow=True)
    assert 20 <= found.distinct <= 60


def test_a_sample_is_constant_only_when_every_input_is():
    x = np.zeros((64, 3), np.float32)
    z = np.random.default_rng(0).random((64, 5)).astype(np.float32)
    found = check.check_inputs([{"x": x[i:i + 16], "z": z[i:i + 16]} for i in range(0, 64, 16)])
    assert found.constant == 0 and found.findings == () and found.distinct == 64


# ---------------------------------------------------------------------------- the outputs


def _plain(rows: int) -> check.CalibrationCheck:
    return check.CalibrationCheck(rows, np.arange(rows), 0)


def test_one_class_for_all_held_out_samples_is_found_for_class_metrics(rng):
    scores = rng.standard_normal((50, 10)).astype(np.float32)
    scores[:, 4] = 10.0
    found = check.check_outputs(_plain(50), {"y": scores}, classes=True)
    assert found.findings == ("the original gives class 4 to all 50 held-out samples",)
    assert check.check_outputs(_plain(50), {"y": scores}, classes=False).findings == ()
    scores[7, 2] = 20.0  # negative: two classes
    assert check.check_outputs(_plain(50), {"y": scores}, classes=True).findings == ()


def test_outputs_that_hardly_vary_are_found(rng):
    flat = np.ones((40, 3), np.float32) + 1e-5 * rng.standard_normal((40, 3)).astype(
        np.float32)
    found = check.check_outputs(_plain(40), {"y": flat}, classes=False)
    assert len(found.findings) == 1 and found.findings[0].startswith(
        "the original's outputs hardly vary across the 40 held-out samples")
    varied = {"y": flat, "z": rng.standard_normal((40, 2)).astype(np.float32)}
    assert check.check_outputs(_plain(40), varied, classes=False).findings == ()


# ------------------------------------------------------------- the interval counts groups


def test_the_binomial_interval_counts_distinct_samples(rng):
    ref = {"y": rng.standard_normal((200, 10)).astype(np.float32)}
    new = {"y": ref["y"].copy()}
    new["y"][:4] = -ref["y"][:4]  # 4 of 200 rows made worse (top-1 changes)
    metric = resolve("agreement", ref, None)
    plain = judge(metric, ref, new, None)
    assert (plain.samples, plain.rows) == (200, 200)
    groups = np.repeat(np.arange(20), 10)  # 20 groups of 10 near-copies
    grouped = judge(check.dataclasses.replace(metric, groups=groups), ref, new, None)
    assert (grouped.samples, grouped.rows, grouped.drop) == (20, 200, plain.drop)
    assert grouped.interval[1] > plain.interval[1]
    one = judge(check.dataclasses.replace(metric, groups=np.zeros(200, np.int64)), ref, ref,
                None)
    assert one.samples == 1 and one.interval[1] == pytest.approx(0.975)


@pytest.mark.parametrize("spec", ["bootstrap", "user"])
def test_the_bootstrap_resamples_groups(rng, spec):
    ref = {"y": rng.standard_normal((120, 1)).astype(np.float32)}
    new = {"y": ref["y"] + 0.3 * rng.standard_normal((120, 1)).astype(np.float32)}

    def negative_error(outputs, labels):
        return -float(np.abs(outputs["y"] - ref["y"][:len(outputs["y"])]).mean())

    if spec == "user":
        metric = resolve(negative_error, ref, None)
    else:
        metric = resolve(None, ref, None)
        metric = check.dataclasses.replace(metric, per_sample=lambda r, n, lab: (
            np.zeros(len(r["y"])), -np.abs(n["y"] - r["y"]).ravel()))
    plain = judge(metric, ref, new, None)
    same = judge(check.dataclasses.replace(metric, groups=np.arange(120)), ref, new, None)
    assert same.interval == plain.interval  # every sample its own group: the old bootstrap
    grouped = judge(check.dataclasses.replace(metric, groups=np.arange(120) // 40), ref, new,
                    None)
    assert grouped.samples == 3 and grouped.rows == 120
    assert grouped.interval[1] >= plain.interval[1]


# --------------------------------------------------------------- the search and the CLI


def test_the_search_refuses_near_copies_before_any_work(monkeypatch, rng):
    original, _ = _plant(monkeypatch, rng)
    calibration = _batches(np.tile(_scores(1, [])[0]["x"], (496, 1)), 8)
    from fuser.search import looks

    monkeypatch.setattr(looks, "outputs", lambda *a, **k: pytest.fail("ran the model"))
    with pytest.raises(FuserError, match="496 samples hold 1 distinct one"):
        compress(original, calibration, Search(budget="macs=0.5", max_accuracy_drop=0.01),
                 table=PlantedTable("-"))


def test_the_search_refuses_one_class_for_all_after_the_reference_run(monkeypatch, rng):
    original, _ = _plant(monkeypatch, rng)
    x = np.concatenate([b["x"] for b in _scores(496, [])])
    x[:, 3] = 0.0  # class 0 wins every sample; the rows still differ
    with pytest.raises(FuserError, match="the original gives class 0 to all 368 held-out"):
        compress(original, _batches(x, 8), Search(budget="macs=0.5", max_accuracy_drop=0.01),
                 table=PlantedTable("-"))


def test_a_first_look_of_one_class_in_sorted_data_is_not_refused(monkeypatch, rng):
    """The guard's first look sees the first quarter of the held-out samples: data sorted by
    class can give it one class alone. The check then reads every held-out sample."""
    original, _ = _plant(monkeypatch, rng)
    x = np.concatenate([b["x"] for b in _scores(496, [])])
    x[:128 + 96, 3] = 0.0  # class 0 wins the fitting samples and the first look's 96
    _, result = compress(original, _batches(x, 8),
                         Search(budget="macs=0.5", max_accuracy_drop=0.01),
                         table=PlantedTable("-"))
    assert result.degenerate_calibration == [] and result.held_out_total == 368


def _cli(tmp_path, x: np.ndarray, *extra: str) -> int:
    np.savez(tmp_path / "c.npz", x=x)
    return main(["optimize", str(tmp_path / "m.onnx"), "-o", str(tmp_path / "o.onnx"),
                 "--no-bench", "--lossy", "lowrank", "--calibration", str(tmp_path / "c.npz"),
                 "--calibration-batch", "8", "--budget", "macs=0.5", *extra])


def test_cli_refuses_in_one_line_or_goes_on_when_allowed_and_says_so(monkeypatch, rng,
                                                                      tmp_path, capsys):
    """The issue's case: near-copies of one sample passed the guard (drop 0.00 % on 896
    samples). Refused: exit 2, one line, nothing written. Allowed: the guard counts one
    distinct sample, cannot resolve 1 %, and the last line says the data was degenerate."""
    original, _ = _plant(monkeypatch, rng)
    graph_io.save(original, tmp_path / "m.onnx")
    monkeypatch.setattr(search_module, "LatencyTable", lambda **kw: PlantedTable("-"))
    x = np.tile(_scores(1, [])[0]["x"], (496, 1))  # the planted rewrite changes no top-1
    x += 1e-4 * rng.standard_normal(x.shape).astype(np.float32)
    assert _cli(tmp_path, x) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err, err
    assert "degenerate calibration data: 496 samples hold 1 distinct one" in err
    assert not (tmp_path / "o.onnx").exists()
    assert _cli(tmp_path, x, "--allow-degenerate-calibration", "--json") == 1
    captured = capsys.readouterr()
    lowrank = json.loads(captured.out)["lowrank"]
    assert lowrank["degenerate_calibration"][:2] == [
        "496 samples hold 1 distinct one (the rest are within 1% RMS of another)",
        "the original gives class 0 to all 368 held-out samples"]
    assert (lowrank["held_out_samples"], lowrank["distinct_held_out"]) == (368, 1)
    assert lowrank["guard"].startswith("not resolved: 1 distinct of 368 held-out samples")
    last = captured.err.strip().splitlines()[-1]
    assert last.startswith("FAILED") and "DEGENERATE CALIBRATION ALLOWED (496 samples" in last
    assert not (tmp_path / "o.onnx").exists()


def test_allowing_degenerate_data_needs_the_lossy_stage(tmp_path, capsys, rng, monkeypatch):
    original, _ = _plant(monkeypatch, rng)
    graph_io.save(original, tmp_path / "m.onnx")
    assert main(["optimize", str(tmp_path / "m.onnx"), "-o", str(tmp_path / "o.onnx"),
                 "--allow-degenerate-calibration"]) == 2
    assert "--allow-degenerate-calibration needs --lossy" in capsys.readouterr().err


@pytest.fixture(scope="module")
def trained_vgg(tmp_path_factory):
    pytest.importorskip("torch")
    from fuser.frontends import torch as torch_frontend
    from fuser.zoo import digits

    folder = tmp_path_factory.mktemp("vgg")
    model = torch_frontend.export(digits.load_trained("digits_vgg"), (1, 1, 32, 32)).model
    graph_io.save(model, folder / "m.onnx")
    return folder, digits.load(32)


@pytest.mark.parametrize("kind", ["zeros", "copies"])
def test_the_trained_digits_net_refuses_the_issues_calibration_sets(trained_vgg, kind,
                                                                    capsys):
    """Issue 25's commands: 1024 all-zero images, or 1024 copies of one image with noise
    1e-3, delivered models scoring 10 % on the test split. Now: exit 2 in one line."""
    folder, data = trained_vgg
    image = data.train_x[:1]
    x = np.zeros((1024, 1, 32, 32), np.float32) if kind == "zeros" else \
        image + 1e-3 * np.random.default_rng(0).standard_normal((1024, 1, 32, 32)).astype(
            np.float32)
    np.savez(folder / f"{kind}.npz", input=x)
    code = main(["optimize", str(folder / "m.onnx"), "-o", str(folder / "o.onnx"),
                 "--lossy", "lowrank", "--budget", "latency=0.5", "--search-time", "60",
                 "--calibration", str(folder / f"{kind}.npz")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and not (folder / "o.onnx").exists()
    assert err[-1].startswith("onnx-fuser: degenerate calibration data: ") or \
        "degenerate calibration data: " in err[-1], err
    assert "hold 1 distinct one" in err[-1] and "Traceback" not in "\n".join(err)

"""Smoke test of the Pad-fold benchmark (``python -m benchmarks.pad_fold``): its code path on
two tiny cases with tiny budgets. Structure only, never speed."""

from __future__ import annotations

import json

import pytest

from benchmarks import pad_fold

FLAT = pad_fold.Case("tiny signal", 16, 16, 1, (9, 1), (4, 0, 4, 0), True, "flattened",
                     batch=2)
IMAGE = pad_fold.Case("tiny image", 8, 8, 8, (3, 3), (1, 1, 1, 1), False, "control", batch=2)


@pytest.fixture(scope="module")
def data():
    lines: list[str] = []
    out = pad_fold.run([FLAT, IMAGE], {}, case_budget=0.01, rounds=10, warmup=1,
                       say=lines.append)
    out["said"] = lines
    return out


def test_each_case_has_its_row(data):
    assert [r["case"] for r in data["rows"]] == ["tiny signal", "tiny image"]
    for row in data["rows"]:
        assert {"describe", "flattened", "default_folded", "default_rewrites", "forced_rewrites",
                "default_skipped", "pads", "ort_pads", "max_abs_diff", "threads", "timings",
                "seconds"} <= set(row)
        assert set(row["timings"]) == set(pad_fold.VARIANTS)
        for timing in row["timings"].values():
            assert {"median_ms", "rounds", "speedup", "ci", "resolved"} <= set(timing)
            low, high = timing["ci"]
            assert timing["median_ms"] > 0 and low <= timing["speedup"] <= high
        assert max(row["max_abs_diff"].values()) < 1e-4
        assert row["ort_pads"]["original"] == 1  # onnxruntime's PadFusion left it
        assert row["forced_rewrites"] == 1 and row["pads"]["forced"] == 0
        [conv] = row["rule"]  # the pass's own view: flattened as the case was designed
        assert row["flattened"] == conv["flattens"] == row["spec"]["flattened"]
    assert len(data["said"]) == 3  # a heading and one line per case


def test_the_default_keeps_the_pad_of_a_flattened_conv_only(data):
    flat, image = data["rows"]
    assert not flat["default_folded"] and flat["pads"]["default"] == 1
    [conv] = flat["rule"]
    assert conv["kept_by_rule"] and conv["taps_on_input"] >= pad_fold.fold_pad.FOLD_BELOW
    [reason] = flat["default_skipped"]
    assert "flattened CPU convolution" in reason
    assert image["default_folded"] and image["pads"]["default"] == 0


def test_the_report_and_the_raw_numbers_are_written(data, tmp_path):
    report, raw = pad_fold.write(data, tmp_path, "python -m benchmarks.pad_fold --quick")
    text = report.read_text()
    assert "python -m benchmarks.pad_fold --quick" in text and "commit " in text
    assert "| tiny signal" in text and "no, Pad kept (0/1)" in text and "yes (1/1)" in text
    assert "| yes (86 % of taps on the input) |" in text
    rule = pad_fold.rule_text()
    assert rule["flattens"] and rule["flattens"] in text and rule["skip"] in text
    assert json.loads(raw.read_text())["rows"][0]["case"] == "tiny signal"


def test_a_real_zoo_model_missing_from_the_cache_is_skipped_with_a_line(monkeypatch, tmp_path):
    monkeypatch.setenv("FUSER_REALZOO_CACHE", str(tmp_path))
    lines: list[str] = []
    assert pad_fold.measure_real("crepe-tiny", {1: (0.01, 1)}, say=lines.append) == []
    [line] = lines
    assert "not in the real-zoo cache" in line and "skipped" in line

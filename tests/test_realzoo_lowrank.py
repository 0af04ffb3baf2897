"""benchmarks/realzoo/lowrank.py: its pure parts, offline (no download, no search): the
calibration batches, the table row and its test-drop column, the reasons under 1.5x, and the
marker block of LOWRANK.md that keeps the digits part."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from benchmarks.realzoo import lowrank, registry


def test_batches_cut_every_sample_in_order():
    feeds = {"x": np.arange(10)[:, None] * np.ones((1, 3)), "y": np.arange(10)}
    parts = lowrank.batches(feeds, 4)
    assert [len(p["x"]) for p in parts] == [4, 4, 2]
    assert np.concatenate([p["y"] for p in parts]).tolist() == list(range(10))
    assert [len(p["y"]) for p in lowrank.batches(feeds, 1)] == [1] * 10


def test_calibration_batch_respects_a_fixed_batch_and_divides_the_fit():
    spec = registry.get("ppocr-v4-rec")  # run_batch 32
    assert lowrank.calibration_batch(spec, fixed=True, fit=128) == 1
    assert lowrank.calibration_batch(spec, fixed=False, fit=128) == 32
    assert lowrank.calibration_batch(spec, fixed=False, fit=8) == 8
    assert lowrank.calibration_batch(registry.get("ppocr-v4-det"), fixed=False, fit=10) == 2


def test_timed_batches_cap_the_usual_batch_and_skip_it_when_fixed():
    assert lowrank.timed_batches(512, fixed=False) == [1, lowrank.BATCH_CAP]
    assert lowrank.timed_batches(6, fixed=False) == [1, 6]
    assert lowrank.timed_batches(6, fixed=True) == [1]
    assert lowrank.timed_batches(1, fixed=False) == [1]


def _model(first_dim) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [first_dim, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [first_dim, 3])
    return helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                                               [x], [y]))


def test_fixed_batch_reads_the_first_dimension():
    assert lowrank.fixed_batch(_model(1))
    assert not lowrank.fixed_batch(_model("N"))
    assert not lowrank.fixed_batch(_model(8))


def test_labels_become_an_indexable_array_even_when_ragged():
    boxes = [np.zeros((2, 4)), np.zeros((3, 4))]
    array = lowrank.label_array(boxes)
    assert array.shape == (2,) and array[1].shape == (3, 4)
    assert lowrank.label_array(["ab", "c"])[1:].tolist() == ["c"]
    f0 = np.array([1.0, 2.0])
    assert lowrank.label_array(f0) is f0


def test_accuracy_budget_sets_the_allowed_drop():
    assert lowrank.allowed_drop("accuracy=0.02", 0.01) == 0.02
    assert lowrank.allowed_drop("latency=0.5", 0.01) == 0.01


def _row(**changes) -> dict:
    layers = [{"method": "channel", "macs_before": 900, "note": ""},
              {"method": "dense", "macs_before": 50, "note": ""}]
    row = {"model": "net", "metric_name": "share within 25 cents", "allowed_drop": 0.01,
           "usual_batch": 512, "fixed_batch": False, "timed_batches": [1, 64],
           "test_samples": 400, "calibration": {"samples": 640, "fit": 128},
           "calibration_batch": 32, "search_wall_seconds": 42.4,
           "macs_counted": {"conv_share": 0.99, "grouped_conv_share": 0.0},
           "exact_scores": {"metric": 0.95, "cents": 10.0},
           "lowrank_scores": {"metric": 0.93, "cents": 12.0}, "test_drop": 0.02,
           "lowrank": {"passed": True, "guard": "drop 0.00% within 1.00%", "layers": layers,
                       "macs_before": 1000, "macs_after": 400, "backed_off": [],
                       "phases": {"plan": 3.0, "build and guard": 5.0}},
           "speed": {"batches": {
               "1": {"exact_ms": 0.5, "lowrank_ms": 0.4, "speedup": 1.25, "vs_original": 1.1,
                     "vs_original_ci": [1.05, 1.15], "vs_original_resolved": True},
               "64": {"exact_ms": 9.0, "lowrank_ms": 6.0, "speedup": 1.5, "vs_original": 1.3,
                      "vs_original_ci": [1.2, 1.4], "vs_original_resolved": False}}}}
    row.update(changes)
    return row


def test_table_row_flags_a_passed_guard_that_lost_more_on_test_data():
    cells = [c.strip() for c in lowrank.table_row(_row()).strip("|").split("|")]
    assert cells[0] == "net" and cells[1] == "99.0 %"
    assert cells[3] == "0.950 -> 0.930 (n=400)"
    assert cells[5:7] == ["passed", "**YES**"]
    assert cells[7] == "1.10x [1.05, 1.15]"  # against the original first
    assert cells[8] == "1.30x [1.20, 1.40]? (b64, capped from 512)"  # ?: not resolved
    assert cells[9] == "1.25x" and cells[10] == "1.50x (b64, capped from 512)"
    assert cells[11] == "1k -> 400" and cells[12] == "1 of 2" and cells[13] == "42"
    assert lowrank.verdict(_row(test_drop=0.005)) == ("passed", "no")
    assert lowrank.verdict(_row(test_drop=0.015, test_interval=[0.004, 0.026])) == (
        "passed", "**YES** (1.50 [0.40, 2.60] pts)")
    failed = _row(lowrank={**_row()["lowrank"], "passed": False})
    assert lowrank.verdict(failed) == ("failed", "(guard failed)")


def test_table_row_of_a_fixed_batch_and_of_an_error():
    row = _row(fixed_batch=True, timed_batches=[1], usual_batch=1)
    assert "- (batch fixed at 1)" in lowrank.table_row(row)
    error = lowrank.table_row({"model": "net", "error": "fetch: FetchError: offline"})
    assert error.startswith("| net | error: fetch: FetchError: offline |")
    header = next(line for line in lowrank.markdown_block(_data([])).splitlines()
                  if line.startswith("| model"))
    assert error.count("|") == header.count("|") == 15  # as many cells as the header


def test_shortfall_names_the_reasons_told_by_the_data():
    assert lowrank.shortfall(_row()) is None  # 1.5x at b64 reached the target
    slow = {"batches": {"1": {"exact_ms": 0.3, "speedup": 1.1}}}
    dense = [{"layer": "conv1", "method": "dense", "macs_before": 500, "note": ""}]
    why = lowrank.shortfall(_row(speed=slow, timed_batches=[1], lowrank={
        "passed": True, "layers": dense, "macs_before": 1000, "macs_after": 1000,
        "backed_off": ["conv1"], "back_off_steps": 2}, macs_counted={"grouped_conv_share": 0.4}))
    assert ("0 of 1 layers rewritten, 1 left dense by the guard's ladder (3 choices judged), "
            "so the guard kept dense every layer that could be rewritten") in why
    assert "depthwise/grouped convolutions (not factorized): 40% of MACs" in why
    assert "candidate layers hold only 50% of the MACs" in why
    assert "overhead-bound: 0.30 ms at batch 1" in why
    assert lowrank.shortfall({"model": "x", "error": "search: boom"}) == "error: search: boom"
    timed = [{"layer": "a", "method": "channel", "macs_before": 900, "ms_before": 0.5,
              "ms_after": 0.2, "note": ""},
             {"layer": "b", "method": "dense", "macs_before": 100, "ms_before": 0.1,
              "ms_after": 0.1, "note": "no rank is faster than the dense layer"}]
    why = lowrank.shortfall(_row(speed=slow, timed_batches=[1], lowrank={
        "passed": True, "layers": timed, "macs_before": 1000, "macs_after": 1000}))
    assert "1 of 2 layers rewritten, 1 dense as no factorized form runs faster" in why
    assert "timed alone, save 0.30 ms of the model's 0.30 ms at batch 1; measured 1.10x" in why
    assert "MACs cut only 1.00x" in why


def _data(rows) -> dict:
    env = {"date": "2026-01-01", "machine": "test", "fuser_source": "commit abc",
           "versions": {"onnxruntime": "1"}}
    return {"command": "python -m benchmarks.realzoo.lowrank", "environment": env,
            "threads": 2, "batch_cap": 64, "rows": rows}


def test_markdown_block_has_the_header_text_the_table_and_the_markers():
    block = lowrank.markdown_block(_data([_row(), {"model": "bad", "error": "x: y"}]))
    assert block.startswith(lowrank.START) and block.rstrip().endswith(lowrank.END)
    assert "## Real models" in block
    assert "speed against the original** (the file the package ships) leads" in block.lower()
    assert "the speed-up against fuser's exact output (batchnorm folded" in block.lower()
    header = next(line for line in block.splitlines() if line.startswith("| model"))
    assert "test drop > allowed?" in header
    assert "- bad: error: x: y" in block
    assert "cents on test: 10.000 -> 12.000" in block


@pytest.mark.parametrize("old", ["", "# Low-rank\n\n| digits_vgg | row |\n"])
def test_replace_block_keeps_the_digits_part(old):
    first = lowrank.replace_block(old, f"{lowrank.START}\none\n{lowrank.END}\n")
    assert first.startswith(old.rstrip("\n")) and "one" in first
    second = lowrank.replace_block(first + "\ntrailer\n",
                                   f"{lowrank.START}\ntwo\n{lowrank.END}\n")
    assert "one" not in second and "two" in second and second.count(lowrank.START) == 1
    assert second.startswith(old.rstrip("\n")) and second.endswith("trailer\n")
    assert lowrank.existing_block(second) == f"{lowrank.START}\ntwo\n{lowrank.END}"
    assert lowrank.existing_block(old) == ""


def test_the_test_drop_interval_is_fusers_own_judgement_of_the_test_outputs():
    """20 of 400 test samples flipped by the compressed model: the drop is 5 points and its
    interval is around it; on 16 samples with nothing changed it reaches the binomial floor
    (16 samples cannot resolve a point)."""
    from types import SimpleNamespace

    from fuser.search.metric import clopper_pearson
    from tests.helpers import make_model

    graph = """
        g (float[N,4] x) => (float[N,4] y) {
            y = Add(x, S)
        }"""
    rng = np.random.default_rng(0)
    exact = make_model(graph, rng, S=np.zeros(4, np.float32))
    shifted = np.array([0.0, 0.2, 0.0, 0.0], np.float32)
    compressed = make_model(graph, rng, S=shifted)
    x = np.zeros((400, 4), np.float32)
    x[:, 0] = 1.0
    x[:20, 1] = 0.9  # the shift of class 1 flips these
    spec = SimpleNamespace(metric=lambda outputs, labels: float(
        np.mean(outputs["y"].argmax(1) == labels)))
    truth = np.zeros(400, np.int64)
    low, high = lowrank.test_interval(spec, exact, compressed, {"x": x}, truth, 32)
    assert low < 0.05 < high and 0.02 < low and high < 0.08
    low, high = lowrank.test_interval(spec, exact, exact, {"x": x[20:36]}, truth[:16], 4)
    assert low == 0.0 and high == pytest.approx(clopper_pearson(0, 16)[1])

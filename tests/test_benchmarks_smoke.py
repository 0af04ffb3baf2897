"""Smoke test of the peer benchmark (``python -m benchmarks.run``): its whole code path on one
tiny model with every contestant that is installed. Structure only, never absolute speed."""

from __future__ import annotations

import pytest

from benchmarks import measure, peers, results, run
from tests.helpers import make_model

pytest.importorskip("torch")


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bench")
    data = run.run_suite(run.SMOKE, ["torch"], None, folder / "models", runs=1,
                         latency_budget=0.1, rss=True, say=lambda text: None)
    data.update(command="python -m benchmarks.run --set smoke", environment=run.environment(),
                runs=1, latency_budget=0.1, setting="smoke")
    results.write(data, folder)
    return data, folder


def test_every_contestant_is_measured_or_reported_missing(suite):
    data, _ = suite
    names = {c.name for c in peers.CONTESTANTS}
    assert set(data["contestants"]) | set(data["missing"]) == names
    assert not set(data["contestants"]) & set(data["missing"])
    assert "fuser" in data["contestants"] and "ort-basic" in data["contestants"]
    for reason in data["missing"].values():
        assert "pip install 'onnx-fuser[bench]'" in reason
    [row] = data["models"]
    assert set(row["entries"]) == set(data["contestants"])


def test_each_output_is_measured_and_numerically_equal(suite):
    data, _ = suite
    [row] = data["models"]
    assert row["original"]["batchnorm"] == 12 and row["original"]["nodes"] == 40
    for name, entry in row["entries"].items():
        assert entry["error"] is None, (name, entry["error"])
        assert len(entry["seconds"]) == 1 and entry["seconds"][0] > 0
        assert entry["graph"]["nodes"] > 0 and entry["graph"]["file_bytes"] > 0
        assert entry["save_s"] >= 0
        assert entry["max_abs_diff"] < 1e-4, name  # every tool here is an exact rewrite
        for level in measure.LEVELS:
            lat = entry["latency"][level]
            assert 0 < lat["low"] <= lat["speedup"] <= lat["high"], (name, level)
            assert lat["median_ms"] > 0
    fuser = row["entries"]["fuser"]
    assert fuser["graph"]["batchnorm"] == 0 and fuser["exact"]
    for name, entry in row["entries"].items():  # file to file, in the same run (issue 16)
        assert entry["file_error"] is None, (name, entry["file_error"])
        assert len(entry["file_seconds"]) == 1 and entry["file_seconds"][0] > 0
    assert fuser["graph"]["nodes"] == 28  # Conv+BN pairs folded, the Relu/Add structure kept
    assert set(row["original_ms"]) == set(measure.LEVELS)


def test_peak_memory_is_measured_in_a_subprocess_per_tool(suite):
    data, _ = suite
    assert set(data["rss"]["tools"]) == set(data["contestants"])
    for name, usage in data["rss"]["tools"].items():
        assert "error" not in usage, (name, usage)
        assert usage["peak_mb"] >= usage["loaded_mb"] > 0 and usage["nodes"] > 0


def test_results_markdown_and_plots_are_written(suite):
    data, folder = suite
    text = (folder / "RESULTS.md").read_text()
    assert text.count("Made by `python -m benchmarks.run --set smoke`") >= 3
    for name in data["contestants"]:
        assert f"| resnet10_tiny (torch) | {name} |" in text
    assert "## Peak memory of the optimization" in text and "## Low-rank" in text
    files = text.split("## File to file", 1)[1]
    assert "| resnet10_tiny (torch) |" in files.split("##", 1)[0]
    assert "File to file (load the file, optimize, save; same run) on resnet10_tiny" in text
    for png in ("results_time.png", "results_latency.png"):
        assert (folder / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    head = results.headline(data["models"][0])
    assert head["fuser"] > 0


# ---------------------------------------------------------------- missing or failing tools


def test_a_missing_peer_is_reported_not_a_crash(monkeypatch):
    ghost = peers.Contestant("ghost", "ghost-dist", "fuser_no_such_module", "nothing",
                             lambda m: m)
    monkeypatch.setattr(peers, "CONTESTANTS", (*peers.CONTESTANTS, ghost))
    monkeypatch.setitem(peers.BY_NAME, "ghost", ghost)
    present, missing = peers.select(["fuser", "ghost"])
    assert [c.name for c in present] == ["fuser"]
    assert missing["ghost"].startswith("not installed (ModuleNotFoundError")


def test_an_unknown_contestant_is_refused():
    with pytest.raises(ValueError, match="unknown contestant 'nope'"):
        peers.select(["nope"])


def test_a_tool_failing_on_a_model_is_recorded_and_the_others_still_run(rng):
    model = make_model("""
        g (float[N,3] x) => (float[N,3] y) {
            y = Relu(x)
        }""", rng)

    def crash(m):
        raise RuntimeError("cannot handle this model\nsecond line")

    broken = peers.Contestant("broken", "onnx-fuser", "fuser", "raises", crash)
    entries, outputs, copy_s = measure.time_optimizations(
        model, [broken, peers.BY_NAME["fuser"]], runs=2, say=lambda text: None)
    assert entries["broken"].error == "RuntimeError: cannot handle this model"
    assert entries["broken"].seconds == [] and "broken" not in outputs
    assert len(entries["fuser"].seconds) == 2 and copy_s >= 0
    assert [n.op_type for n in outputs["fuser"].graph.node] == ["Relu"]


def test_file_to_file_of_each_contestant_writes_its_output(tmp_path, rng):
    from fuser import ir as graph_io

    model = make_model("""
        g (float[N,3,8,8] x) => (float[N,4,8,8] y) {
            c = Conv<pads=[1,1,1,1]>(x, W)
            y = BatchNormalization(c, s, b, mean, var)
        }""", rng, W=(4, 3, 3, 3), s=(4,), b=(4,), mean=(4,), var=(4,))
    source = tmp_path / "m.onnx"
    graph_io.save(model, source)
    present, _ = peers.select()
    for contestant in present:
        target = tmp_path / f"m.{contestant.name}.onnx"
        contestant.file_to_file(source, target)
        assert graph_io.load(target).graph.node, contestant.name
    assert graph_io.op_histogram(graph_io.load(tmp_path / "m.fuser.onnx")) == {"Conv": 1}


def test_results_of_an_older_run_without_file_times_still_render(tmp_path):
    import json

    data = json.loads((results.HERE / "results.json").read_text())
    for model in data["models"]:  # as a run before file-to-file times wrote them
        for entry in model["entries"].values():
            entry.pop("file_seconds", None)
            entry.pop("file_error", None)
    results.write(data, tmp_path)
    text = (tmp_path / "RESULTS.md").read_text()
    assert "## Optimization wall time" in text and "## File to file" not in text

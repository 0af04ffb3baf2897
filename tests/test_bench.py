"""Timing harness: statistics, bootstrap speed-ups, runners, interleaved benchmark.

Never asserts absolute speed: only structure, counts and invariants.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from fuser.errors import FuserError
from fuser.runtime import bench, machine
from fuser.runtime import sessions as runtime
from fuser.runtime.bench import BenchResult, Stats, TimingResult
from fuser.runtime.providers import CPU, CUDA, ProviderChoice
from tests.helpers import make_model

EPS = 1e-5
FAST = {"warmup": 1, "rounds": 5, "time_budget": None, "threads": 1}


@pytest.fixture
def conv_bn(rng):
    return make_model(f"""
        g (float[N,3,8,8] x) => (float[N,4,8,8] y) {{
            c = Conv<pads=[1,1,1,1]>(x, W, B)
            y = BatchNormalization<epsilon={EPS}>(c, s, b, mean, var)
        }}""", rng, W=(4, 3, 3, 3), B=(4,), s=(4,), b=(4,), mean=(4,), var=(4,))


def fold_by_hand(model, rng):
    """The same network with BatchNormalization folded into the Conv (float64, cast back)."""
    init = {t.name: onnx.numpy_helper.to_array(t).astype(np.float64)
            for t in model.graph.initializer}
    scale = init["s"] / np.sqrt(init["var"] + EPS)
    weight = (init["W"] * scale[:, None, None, None]).astype(np.float32)
    bias = ((init["B"] - init["mean"]) * scale + init["b"]).astype(np.float32)
    return make_model("""
        g (float[N,3,8,8] x) => (float[N,4,8,8] y) {
            y = Conv<pads=[1,1,1,1]>(x, W, B)
        }""", rng, W=weight, B=bias)


@pytest.fixture
def pair(conv_bn, rng):
    return {"conv+bn": conv_bn, "folded": fold_by_hand(conv_bn, rng)}


def feeds_for(model, batches=(1, 2)):
    rng = np.random.default_rng(1)
    return {b: runtime.random_feeds(model, rng, dynamic=b) for b in batches}


def test_hand_fold_is_the_same_network(pair):
    feeds = feeds_for(pair["conv+bn"], (2,))[2]
    want = runtime.run(pair["conv+bn"], feeds)["y"]
    got = runtime.run(pair["folded"], feeds)["y"]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_stats_on_a_known_list():
    stats = Stats.from_seconds([0.004, 0.001, 0.003, 0.002, 0.005])
    assert stats.runs == 5
    assert stats.median_ms == pytest.approx(3.0)
    assert stats.min_ms == pytest.approx(1.0)
    assert stats.mean_ms == pytest.approx(3.0)
    assert stats.iqr_ms == pytest.approx(2.0)  # 4 - 2 (linear interpolation)
    assert stats.p90_ms == pytest.approx(4.6)
    with pytest.raises(ValueError):
        Stats.from_seconds([])


def test_bootstrap_interval_contains_point_and_is_ordered():
    rng = np.random.default_rng(3)
    ref = 2.0 + rng.exponential(0.2, 40)
    cand = 1.0 + rng.exponential(0.1, 40)
    point, (lo, hi) = bench.bootstrap_speedup(ref, cand)
    assert point == pytest.approx(np.median(ref) / np.median(cand))
    assert lo <= point <= hi
    assert lo < hi
    assert bench.bootstrap_speedup(ref, cand) == (point, (lo, hi))  # seeded


def test_bootstrap_of_identical_rounds_is_exactly_one():
    times = [0.003, 0.001, 0.002]
    assert bench.bootstrap_speedup(times, times) == (1.0, (1.0, 1.0))
    assert bench.bootstrap_speedup([2.0], [1.0]) == (2.0, (2.0, 2.0))
    with pytest.raises(ValueError):
        bench.bootstrap_speedup([1.0, 2.0], [1.0])


def test_benchmark_two_models_two_levels_two_batches(pair, capsys):
    result = bench.benchmark(pair, feeds_for(pair["conv+bn"]), provider="cpu", **FAST)
    assert isinstance(result, BenchResult)
    assert len(result.timings) == 2 * 2 * 2  # models x levels x batches
    keys = [(t.level, t.batch, t.model) for t in result.timings]
    assert keys == [(level, batch, model) for level in ("disable", "all") for batch in (1, 2)
                    for model in ("conv+bn", "folded")]
    for timing in result.timings:
        assert timing.stats.runs == 5
        assert timing.stats.median_ms > 0 and timing.stats.min_ms > 0
        assert timing.provider == "cpu" and timing.threads == 1
        assert timing.reference == "conv+bn"
        lo, hi = timing.speedup_ci
        assert lo <= timing.speedup <= hi
        if timing.model == "conv+bn":
            assert timing.speedup == 1.0 and timing.speedup_ci == (1.0, 1.0)
    assert result.provider.used == "cpu" and result.threads == 1
    assert result.cpu and result.onnxruntime
    assert capsys.readouterr().err == ""  # stderr is no TTY: no progress line


def test_reference_names_the_baseline(pair):
    result = bench.benchmark(pair, feeds_for(pair["conv+bn"], (1,)), reference="folded",
                             levels=("all",), provider="cpu", **FAST)
    ref = [t for t in result.timings if t.model == "folded"]
    assert [t.speedup for t in ref] == [1.0]
    assert all(t.reference == "folded" for t in result.timings)


def test_io_binding_on_cpu_gives_plain_outputs(pair):
    model = pair["conv+bn"]
    feeds = feeds_for(model, (2,))[2]
    sess = runtime.session(model, level="all", threads=1)
    plain = bench.make_runner(sess, feeds, "plain")
    bound = bench.make_runner(sess, feeds, "binding", "cpu")
    assert isinstance(bound, bench.IOBindingRunner)
    want = plain.outputs()
    bound()
    got = bound.outputs()
    assert got.keys() == want.keys() == {"y"}
    np.testing.assert_array_equal(got["y"], want["y"])
    # pre-allocated outputs at fixed addresses (the CUDA-graph path), also on the CPU
    fixed = bench.make_runner(sess, feeds, "binding", "cpu", outputs_like=want)
    fixed()
    fixed()
    np.testing.assert_array_equal(fixed.outputs()["y"], want["y"])


def test_benchmark_with_io_binding_on_cpu(pair):
    result = bench.benchmark(pair, feeds_for(pair["conv+bn"], (2,)), levels=("disable",),
                             provider="cpu", io_binding=True, **FAST)
    assert len(result.timings) == 2
    assert all(t.stats.median_ms > 0 for t in result.timings)


def test_time_budget_stops_after_min_rounds(pair):
    result = bench.benchmark(pair, feeds_for(pair["conv+bn"], (1,)), levels=("disable",),
                             provider="cpu", warmup=0, rounds=1000, time_budget=0.0, threads=1)
    assert {t.stats.runs for t in result.timings} == {bench.MIN_ROUNDS}


def test_rounds_are_interleaved_and_rotated():
    order = []

    def runner(name):
        return lambda: order.append(name)

    runners = {n: runner(n) for n in "abc"}
    times = bench._time_rounds(runners, 3, None, bench.Progress(False), "t")
    assert order == list("abc" "bca" "cab")
    assert {n: len(v) for n, v in times.items()} == {"a": 3, "b": 3, "c": 3}


def test_progress_only_when_asked_or_on_a_tty(pair, capsys):
    feeds = feeds_for(pair["conv+bn"], (1,))
    kwargs = dict(levels=("disable",), provider="cpu", **FAST)
    bench.benchmark(pair, feeds, progress=None, **kwargs)
    bench.benchmark(pair, feeds, progress=False, **kwargs)
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""
    bench.benchmark(pair, feeds, progress=True, **kwargs)
    err = capsys.readouterr().err
    # rich's status line, rewritten in place, erased at the end (cursor up, clear line)
    assert "round 5/5" in err and err.endswith("\x1b[1A\x1b[2K")


def test_to_dict_is_json_and_to_text_is_a_table(pair):
    result = bench.benchmark(pair, feeds_for(pair["conv+bn"], (1,)), levels=("all",),
                             provider="cpu", **FAST)
    data = json.loads(json.dumps(result.to_dict()))
    assert data["provider"]["used"] == "cpu"
    assert data["timings"][1]["speedup_ci"][0] <= data["timings"][1]["speedup_ci"][1]
    assert data["timings"][0]["stats"]["runs"] == 5
    text = result.to_text()
    lines = text.splitlines()
    assert "median ms" in lines[1] and "speed-up" in lines[1]
    assert "1.00 (reference)" in lines[2] and lines[2].startswith("conv+bn")
    assert lines[3].startswith("folded") and "[" in lines[3]


def test_text_table_from_fixed_numbers():
    stats = Stats(1.5, 2.0, 1.0, 1.6, 0.5, 10)
    choice = ProviderChoice("auto", "cpu", [CPU], [{}], "CUDA not in this onnxruntime build")
    result = BenchResult([TimingResult("a", "all", 8, "cpu", 2, stats, 1.0, (1.0, 1.0), "a"),
                          TimingResult("b", "all", 8, "cpu", 2, stats, 1.25, (1.1, 1.4), "a")],
                         choice, 2, "Test CPU", "1.0")
    lines = result.to_text().splitlines()
    assert lines[3].split() == ["b", "all", "8", "1.500", "2.000", "1.25", "[1.10,", "1.40]"]


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"reference": "nope"}, "reference 'nope'"),
    ({"levels": ("max",)}, "unknown level 'max'"),
    ({"provider": "tpu"}, "unknown provider 'tpu'"),
    ({"rounds": 0}, "rounds >= 1"),
    ({"threads": 0}, "threads must be at least 1"),
    ({"provider": "cpu", "cuda_graph": True}, "CUDA graphs need the CUDA provider"),
])
def test_user_errors(pair, kwargs, match):
    with pytest.raises(FuserError, match=match):
        bench.benchmark(pair, feeds_for(pair["conv+bn"], (1,)), **{**FAST, **kwargs})


def test_missing_input_is_a_user_error(pair):
    with pytest.raises(FuserError, match=r"input 'image': the inputs give \[1, 3, 8, 8\] "
                                         r"float32, conv\+bn has no such input \(its inputs: x\)"):
        bench.benchmark(pair, {1: {"image": np.zeros((1, 3, 8, 8), np.float32)}},
                        provider="cpu", **FAST)


def test_cuda_choice_with_cpu_fallback_ignores_cuda_graphs(pair, caplog):
    choice = ProviderChoice("auto", "cpu", [CPU], [{}], "CUDA available but did not load")
    result = bench.benchmark(pair, feeds_for(pair["conv+bn"], (1,)), levels=("disable",),
                             provider=choice, cuda_graph=True, **FAST)
    assert result.provider.used == "cpu" and len(result.timings) == 2
    assert "CUDA graphs ignored" in caplog.text
    assert CUDA not in result.provider.providers


def test_sessions_with_several_threads_do_not_spin(monkeypatch, rng):
    """Spinning idle sessions distorted A/A comparisons by up to 1.65x with 2 threads."""
    from fuser.runtime import sessions as runtime

    seen = []
    real = runtime.session

    def spy(model, **kwargs):
        if kwargs.get("label") != machine.LABEL:  # the busy check's own session
            seen.append((kwargs.get("threads"), kwargs.get("config")))
        return real(model, **kwargs)

    monkeypatch.setattr(runtime, "session", spy)
    model = make_model("g (float[N,4] x) => (float[N,4] y) { y = Relu(x) }", rng)
    feeds = {1: {"x": np.ones((1, 4), np.float32)}}
    for threads in (1, 2):
        bench.benchmark({"a": model}, feeds, provider="cpu", threads=threads, warmup=1,
                        rounds=2, time_budget=None, levels=("disable",))
    assert seen == [(1, None), (2, bench.NO_SPINNING)]


def test_progress_in_a_log_is_a_plain_line_every_few_seconds(capsys, monkeypatch):
    """Not on a terminal (a log, CI): no line for short work, then one plain line (no
    carriage return) per ``LOG_EVERY`` seconds; ``-q`` (logging above warnings) silences it."""
    import logging

    from fuser.runtime import runners

    clock = [100.0]
    monkeypatch.setattr(runners.time, "monotonic", lambda: clock[0])
    bar = runners.Progress(None)  # pytest's stderr is not a terminal
    bar.show("step 1")
    clock[0] += 4.9
    bar.show("step 2")
    assert capsys.readouterr().err == ""
    clock[0] += 0.2
    bar.show("step 3")
    clock[0] += 1.0
    bar.show("step 4")
    clock[0] += 5.0
    bar.show("step 5")
    bar.clear()
    assert capsys.readouterr().err == "step 3\nstep 5\n"
    logger = logging.getLogger("fuser")
    level = logger.level
    logger.setLevel(logging.ERROR)  # what -q does (setLevel clears logging's cache)
    try:
        quiet = runners.Progress(None)
        clock[0] += 60
        quiet.show("step 6")
    finally:
        logger.setLevel(level)
    assert capsys.readouterr().err == ""
    assert runners.Progress(False)._log is False


def test_on_a_terminal_the_progress_is_rich_status_line_rewritten_in_place(monkeypatch):
    """On a terminal (a pseudo-terminal here) the progress is rich's status line: the text
    with a spinner, rewritten in place (carriage returns, no new lines), gone on clear."""
    import os
    import select
    import time

    from fuser.runtime import runners

    master, slave = os.openpty()
    terminal = os.fdopen(slave, "w")
    monkeypatch.setattr(runners.sys, "stderr", terminal)
    try:
        bar = runners.Progress(None)
        assert bar.enabled and not bar._log
        bar.show("low-rank: timing layer 1")
        time.sleep(0.25)
        bar.show("low-rank: timing layer 2")
        time.sleep(0.25)
        bar.clear()
        terminal.flush()
        written = b""
        while True:  # what the terminal received
            ready, _, _ = select.select([master], [], [], 0.2)
            if not ready:
                break
            written += os.read(master, 65536)
    finally:
        terminal.close()
        os.close(master)
    text = written.decode(errors="replace")
    assert "timing layer 1" in text and "timing layer 2" in text and "\r" in text
    assert bar._status is None

"""The end-to-end speed check of ``optimize`` (issue 24): the delivered model against the
original, the bisection of the passes that cost time, their rollback, ``allow_slower``.

Nothing here times a model for real: the timer is a cost model of the graph (a Conv that
fold-pad-into-conv took off onnxruntime's flattened path costs more), so the verdicts are
deterministic; benchmarks/pad_fold.py measures the real thing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np
import onnx
import pytest

import fuser
from fuser import ir as graph_io
from fuser.cli.main import main
from fuser.report import SpeedCheck, SpeedRatio
from fuser.report.timing import BenchResult, ProviderChoice
from fuser.runtime import bench
from fuser.settings import Timing
from tests.helpers import assert_same_outputs, check, make_model, ops

#: A 1-D signal [N, 8, 16, 1] through a Pad into a 5 x 1 Conv (the flattened form), with an
#: Identity that eliminate-identity removes.
MODEL = """
    g (float[N,8,16,1] x) => (float[N,8,16,1] y) {
        i = Identity(x)
        z = Pad(i, p)
        y = Conv<kernel_shape=[5,1]>(z, W)
    }"""
FOLD_ANYWAY = {"fold-pad-into-conv": {"keep_fast_path": False}}


@pytest.fixture
def model(rng):
    return make_model(MODEL, rng, W=(8, 8, 5, 1),
                      p=np.array([0, 0, 2, 0, 0, 0, 2, 0], np.int64))


def cost_ms(model: onnx.ModelProto) -> float:
    """1 ms, 0.1 ms per Identity, and 1 ms per Conv with pads (off the flattened path)."""
    padded = sum(1 for n in model.graph.node if n.op_type == "Conv" and any(
        a.name == "pads" and any(a.ints) for a in n.attribute))
    identities = sum(1 for n in model.graph.node if n.op_type == "Identity")
    return 1.0 + 0.1 * identities + 1.0 * padded


@dataclasses.dataclass(frozen=True)
class CostTiming(Timing):
    """Times a model by ``cost_ms``, 40 rounds with 0.5 % seeded noise; ``flukes`` makes the
    first that many delivered timings 30 % slow (a busy machine)."""

    flukes: int = 0
    calls: list = dataclasses.field(default_factory=list)

    def run(self, models: Mapping[str, onnx.ModelProto], feeds: Mapping[int, Mapping],
            levels: Sequence[str] | None = None) -> BenchResult:
        self.calls.append(tuple(levels or self.levels))
        fluke = 1.3 if len(self.calls) <= self.flukes else 1.0
        rng = np.random.default_rng(len(self.calls))
        results = []
        for level in levels or self.levels:
            for batch in feeds:
                times = {name: list(cost_ms(model) / 1e3 * (1 + 0.005 * rng.standard_normal(40))
                                    * (fluke if name != "original" else 1.0))
                         for name, model in models.items()}
                results += bench._results(times, "original", level, batch, CHOICE, 2,
                                          self.resolve)
        return BenchResult(results, CHOICE, 2, "test CPU", "test")


CHOICE = ProviderChoice("cpu", "cpu", ["CPUExecutionProvider"])


def test_a_slower_pass_is_found_and_rolled_back(model, rng):
    timing = CostTiming(batches=(1, 4))
    out, report = fuser.optimize(model, options=FOLD_ANYWAY, timing=timing)
    speed = report.speed
    assert speed.rolled_back == ["fold-pad-into-conv"] and speed.probes >= 2
    assert [r.verdict() for r in speed.before_rollback] == ["slower", "slower"]
    assert [r.batch for r in speed.ratios] == [1, 4] and not speed.slower
    assert all(r.speedup > 1.05 for r in speed.ratios)  # the Identity's 0.1 ms is kept
    assert ops(out) == {"Pad": 1, "Conv": 1} and report.rewrites("eliminate-identity") == 1
    assert report.rewrites("fold-pad-into-conv") == 0 and report.passed
    assert "(after the speed rollback)" in report.validation.inputs
    check(out)
    assert_same_outputs(model, out, rng)
    assert "rolled back for speed: fold-pad-into-conv" in report.to_text()
    assert report.timings.to_dict()["timings"][0]["model"] == "original"
    assert SpeedCheck.from_dict(speed.to_dict()) == speed


def test_allow_slower_keeps_the_slower_result(model):
    timing = CostTiming(allow_slower=True)
    out, report = fuser.optimize(model, options=FOLD_ANYWAY, timing=timing)
    assert report.speed.slower and report.speed.allow_slower and not report.speed.rolled_back
    assert "Pad" not in ops(out) and "kept (allow_slower)" in report.speed.note
    assert timing.calls == [("disable", "all")]  # no bisection


def test_a_result_that_is_not_slower_is_timed_once(model):
    timing = CostTiming()
    out, report = fuser.optimize(model, timing=timing)  # the rule keeps the Pad
    assert not report.speed.slower and report.speed.probes == 0
    assert ops(out) == {"Pad": 1, "Conv": 1} and timing.calls == [("disable", "all")]
    assert [r.level for r in report.timings.timings] == ["disable"] * 2 + ["all"] * 2


def test_a_slow_timing_not_confirmed_by_a_second_is_kept(model):
    timing = CostTiming(flukes=1)
    out, report = fuser.optimize(model, timing=timing)
    assert not report.speed.rolled_back and report.speed.probes == 1
    assert "a second found it not slower" in report.speed.note
    assert ops(out) == {"Pad": 1, "Conv": 1}


def test_without_timing_the_report_says_the_speed_is_unchecked(model):
    _, report = fuser.optimize(model)
    assert report.speed is None and report.timings is None
    assert "speed: not timed against the original; only the passes' own rules guard it" in \
        report.to_text()


def test_a_fixed_batch_is_timed_once(rng):
    fixed = make_model(MODEL.replace("float[N,", "float[1,"), rng, W=(8, 8, 5, 1),
                       p=np.array([0, 0, 2, 0, 0, 0, 2, 0], np.int64))
    _, report = fuser.optimize(fixed, timing=CostTiming(batches=(1, 64)))
    assert [r.batch for r in report.speed.ratios] == [1]


@pytest.mark.parametrize(("ratio", "ci", "resolved", "verdict"), [
    (0.90, (0.88, 0.92), True, "slower"),
    (0.98, (0.97, 0.99), True, "same"),  # resolved, within the tolerance
    (0.90, (0.80, 1.02), False, "unresolved"),  # the interval contains 1
    (1.10, (1.05, 1.15), True, "faster"),
    (0.96, (0.95, 0.97), False, "slower"),  # resolved or not: the interval is below 1
])
def test_verdicts(ratio, ci, resolved, verdict):
    assert SpeedRatio(1, ratio, ci, 1.0, 1.0 / ratio, 40, resolved).verdict() == verdict


def test_resolving_stops_once_the_interval_is_narrow():
    steady = {"original": [1e-3] * 60, "optimized": [1e-3] * 60}
    noisy = {"original": list(np.random.default_rng(0).uniform(5e-4, 2e-3, 60)),
             "optimized": list(np.random.default_rng(1).uniform(5e-4, 2e-3, 60))}
    assert bench._resolved(steady, "original", 0.05)
    assert not bench._resolved(noisy, "original", 0.05)
    assert not bench._resolved(steady, None, 0.05)


def test_bench_marks_each_speedup_resolved_or_not(model):
    folded = graph_io.load(model)
    result = bench.benchmark({"a": model, "b": folded}, {1: {"x": np.zeros((1, 8, 16, 1),
                                                                             np.float32)}},
                             levels=("all",), provider="cpu", warmup=1, rounds=40,
                             time_budget=0.5, resolve=0.05)
    a, b = result.timings
    assert a.resolved is None and isinstance(b.resolved, bool)
    assert b.resolved == (b.speedup_ci[1] - b.speedup_ci[0] <= 0.05)


def test_cli_bad_bench_batch_is_refused(tmp_path, model, capsys):
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    code = main(["optimize", str(path), "-o", str(tmp_path / "o.onnx"), "--bench-batch", "0"])
    assert code == 2 and not (tmp_path / "o.onnx").exists()
    assert "--bench-batch '0': batch sizes must be >= 1" in capsys.readouterr().err


def test_cli_last_line_leads_with_the_speed_against_the_original(tmp_path, model, capsys):
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    code = main(["optimize", str(path), "-o", str(tmp_path / "o.onnx"), "--level", "all",
                 "--time-budget", "0.2", "--allow-slower"])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert code == 0 and last.startswith("PASSED | ")
    assert "against the original (ORT_ENABLE_ALL, cpu) | " in last


def test_a_batch_size_the_model_cannot_take_is_said_not_timed(rng):
    """A model that fixes its batch at 1 timed with batch sizes 1 and 8: batch 8 cannot be
    timed, and the report says so instead of dropping it silently."""
    fixed = make_model("""
        g (float[1,3,8,8] x) => (float[1,4,8,8] y) {
            c = Conv<pads=[1,1,1,1]>(x, W)
            y = BatchNormalization(c, s, b, mean, var)
        }""", rng, W=(4, 3, 3, 3), s=(4,), b=(4,), mean=(4,), var=(4,))
    _, report = fuser.optimize(fixed, timing=fuser.Timing(
        levels=("all",), batches=(1, 8), rounds=5, warmup=1, time_budget=0.2, threads=1))
    assert [r.batch for r in report.speed.ratios] == [1]
    assert "batch 8 not timed: the model fixes its batch at 1, timed at 1" in report.notes

"""Timing of ONNX models on onnxruntime: interleaved rounds, medians, bootstrap speed-ups.

For each optimization level and batch size, one session per model (same threads, same
provider) is warmed up, then timed in interleaved rounds: each round runs every model once,
in an order rotated each round so that cache and frequency effects do not favour one model.
Clock: ``time.perf_counter``. Speed-up = reference median / model median (> 1: faster), with
a paired bootstrap 95 % interval over rounds.

On CUDA, inputs and outputs are bound on the device (IO binding) and the clock stops after
``synchronize_outputs()``, so host<->device copies stay out of the timed region. Optional
CUDA graphs (capture on an early warm-up run, replay afterwards) need IO binding and output
buffers at fixed addresses.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import onnx

from fuser import graph as graph_io
from fuser import inputs as inputs_io
from fuser import runtime
from fuser.errors import FuserError
from fuser.providers import CUDA, ProviderChoice, cpu_model, physical_cores, select_provider

log = logging.getLogger(__name__)

MIN_ROUNDS = 10
CUDA_MIN_WARMUP = 10  # cuDNN searches convolution algorithms on the first runs
CUDA_GRAPH_MIN_WARMUP = 2  # the first runs allocate and capture; replays come after
RESAMPLES = 1000


@dataclass
class Stats:
    """Summary of repeated timings, in milliseconds."""

    median_ms: float
    p90_ms: float
    min_ms: float
    mean_ms: float
    iqr_ms: float
    runs: int

    @classmethod
    def from_seconds(cls, seconds: Sequence[float]) -> Stats:
        values = np.asarray(seconds, dtype=np.float64) * 1e3
        if values.size == 0:
            raise ValueError("no timings to summarize")
        q25, median, q75, p90 = np.percentile(values, [25, 50, 75, 90])
        return cls(float(median), float(p90), float(values.min()), float(values.mean()),
                   float(q75 - q25), int(values.size))


@dataclass
class TimingResult:
    """One model at one level and batch size; speed-up against ``reference``."""

    model: str
    level: str
    batch: int
    provider: str
    threads: int
    stats: Stats
    speedup: float | None = None
    speedup_ci: tuple[float, float] | None = None
    reference: str | None = None


@dataclass
class BenchResult:
    timings: list[TimingResult]
    provider: ProviderChoice
    threads: int
    cpu: str
    onnxruntime: str

    def to_dict(self) -> dict:
        """Plain types only (JSON-ready); tuples become lists."""
        timings = []
        for timing in self.timings:
            item = asdict(timing)
            if timing.speedup_ci is not None:
                item["speedup_ci"] = [float(v) for v in timing.speedup_ci]
            timings.append(item)
        return {"timings": timings, "provider": asdict(self.provider), "threads": self.threads,
                "cpu": self.cpu, "onnxruntime": self.onnxruntime}

    def to_text(self) -> str:
        """A table: model, level, batch, median ms, p90 ms, speed-up [95 % CI]."""
        lines = [f"onnxruntime {self.onnxruntime} on {self.provider.used} "
                 f"({self.provider.reason}); {self.threads} threads; CPU {self.cpu}"]
        rows = [("model", "level", "batch", "median ms", "p90 ms", "speed-up [95% CI]")]
        for t in self.timings:
            if t.speedup is None:
                speed = "-"
            elif t.model == t.reference:
                speed = "1.00 (reference)"
            else:
                ci = t.speedup_ci or (t.speedup, t.speedup)
                speed = f"{t.speedup:.2f} [{ci[0]:.2f}, {ci[1]:.2f}]"
            rows.append((t.model, t.level, str(t.batch), f"{t.stats.median_ms:.3f}",
                         f"{t.stats.p90_ms:.3f}", speed))
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            cells = [cell.ljust(w) if i < 2 else cell.rjust(w)
                     for i, (cell, w) in enumerate(zip(row, widths, strict=True))]
            lines.append("  ".join(cells).rstrip())
        return "\n".join(lines)


def bootstrap_speedup(reference_s: Sequence[float], candidate_s: Sequence[float], *,
                      resamples: int = RESAMPLES, confidence: float = 0.95,
                      seed: int = 0) -> tuple[float, tuple[float, float]]:
    """Speed-up median(reference) / median(candidate) and its paired bootstrap interval.

    Rounds are resampled as pairs (the same round indices for both models). The percentile
    interval is widened, if needed, to contain the point estimate, which a percentile
    interval of a median can miss on few rounds.
    """
    ref = np.asarray(reference_s, dtype=np.float64)
    cand = np.asarray(candidate_s, dtype=np.float64)
    if ref.shape != cand.shape or ref.ndim != 1 or ref.size == 0:
        raise ValueError("bootstrap needs two equally long, non-empty lists of paired rounds")
    point = float(np.median(ref) / np.median(cand))
    if ref.size == 1:
        return point, (point, point)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, ref.size, size=(resamples, ref.size))
    ratios = np.median(ref[idx], axis=1) / np.median(cand[idx], axis=1)
    tail = (1.0 - confidence) / 2 * 100
    lo, hi = np.percentile(ratios, [tail, 100 - tail])
    return point, (min(float(lo), point), max(float(hi), point))


class PlainRunner:
    """``sess.run(None, feeds)``: on CUDA this times host<->device copies too."""

    def __init__(self, sess, feeds: Mapping[str, np.ndarray]):
        self._sess = sess
        self._feeds = {i.name: feeds[i.name] for i in sess.get_inputs()}
        self._names = [o.name for o in sess.get_outputs()]

    def __call__(self) -> None:
        self._sess.run(None, self._feeds)

    def outputs(self) -> dict[str, np.ndarray]:
        return dict(zip(self._names, self._sess.run(self._names, self._feeds), strict=True))


class IOBindingRunner:
    """Inputs copied to ``device`` once; each call runs and waits for the outputs on device.

    ``outputs_like`` (name -> array of the output's shape and dtype) pre-allocates output
    buffers at fixed addresses, which CUDA graphs need; otherwise onnxruntime allocates them.
    """

    def __init__(self, sess, feeds: Mapping[str, np.ndarray], device: str = "cpu", *,
                 outputs_like: Mapping[str, np.ndarray] | None = None):
        import onnxruntime as ort

        self._sess = sess
        self._binding = sess.io_binding()
        self._names = [o.name for o in sess.get_outputs()]
        self._values = []  # keep bound OrtValues alive as long as the binding
        for inp in sess.get_inputs():
            array = np.ascontiguousarray(feeds[inp.name])
            value = ort.OrtValue.ortvalue_from_numpy(array, device, 0)
            self._values.append(value)
            self._binding.bind_ortvalue_input(inp.name, value)
        for name in self._names:
            if outputs_like is None:
                self._binding.bind_output(name, device)
            else:
                like = outputs_like[name]
                value = ort.OrtValue.ortvalue_from_shape_and_type(list(like.shape), like.dtype,
                                                                  device, 0)
                self._values.append(value)
                self._binding.bind_ortvalue_output(name, value)
        self._binding.synchronize_inputs()
        self._ran = False

    def __call__(self) -> None:
        self._sess.run_with_iobinding(self._binding)
        self._binding.synchronize_outputs()
        self._ran = True

    def outputs(self) -> dict[str, np.ndarray]:
        """The last run's outputs, copied to the host (runs once if never run)."""
        if not self._ran:
            self()
        return dict(zip(self._names, self._binding.copy_outputs_to_cpu(), strict=True))


def runner_kind(choice: ProviderChoice, *, io_binding: bool | None = None,
                cuda_graph: bool = False) -> str:
    """"binding" on CUDA, with CUDA graphs or when asked; "plain" otherwise."""
    if choice.used == "cuda" or cuda_graph:
        return "binding"
    return "binding" if io_binding else "plain"


def make_runner(sess, feeds: Mapping[str, np.ndarray], kind: str, device: str = "cpu", *,
                outputs_like: Mapping[str, np.ndarray] | None = None):
    """A callable that runs ``sess`` once on ``feeds`` (see PlainRunner, IOBindingRunner)."""
    if kind == "plain":
        return PlainRunner(sess, feeds)
    if kind == "binding":
        return IOBindingRunner(sess, feeds, device, outputs_like=outputs_like)
    raise ValueError(f"unknown runner kind {kind!r}")


class _Progress:
    """One self-overwriting line on stderr, only when enabled (default: stderr is a TTY)."""

    def __init__(self, enabled: bool | None):
        self._stream = sys.stderr
        isatty = getattr(self._stream, "isatty", None)
        self.enabled = bool(isatty and isatty()) if enabled is None else enabled
        self._shown = False

    def show(self, text: str) -> None:
        if self.enabled:
            self._stream.write(f"\r\x1b[K{text}")
            self._stream.flush()
            self._shown = True

    def clear(self) -> None:
        if self.enabled and self._shown:
            self._stream.write("\r\x1b[K")
            self._stream.flush()
            self._shown = False


def _check_args(models, feeds_by_batch, reference, levels, threads, warmup, rounds) -> str:
    if not models:
        raise FuserError("nothing to time: no models given")
    if not feeds_by_batch:
        raise FuserError("nothing to time: no inputs (feeds) given")
    reference = next(iter(models)) if reference is None else reference
    if reference not in models:
        raise FuserError(f"reference {reference!r} is not one of the models: {', '.join(models)}")
    for level in levels:
        if level not in runtime.LEVELS:
            raise FuserError(f"unknown level {level!r}: use one of {', '.join(runtime.LEVELS)}")
    if threads is not None and threads < 1:
        raise FuserError(f"threads must be at least 1, got {threads}")
    if rounds < 1 or warmup < 0:
        raise FuserError(f"need rounds >= 1 and warmup >= 0, got {rounds} and {warmup}")
    return reference


def _choose(models, reference, provider, cuda_graph) -> ProviderChoice:
    if isinstance(provider, ProviderChoice):
        choice = provider
    else:
        if provider == "cpu" and cuda_graph:
            raise FuserError("CUDA graphs need the CUDA provider, not --provider cpu")
        choice = select_provider(models[reference], provider, cuda_graph=cuda_graph)
    if choice.used == "cuda" and cuda_graph:
        options = [dict(o) for o in choice.provider_options] or [{}, {}]
        options[0]["enable_cuda_graph"] = "1"
        choice = ProviderChoice(choice.requested, choice.used, list(choice.providers), options,
                                choice.reason)
    log.info("timing on %s: %s", choice.used, choice.reason)
    return choice


#: Idle sessions' worker threads spin after a run and steal the CPU from the session being
#: timed: with 2 threads, an A/A comparison of one model against itself gave "speed-ups" from
#: 0.60 to 1.65; without spinning, 0.98 to 1.01.
NO_SPINNING = {"session.intra_op.allow_spinning": "0"}


def _sessions(models, feeds, level, threads, choice, kind, cuda_graph) -> dict:
    runners = {}
    for index, (name, model) in enumerate(models.items()):
        # The first model is the user's reference: onnxruntime refusing it is bad input.
        sess = runtime.session(model, level=level, threads=threads,
                               providers=list(choice.providers),
                               provider_options=[dict(o) for o in choice.provider_options],
                               config=NO_SPINNING if threads > 1 else None,
                               label=name if index == 0 else None)
        if choice.used == "cuda" and sess.get_providers()[0] != CUDA:
            raise RuntimeError(f"CUDA loaded for the probe but not for model {name!r} "
                               f"(session providers: {sess.get_providers()})")
        outputs_like = runtime.run(model, {i.name: feeds[i.name] for i in sess.get_inputs()}) \
            if cuda_graph else None
        runners[name] = make_runner(sess, feeds, kind, choice.device, outputs_like=outputs_like)
    return runners


def _time_rounds(runners, rounds, time_budget, progress, label) -> dict[str, list[float]]:
    names = list(runners)
    times: dict[str, list[float]] = {name: [] for name in names}
    clock = time.perf_counter
    start = clock()
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            run = runners[name]
            t0 = clock()
            run()
            times[name].append(clock() - t0)
        progress.show(f"{label}: round {r + 1}/{rounds}")
        if time_budget is not None and r + 1 >= MIN_ROUNDS and clock() - start > time_budget:
            log.info("%s: time budget %.1f s reached after %d rounds", label, time_budget, r + 1)
            break
    return times


def benchmark(models: Mapping[str, graph_io.ModelLike],
              feeds_by_batch: Mapping[int, Mapping[str, np.ndarray]], *,
              reference: str | None = None, levels: Sequence[str] = ("disable", "all"),
              provider: str | ProviderChoice = "auto", threads: int | None = None,
              warmup: int = 5, rounds: int = 50, time_budget: float | None = 5.0,
              cuda_graph: bool = False, io_binding: bool | None = None,
              progress: bool | None = None) -> BenchResult:
    """Time ``models`` (name -> model or path, in order) at each level and batch size.

    ``feeds_by_batch`` maps a batch size to the inputs for it (name -> array). ``reference``
    (default: the first model) is the baseline of the speed-ups. ``threads`` defaults to the
    physical cores. ``time_budget`` (seconds of timed rounds per level and batch) stops early
    after at least ``MIN_ROUNDS`` rounds; ``None`` runs all ``rounds``. On CUDA, warm-up is
    at least ``CUDA_MIN_WARMUP`` and IO binding is always on; ``io_binding=True`` uses it on
    the CPU too. ``progress``: None shows a progress line only when stderr is a TTY.
    """
    reference = _check_args(models, feeds_by_batch, reference, levels, threads, warmup, rounds)
    models = {name: graph_io.load(model) for name, model in models.items()}  # paths too
    for feeds in feeds_by_batch.values():  # one line naming the input, not a traceback
        for name, model in models.items():
            inputs_io.require_matching_inputs(model, feeds, name, *(
                (models[reference], reference) if name != reference else ()))
    choice = _choose(models, reference, provider, cuda_graph)
    if cuda_graph and choice.used != "cuda":
        log.warning("CUDA graphs ignored: %s", choice.reason)
        cuda_graph = False
    threads = threads or physical_cores()
    kind = runner_kind(choice, io_binding=io_binding, cuda_graph=cuda_graph)
    if choice.used == "cuda":
        warmup = max(warmup, CUDA_MIN_WARMUP)
    if cuda_graph:
        warmup = max(warmup, CUDA_GRAPH_MIN_WARMUP)
    bar = _Progress(progress)
    timings: list[TimingResult] = []
    try:
        for level in levels:
            for batch, feeds in feeds_by_batch.items():
                label = f"bench level={level} batch={batch}"
                bar.show(f"{label}: creating sessions")
                runners = _sessions(models, feeds, level, threads, choice, kind, cuda_graph)
                bar.show(f"{label}: warming up")
                for _ in range(warmup):
                    for run in runners.values():
                        run()
                times = _time_rounds(runners, rounds, time_budget, bar, label)
                del runners
                timings.extend(_results(times, reference, level, int(batch), choice, threads))
    finally:
        bar.clear()
    import onnxruntime as ort

    return BenchResult(timings, choice, threads, cpu_model(), ort.__version__)


def _results(times, reference, level, batch, choice, threads) -> list[TimingResult]:
    out = []
    for name, seconds in times.items():
        if name == reference:
            speedup, ci = 1.0, (1.0, 1.0)
        else:
            speedup, ci = bootstrap_speedup(times[reference], seconds)
        out.append(TimingResult(name, level, batch, choice.used, threads,
                                Stats.from_seconds(seconds), speedup, ci, reference))
    return out

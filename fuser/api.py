"""The Python API: ``optimize`` a model with a pipeline of passes and get a report."""

from __future__ import annotations

import importlib.metadata
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import onnx

from fuser import graph as graph_io
from fuser.errors import FuserError
from fuser.manager import PassManager
from fuser.passes import DEFAULT_PIPELINE, REGISTRY, get_pass
from fuser.passes.base import Pass
from fuser.report import ModelStats, Report

_LIBRARIES = ("onnx", "onnx-graphsurgeon", "numpy", "protobuf", "onnxruntime",
              "onnxruntime-gpu")


def optimize(model: graph_io.ModelLike, passes: Sequence[str | Pass] | None = None, *,
             skip: Sequence[str] = (), options: Mapping[str, Mapping[str, object]] | None = None,
             max_steps: int = 4, check: bool = True, check_each: bool = False,
             dump_dir: str | Path | None = None) -> tuple[onnx.ModelProto, Report]:
    """Run a pipeline of passes on a model; return the optimized model and a report.

    Args:
        model: an ``onnx.ModelProto`` or a path (it is never modified).
        passes: pass names or instances, in order; default: the exact pipeline.
        skip: names to leave out of the pipeline.
        options: per-pass keyword options, e.g. ``{"fold-batchnorm": {"clone_shared": False}}``.
        max_steps: sweeps of the pipeline at most (it stops at the fixed point).
        check: run the ONNX checker on the result.
        check_each: run it after every pass (slower; names the pass that broke the graph).
        dump_dir: write the model after every pass that changed it.

    Raises:
        FuserError: bad input (unreadable model, unknown pass name, ...).
        PassError: a pass failed or produced an invalid graph.
    """
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    proto = graph_io.load(model)
    seconds["load"] = time.perf_counter() - start
    pipeline = _pipeline(passes, skip, options or {})

    start = time.perf_counter()
    shapes = graph_io.infer_shapes(proto)
    before = _stats(proto, shapes)
    graph = graph_io.to_graph(proto)
    graph_io.annotate(graph, shapes)
    seconds["import"] = time.perf_counter() - start

    start = time.perf_counter()
    records = PassManager(pipeline, max_steps=max_steps, check_each=check_each,
                          dump_dir=dump_dir, template=proto).run(graph)
    seconds["passes"] = time.perf_counter() - start

    start = time.perf_counter()
    result = graph_io.to_model(graph, template=proto)
    seconds["export"] = time.perf_counter() - start
    if check:
        start = time.perf_counter()
        graph_io.check(result)
        seconds["check"] = time.perf_counter() - start
    after = _stats(result, graph_io.infer_shapes(result))
    name = str(model) if not isinstance(model, onnx.ModelProto) else (proto.graph.name or "model")
    report = Report(model=name, pipeline=[p.name for p in pipeline], passes=records,
                    before=before, after=after, seconds=seconds, fuser_version=version(),
                    libraries=library_versions())
    return result, report


def _pipeline(passes: Sequence[str | Pass] | None, skip: Sequence[str],
              options: Mapping[str, Mapping[str, object]]) -> list[Pass]:
    names = list(DEFAULT_PIPELINE) if passes is None else list(passes)
    for name in list(skip) + list(options):
        if name not in REGISTRY:
            raise FuserError(f"unknown pass {name!r} (known: {', '.join(sorted(REGISTRY))})")
    pipeline = []
    for entry in names:
        if isinstance(entry, Pass):
            pipeline.append(entry)
        elif entry not in skip:
            try:
                pipeline.append(get_pass(entry, **options.get(entry, {})))
            except TypeError as exc:
                raise FuserError(f"bad options for pass {entry!r}: {exc}") from None
    if "inline-constants" not in skip and all(p.name != "inline-constants" for p in pipeline):
        # Weights held in Constant nodes must be constants before any pass can read them.
        pipeline.insert(0, get_pass("inline-constants"))
    return pipeline


def _stats(model: onnx.ModelProto, shapes: graph_io.Shapes) -> ModelStats:
    return ModelStats(nodes=len(model.graph.node), ops=graph_io.op_histogram(model),
                      params=graph_io.param_count(model),
                      macs=graph_io.mac_count(model, shapes))


def version() -> str:
    """fuser's version (from the installed distribution, or the source tree's)."""
    try:
        return importlib.metadata.version("onnx-fuser")
    except importlib.metadata.PackageNotFoundError:
        from fuser import __version__

        return __version__


def library_versions() -> dict[str, str]:
    """Versions of the libraries that shape fuser's results."""
    found = {}
    for name in _LIBRARIES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found

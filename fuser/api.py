"""The Python API: ``optimize`` a model with a pipeline of passes, validate the result, and
find the culprit when it does not validate."""

from __future__ import annotations

import collections
import dataclasses
import functools
import importlib.metadata
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import onnx

from fuser import ir as graph_io
from fuser.errors import FuserError
from fuser.passes import DEFAULT_PIPELINE, REGISTRY, get_pass
from fuser.passes.base import Pass
from fuser.passes.culprit import find_culprit, rollback
from fuser.passes.manager import PassManager
from fuser.report import ModelStats, PassRecord, Report
from fuser.runtime import inputs as inputs_io
from fuser.runtime import sessions as runtime
from fuser.runtime import validate as validation
from fuser.runtime.sessions import RuntimeRefusedError

logger = logging.getLogger(__name__)

_LIBRARIES = ("onnx", "onnx-graphsurgeon", "numpy", "protobuf", "onnxruntime",
              "onnxruntime-gpu")
ON_FAILURE = ("bisect", "rollback", "none")


@dataclasses.dataclass
class Validation:
    """How ``optimize`` validates its result (see ``fuser.runtime.validate.validate``)."""

    inputs: str | None = None
    input_shapes: Mapping[str, Sequence[int]] | None = None
    batch: int = 1
    count: int = 3
    seed: int = 0
    atol: validation.Tolerance = validation.EXACT_ATOL
    rtol: validation.Tolerance = validation.EXACT_RTOL


@dataclasses.dataclass
class LowRank:
    """The lossy low-rank stage of ``optimize`` (see ``fuser.search.search``).

    ``calibration``: feed dicts (unlabeled inputs; the last quarter is held out).
    ``labels``: labels of the held-out samples, to measure accuracy instead of agreement.
    """

    calibration: Sequence[Mapping]
    budget: str = "latency=0.5"
    max_accuracy_drop: float | None = 0.01
    labels: object = None
    reconstruction: str = "asymmetric"
    batch: int = 1
    threads: int = 1


def optimize(model: graph_io.ModelLike, passes: Sequence[str | Pass] | None = None, *,
             skip: Sequence[str] = (), options: Mapping[str, Mapping[str, object]] | None = None,
             max_steps: int = 4, check: bool = True, check_each: bool = False,
             dump_dir: str | Path | None = None, validate: bool | Validation = True,
             on_failure: str = "bisect", lossy: LowRank | None = None,
             input_shapes: Mapping[str, Sequence[int]] | None = None,
             static_shapes: bool = False) -> tuple[onnx.ModelProto, Report]:
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
        validate: compare the result with the original on onnxruntime (``True`` uses the
            defaults of ``Validation``; ``False`` skips it). When onnxruntime cannot run the
            original itself (a custom-domain op, a type its CPU lacks), validation is skipped
            and ``report.notes`` says so: ``report.validation`` is then ``None``.
        on_failure: when validation fails, ``"bisect"`` names the culprit pass in the report,
            ``"rollback"`` also re-runs without it (and any further culprit) and returns that
            model, ``"none"`` does neither. Check ``report.passed``.
        lossy: after the exact pipeline (validated with exact tolerances), compress with
            low-rank rewrites chosen from calibration data; the report's ``lowrank`` holds
            the per-layer table and the task-level check (top-1 agreement), never exact
            tolerances.
        input_shapes: fixed shapes of (some of) the inputs, ``{"x": (1, 1024)}``: the shapes
            that statistics (MACs), low-rank and validation see. The output keeps the input's
            interface (its symbolic dims stay symbolic; constant folding folds no value that
            depends on them, and the report names what only fixed shapes would fold).
        static_shapes: write the fixed shapes into the output (every input's symbolic first
            dim is the validation batch unless ``input_shapes`` says otherwise), so that
            folding sees through everything that depends on them, as onnxsim's
            ``--overwrite-input-shape`` does; the output then runs at those shapes only.

    Raises:
        FuserError: bad input (unreadable model, unknown pass name, dynamic input dims, ...).
        PassError: a pass failed or produced an invalid graph.
    """
    if on_failure not in ON_FAILURE:
        raise FuserError(f"on_failure must be one of {', '.join(ON_FAILURE)}")
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    proto = graph_io.load(model)
    seconds["load"] = time.perf_counter() - start
    name = str(model) if not isinstance(model, onnx.ModelProto) else (proto.graph.name or "model")
    graph_io.require_known_opsets(proto, name)
    pipeline = _pipeline(passes, skip, options or {})
    start = time.perf_counter()
    # An invalid input is refused here, named, rather than blamed on the result later.
    shapes = graph_io.check_and_infer(proto, name=name) if check else \
        graph_io.infer_shapes(proto)
    settings = validate if isinstance(validate, Validation) else Validation()
    fixed = _fixed_shapes(proto, input_shapes, static_shapes, settings)
    if (fixed and settings.input_shapes is None) or static_shapes:
        settings = dataclasses.replace(settings, input_shapes=fixed)
    batches = _batches(proto, settings) if validate else []  # bad shapes or data: fail fast
    analysis = graph_io.infer_shapes(proto, fixed) if fixed else shapes
    before = _stats(proto, analysis)
    notes = [*_subgraph_notes(proto), *_repeated_names_note(proto)]
    if static_shapes:
        notes.append(f"static shapes: the output's inputs are fixed at "
                     f"{inputs_io.describe_shapes(fixed)} (it runs at those shapes only)")
    seconds["analyze"] = time.perf_counter() - start

    # The reference runs first, so that its session is gone before the passes, and the
    # original, when fuser read it from a file, can go before the candidate's session (it is
    # read again if a culprit search needs it): the weights are never held three times.
    expected, unvalidated = None, None
    if validate:
        start = time.perf_counter()
        try:
            expected = validation.reference_outputs(proto, batches, name)
        except RuntimeRefusedError as exc:  # the input itself: a custom op, say
            unvalidated = f"not validated: onnxruntime cannot run {name} ({exc.reason})"
            logger.warning("%s", unvalidated)
        seconds["validate"] = time.perf_counter() - start
    held = [proto]
    del proto

    def original() -> onnx.ModelProto:
        if held[0] is None:
            held[0] = graph_io.load(model)
        return held[0]

    def run(steps: Sequence[Pass], limit: int | None = None,
            timed: bool = False) -> tuple[onnx.ModelProto, list[PassRecord]]:
        begin = time.perf_counter()
        source = original()
        graph = graph_io.to_graph(source)
        if static_shapes:
            graph_io.fix_graph_shapes(graph, fixed, analysis)
        graph_io.annotate(graph, analysis if static_shapes else shapes)
        records = PassManager(steps, max_steps=max_steps, check_each=check_each,
                              dump_dir=dump_dir if timed else None, template=source,
                              max_applications=limit).run(graph)
        middle = time.perf_counter()
        result = graph_io.to_model(graph, template=source, free_arrays=True)  # graph dropped
        if timed:
            seconds["passes"] = middle - begin
            seconds["export"] = time.perf_counter() - middle
        return result, records

    result, records = run(pipeline, timed=True)
    shapes_after = None
    if check:
        start = time.perf_counter()
        shapes_after = graph_io.check_and_infer(result)
        seconds["check"] = time.perf_counter() - start

    verdict, culprits, dropped = None, [], []
    if expected is not None:
        start = time.perf_counter()
        if not isinstance(model, onnx.ModelProto):
            held[0] = None  # fuser's own copy of the original: read again only if needed
            runtime.release_free_memory()

        def compare(candidate: onnx.ModelProto) -> validation.ValidationResult:
            return validation.validate(expected, candidate, batches=batches,
                                       atol=settings.atol, rtol=settings.rtol)

        verdict = compare(result)
        verdict.inputs = settings.inputs or f"random inputs (seed {settings.seed}, " \
            f"{inputs_io.describe_shapes({k: v.shape for k, v in batches[0].items()})})"
        if not verdict.passed and on_failure != "none":
            culprits.append(find_culprit(run, pipeline, records, lambda m: compare(m).passed))
            if on_failure == "rollback":
                good, good_records, culprits = rollback(
                    run, pipeline, lambda m: compare(m).passed, culprits[0], records)
                if good is not None:
                    dropped = [c.name for c in culprits]
                    result, records = good, good_records
                    verdict = compare(result)
                    verdict.inputs = f"{settings.inputs or 'random inputs'} (after rollback)"
        seconds["validate"] += time.perf_counter() - start

    compression = None
    if lossy is not None:
        from fuser.search.search import compress

        start = time.perf_counter()
        result, compression = compress(
            result, list(lossy.calibration), budget=lossy.budget,
            max_accuracy_drop=lossy.max_accuracy_drop, labels=lossy.labels,
            reconstruction=lossy.reconstruction, batch=lossy.batch, threads=lossy.threads,
            input_shapes=fixed or None)
        seconds["lowrank"] = time.perf_counter() - start
        shapes_after = graph_io.check_and_infer(result) if check else None
    if shapes_after is None or dropped:  # no check, or a rollback replaced the result
        shapes_after = graph_io.infer_shapes(result)
    if fixed and not static_shapes:
        shapes_after = graph_io.infer_shapes(result, fixed)
        notes.extend(_symbolic_notes(result, shapes_after, fixed))
    after = _stats(result, shapes_after)
    report = Report(model=name, pipeline=[p.name for p in pipeline], passes=records,
                    before=before, after=after, seconds=seconds, fuser_version=version(),
                    libraries=library_versions(), validation=verdict,
                    culprits=[dataclasses.asdict(c) for c in culprits], rolled_back=dropped,
                    lowrank=compression.to_dict() if compression is not None else None)
    if compression is not None and lossy.max_accuracy_drop is not None:
        report.lowrank["passed"] = _within(compression, lossy.max_accuracy_drop)
    report.notes.extend([unvalidated, *notes] if unvalidated else notes)
    return result, report


def _fixed_shapes(model: onnx.ModelProto, given: Mapping[str, Sequence[int]] | None,
                  static: bool, settings: Validation) -> dict[str, tuple[int, ...]]:
    """The fixed input shapes of the run: those given (checked against the model), and with
    ``static`` every input's (the symbolic first dim is the validation batch)."""
    given = given if given is not None else (settings.input_shapes if static else None)
    if static:
        return inputs_io.resolve_shapes(model, given, settings.batch)
    if not given:
        return {}
    return inputs_io.resolve_shapes(model, given, settings.batch, partial=True)


def _symbolic_notes(model: onnx.ModelProto, fixed_shapes: graph_io.Shapes,
                    fixed: Mapping[str, Sequence[int]]) -> list[str]:
    """Name the Shape/Size nodes left because they read dims that stay symbolic in the output
    but that the fixed input shapes would fold."""
    kept = []
    for node in model.graph.node:
        if node.op_type in ("Shape", "Size") and node.input and node.input[0] in fixed_shapes:
            dims = fixed_shapes[node.input[0]][1]
            if all(isinstance(d, int) and d >= 0 for d in dims):
                kept.append(f"{node.op_type} '{node.name or node.output[0]}'")
    if not kept:
        return []
    shown = ", ".join(kept[:5]) + (f" and {len(kept) - 5} more" if len(kept) > 5 else "")
    return [f"kept {len(kept)} shape computation(s) that read dims the output keeps symbolic "
            f"({shown}): they fold with --static-shapes (the output then runs at "
            f"{inputs_io.describe_shapes(fixed)} only)"]


def _repeated_names_note(model: onnx.ModelProto) -> list[str]:
    counts = collections.Counter(n.name for n in model.graph.node if n.name)
    repeated = [f"'{name}' x{count}" for name, count in counts.items() if count > 1]
    if not repeated:
        return []
    return [(f"node names repeat ({', '.join(repeated)}): valid ONNX, but onnxruntime refuses "
             "such a model; fuser's sessions used unique names, the output keeps the original "
             "ones")]


def _subgraph_notes(model: onnx.ModelProto) -> list[str]:
    """Say which subgraphs (If/Loop/Scan bodies) the passes left alone: they run on the main
    graph only (a subgraph's own ops are not in the op histograms either)."""
    holders = []
    for node in model.graph.node:
        inner = sum(graph_io.subgraph_node_count(a) for a in node.attribute)
        if inner:
            holders.append(f"{node.op_type} '{node.name or node.output[0]}' ({inner} nodes)")
    if not holders:
        return []
    return [f"subgraphs left alone (passes run on the main graph only): {', '.join(holders)}"]


def _within(compression: object, allowed: float) -> bool:
    if compression.accuracy_before is not None:
        return compression.accuracy_before - compression.accuracy_after <= allowed
    return 1.0 - (compression.top1_agreement or 1.0) <= allowed


def _batches(model: onnx.ModelProto, settings: Validation) -> list[dict]:
    validation.check_tolerance_names(settings.atol, settings.rtol,
                                     [o.name for o in model.graph.output])
    shapes = inputs_io.resolve_shapes(model, settings.input_shapes, settings.batch)
    if settings.inputs is not None:
        return inputs_io.load_batches(settings.inputs, model, shapes)
    return inputs_io.random_batches(model, shapes, settings.count, settings.seed)


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
    macs, coverage, unknown = graph_io.count_macs(model, shapes)
    return ModelStats(nodes=len(model.graph.node), ops=graph_io.op_histogram(model),
                      params=graph_io.param_count(model), macs=macs, layer_shapes=coverage,
                      unknown_layers=unknown)


@functools.cache
def version() -> str:
    """fuser's version (from the installed distribution, or the source tree's)."""
    try:
        return importlib.metadata.version("onnx-fuser")
    except importlib.metadata.PackageNotFoundError:
        from fuser import __version__

        return __version__


def library_versions() -> dict[str, str]:
    """Versions of the libraries that shape fuser's results."""
    return dict(_library_versions())  # a copy: callers may edit their report's


@functools.cache
def _library_versions() -> dict[str, str]:
    """Read once per process: the package metadata lookups cost ~20 ms a call."""
    found = {}
    for name in _LIBRARIES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found

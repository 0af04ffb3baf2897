"""The phases of ``fuser.optimize``: load and analyze the input, run the reference, apply the
passes, validate (naming the culprit pass, rolling back), check the speed against the original
(rolling back the passes that cost time), compress (lossy), report.

A ``Job`` holds one run: the original model (dropped and read again when fuser read it from
a file, so that the weights are never held three times), the shapes the passes see, the
times of the phases, and the pass pipeline, which it re-runs on a fresh copy at will (the
culprit search re-runs prefixes of it).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import Iterator, Sequence

import onnx

from fuser import ir as graph_io
from fuser.about import library_versions, version
from fuser.analysis import input_notes, model_stats, symbolic_notes
from fuser.passes.base import Pass
from fuser.passes.culprit import find_culprit, rollback
from fuser.passes.manager import PassManager
from fuser.report import Compression, Culprit, PassRecord, Report, ValidationResult
from fuser.runtime import inputs as inputs_io
from fuser.runtime import sessions as runtime
from fuser.runtime import validate as validation
from fuser.runtime.sessions import RuntimeRefusedError
from fuser.search import lossy as lossy_stage
from fuser.settings import (
    Config,
    LowRank,
    Timing,
    Validation,
    build_pipeline,
    fixed_shapes,
    validation_batches,
)
from fuser.speed_check import TimedRun, check_speed

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Validated:
    """The result after validation: the model (rolled back, perhaps), its records, the
    verdict, the culprits found and the passes dropped."""

    model: onnx.ModelProto
    records: list[PassRecord]
    verdict: ValidationResult | None = None
    culprits: list[Culprit] = dataclasses.field(default_factory=list)
    dropped: list[str] = dataclasses.field(default_factory=list)


@contextlib.contextmanager
def timed(seconds: dict[str, float], key: str) -> Iterator[None]:
    """Add the time the block takes to ``seconds[key]``."""
    start = time.perf_counter()
    yield
    seconds[key] = seconds.get(key, 0.0) + time.perf_counter() - start


def run(model: graph_io.ModelLike, config: Config) -> tuple[onnx.ModelProto, Report]:
    """``optimize``: the phases in order; see the module's docstring."""
    job = Job(model, config)
    expected = job.reference()
    result, records = job.apply(job.pipeline, main=True)
    shapes_after = None
    if config.check:
        with timed(job.seconds, "check"):
            shapes_after = graph_io.check_and_infer(result)
    validated = Validated(result, records)
    if expected is not None:
        with timed(job.seconds, "validate"):
            validated = validate_result(job, expected, result, records)
        result = validated.model
    timed_run: TimedRun | None = None
    if config.timing is not None and (validated.verdict is None or validated.verdict.passed):
        with timed(job.seconds, "speed"):
            checked = check_speed(job, expected, validated, config.timing)
        if checked is not None:
            model, records, verdict, timed_run = checked
            validated = dataclasses.replace(validated, model=model, records=records,
                                            verdict=verdict)
        if timed_run is not None and timed_run.check.rolled_back:
            result, shapes_after = validated.model, None
    compression = None
    if config.lossy is not None:
        exact = result
        result, compression = compress_result(job, result, config.lossy)
        shapes_after = graph_io.check_and_infer(result) if config.check else None
        if timed_run is not None and result is not exact:
            with timed(job.seconds, "speed"):
                timed_run = timed_run.remeasured(job, result)
    if shapes_after is None or validated.dropped:  # no check, or a rollback replaced it
        shapes_after = graph_io.infer_shapes(result)
    report = job.report(result, shapes_after, validated, compression)
    if timed_run is None:
        return result, report
    return result, dataclasses.replace(report, timings=timed_run.bench, speed=timed_run.check)


class Job:
    """One ``optimize`` run over one model (see the module's docstring)."""

    def __init__(self, model: graph_io.ModelLike, config: Config) -> None:
        self.source, self.config = model, config
        self.seconds: dict[str, float] = {}
        self.unvalidated: str | None = None  # why the original could not be run
        with timed(self.seconds, "load"):
            self._original: onnx.ModelProto | None = graph_io.load(model)
        self.name = (self._original.graph.name or "model") \
            if isinstance(model, onnx.ModelProto) else str(model)
        graph_io.require_known_opsets(self._original, self.name)
        self.pipeline = build_pipeline(config.passes, config.skip, config.options)
        with timed(self.seconds, "analyze"):
            self._analyze(self._original)

    def _analyze(self, proto: onnx.ModelProto) -> None:
        """Check the input, fix the shapes, make the validation batches, read the calibration
        data, count the input."""
        config = self.config
        # An invalid input is refused here, named, rather than blamed on the result later.
        self.shapes = graph_io.check_and_infer(proto, name=self.name) if config.check else \
            graph_io.infer_shapes(proto)
        settings = config.validation or Validation()
        self.fixed = fixed_shapes(proto, config.input_shapes, config.static_shapes, settings)
        if (self.fixed and settings.input_shapes is None) or config.static_shapes:
            settings = dataclasses.replace(settings, input_shapes=self.fixed)
        self.settings = settings
        # Bad shapes or data fail here, before any pass runs.
        self.batches = validation_batches(proto, settings) if config.validation else []
        self.calibration, self.labels = config.lossy.calibration_data(
            proto, config.input_shapes) if config.lossy else ([], None)
        self.analysis = graph_io.infer_shapes(proto, self.fixed) if self.fixed else self.shapes
        self.before = model_stats(proto, self.analysis, self.fixed)
        self.notes = input_notes(proto, self.fixed if config.static_shapes else None)

    def reference(self) -> validation.ReferenceOutputs | None:
        """The original's outputs on the validation batches, computed first so that its
        session is gone before the passes run; None without validation or when onnxruntime
        cannot run the original (a custom op, say: ``unvalidated`` says so)."""
        if self.config.validation is None:
            return None
        with timed(self.seconds, "validate"):
            try:
                return validation.reference_outputs(self._original, self.batches, self.name)
            except RuntimeRefusedError as exc:  # the input itself
                self.unvalidated = (f"not validated: onnxruntime cannot run {self.name} "
                                    f"({exc.reason})")
                logger.warning("%s", self.unvalidated)
                return None

    def timing_feeds(self, timing: Timing) -> dict[int, dict]:
        """One seeded random batch per batch size timed (a symbolic first dim at that size;
        with static shapes, the fixed shapes only), keyed by the batch they really have."""
        original, config = self.original(), self.config
        symbolic = {s.name for s in inputs_io.input_specs(original)
                    if s.dims and not (isinstance(s.dims[0], int) and s.dims[0] > 0)}
        feeds: dict[int, dict] = {}
        for batch in timing.batches:
            given = dict(self.fixed if config.static_shapes else config.input_shapes or {})
            if not config.static_shapes:
                given = {name: (batch, *shape[1:]) if name in symbolic and shape else shape
                         for name, shape in given.items()}
            shapes = inputs_io.resolve_shapes(original, given, batch)
            batch_feeds = inputs_io.random_batches(original, shapes, 1, timing.seed)[0]
            first = next(iter(batch_feeds.values()), None)
            real = int(first.shape[0]) if first is not None and first.ndim else batch
            if real != batch:
                self.notes.append(f"batch {batch} not timed: the model fixes its batch at "
                                  f"{real}, timed at {real}")
            feeds.setdefault(real, batch_feeds)
        return feeds

    def original(self) -> onnx.ModelProto:
        """The input model (read again if it was dropped)."""
        if self._original is None:
            self._original = graph_io.load(self.source)
        return self._original

    def drop_original(self) -> None:
        """Let fuser's own copy of the original go before a candidate's session is made (read
        again only if a culprit search needs it); a caller's ModelProto stays."""
        if not isinstance(self.source, onnx.ModelProto):
            self._original = None
            runtime.release_free_memory()

    def apply(self, steps: Sequence[Pass], limit: int | None = None,
              main: bool = False) -> tuple[onnx.ModelProto, list[PassRecord]]:
        """Run ``steps`` (at most ``limit`` applications) on a fresh copy of the original;
        the ``main`` run (not a culprit search's) records the ``passes`` and ``export`` times
        and writes the dumps."""
        begin = time.perf_counter()
        source, config = self.original(), self.config
        graph = graph_io.to_graph(source)
        if config.static_shapes:
            graph_io.annotate_fixed(graph, self.fixed, self.analysis)
        else:
            graph_io.annotate(graph, self.shapes)
        records = PassManager(steps, max_steps=config.max_steps, check_each=config.check_each,
                              dump_dir=config.dump_dir if main else None, template=source,
                              max_applications=limit).run(graph)
        middle = time.perf_counter()
        result = graph_io.to_model(graph, template=source, free_arrays=True)  # graph dropped
        if main:
            self.seconds["passes"] = middle - begin
            self.seconds["export"] = time.perf_counter() - middle
        return result, records

    def compare(self, expected: validation.ReferenceOutputs,
                candidate: onnx.ModelProto) -> ValidationResult:
        """Validate ``candidate`` against the reference's outputs."""
        return validation.validate(expected, candidate, batches=self.batches,
                                   atol=self.settings.atol, rtol=self.settings.rtol)

    def report(self, result: onnx.ModelProto, shapes_after: graph_io.Shapes,
               validated: Validated, compression: Compression | None) -> Report:
        """The report of the run, ``result`` counted at ``shapes_after`` (or, with fixed
        input shapes kept symbolic in the output, at the fixed ones)."""
        notes = [self.unvalidated] if self.unvalidated else []
        notes += self.notes
        if self.fixed and not self.config.static_shapes:
            shapes_after = graph_io.infer_shapes(result, self.fixed)
            notes += symbolic_notes(result, shapes_after, self.fixed)
        return Report(model=self.name, pipeline=[p.name for p in self.pipeline],
                      passes=validated.records, before=self.before,
                      after=model_stats(result, shapes_after, self.fixed), seconds=self.seconds,
                      fuser_version=version(), libraries=library_versions(),
                      validation=validated.verdict, culprits=validated.culprits,
                      rolled_back=validated.dropped, lowrank=compression, notes=notes)


def validate_result(job: Job, expected: validation.ReferenceOutputs, result: onnx.ModelProto,
                    records: list[PassRecord]) -> Validated:
    """Validate the result; when it fails, name the culprit pass and (``rollback``) re-run
    without it and any further culprit."""
    job.drop_original()
    settings, on_failure = job.settings, job.config.on_failure
    verdict = dataclasses.replace(job.compare(expected, result),
                                  inputs=settings.inputs or _random_inputs(job))
    if verdict.passed or on_failure == "none":
        return Validated(result, records, verdict)

    def good(candidate: onnx.ModelProto) -> bool:
        return job.compare(expected, candidate).passed

    culprits = [find_culprit(job.apply, job.pipeline, records, good)]
    if on_failure == "rollback":
        model, good_records, culprits = rollback(job.apply, job.pipeline, good, culprits[0],
                                                 records)
        if model is not None:
            verdict = dataclasses.replace(job.compare(expected, model), inputs=(
                f"{settings.inputs or 'random inputs'} (after rollback)"))
            return Validated(model, good_records, verdict, culprits, [c.name for c in culprits])
    return Validated(result, records, verdict, culprits)


def _random_inputs(job: Job) -> str:
    """How the validation batches were made: ``random inputs (seed 0, x:1x3x8x8)``."""
    first = {name: value.shape for name, value in job.batches[0].items()}
    return f"random inputs (seed {job.settings.seed}, {inputs_io.describe_shapes(first)})"


def compress_result(job: Job, result: onnx.ModelProto,
                    lossy: LowRank) -> tuple[onnx.ModelProto, Compression]:
    """The lossy stage: low-rank rewrites chosen from calibration data, judged by the task
    metric against ``max_accuracy_drop`` when it is given (``Compression.passed``)."""
    with timed(job.seconds, "lowrank"):
        return lossy_stage.run(result, job.calibration, lossy.search(job.fixed or None),
                               labels=job.labels)

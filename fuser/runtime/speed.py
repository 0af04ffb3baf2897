"""The delivered model against the original, end to end: the ratios of their medians per batch
size at one onnxruntime level, from interleaved rounds timed until the interval resolves
(``fuser.runtime.bench``), and the judge the rollback of slow passes uses."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import onnx

from fuser.report.speed import TOLERANCE, SpeedRatio, any_slower
from fuser.report.timing import BenchResult

logger = logging.getLogger(__name__)

ORIGINAL, DELIVERED = "original", "optimized"

#: ``time(models, feeds_by_batch, levels) -> BenchResult``: the run's timing settings bound.
Timer = Callable[[Mapping[str, Any], Mapping[int, Mapping[str, np.ndarray]], tuple[str, ...]],
                 BenchResult]


def ratios(result: BenchResult, level: str, model: str = DELIVERED) -> list[SpeedRatio]:
    """``model`` against the original at ``level``, one ratio per batch size timed."""
    by_key = {(t.model, t.batch): t for t in result.timings if t.level == level}
    out = []
    for (name, batch), timing in sorted(by_key.items(), key=lambda kv: kv[0][1]):
        if name != model:
            continue
        original = by_key[ORIGINAL, batch]
        out.append(SpeedRatio(batch, float(timing.speedup), tuple(timing.speedup_ci),
                              original.stats.median_ms, timing.stats.median_ms,
                              timing.stats.runs, timing.resolved))
    return out


def judge(time: Timer, original: onnx.ModelProto,
          feeds_by_batch: Mapping[int, Mapping[str, np.ndarray]], level: str,
          tolerance: float = TOLERANCE) -> tuple[Callable[[onnx.ModelProto], bool], list[int]]:
    """``good(candidate)``: the candidate is not slower than ``original`` at ``level`` on any
    batch size (timed afresh each call); and a counter of the calls, ``[probes]``."""
    probes = [0]

    def good(candidate: onnx.ModelProto) -> bool:
        probes[0] += 1
        found = ratios(time({ORIGINAL: original, DELIVERED: candidate}, feeds_by_batch,
                            (level,)), level)
        logger.info("speed probe %d: %s", probes[0], "; ".join(r.text() for r in found))
        return not any_slower(found, tolerance)

    return good, probes


__all__ = ["DELIVERED", "ORIGINAL", "Timer", "judge", "ratios"]

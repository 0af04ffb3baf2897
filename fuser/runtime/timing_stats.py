"""Statistics of repeated timings: medians and spread, and the paired bootstrap interval of a
speed-up (see ``fuser.runtime.bench``)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fuser.report.timing import Stats

__all__ = ["RESAMPLES", "Stats", "bootstrap_speedup"]

RESAMPLES = 1000


def bootstrap_speedup(reference_s: Sequence[float], candidate_s: Sequence[float], *,
                      resamples: int = RESAMPLES, confidence: float = 0.95,
                      seed: int = 0) -> tuple[float, tuple[float, float]]:
    """Speed-up median(reference) / median(candidate) and its paired bootstrap interval.

    Rounds are resampled as pairs (the same round indices for both models). The percentile
    interval is widened, if needed, to contain the point estimate, which a percentile
    interval of a median can miss on few rounds.
    """
    ref = np.asarray(reference_s, dtype=np.float64)
    cand = np.asarray(candidate_s, dtype=np.float64)
    if ref.shape != cand.shape or ref.ndim != 1 or ref.size == 0:
        raise ValueError("bootstrap needs two equally long, non-empty lists of paired rounds")
    point = float(np.median(ref) / np.median(cand))
    if ref.size == 1:
        return point, (point, point)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, ref.size, size=(resamples, ref.size))
    ratios = np.median(ref[idx], axis=1) / np.median(cand[idx], axis=1)
    tail = (1.0 - confidence) / 2 * 100
    lo, hi = np.percentile(ratios, [tail, 100 - tail])
    return point, (min(float(lo), point), max(float(hi), point))

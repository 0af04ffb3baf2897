"""The 95 % interval of the drop of a user's metric function (``fuser.search.metric``).

A user's ``fn(outputs, labels) -> float`` is a black box: the drop's interval is a seeded
bootstrap over the held-out samples. Two ways, by the function's cost:

- **Resampling** (the function is fast): ``fn`` on each resample of both models' outputs,
  the drop's percentiles at ``confidence``. Resamples stop after ``USER_BOOTSTRAP_SECONDS`` once
  ``MIN_BOOTSTRAP`` are done (the count is in the method), and the original's scores on them
  are kept in ``cache`` for the next judgement against the same reference.
- **Per sample** (one call on the whole set takes longer than ``PER_SAMPLE_AFTER``: a
  detector's box decoding, 100 resamples would take minutes): ``fn`` on each sample alone,
  once per model (the original's kept), and the bootstrap of the mean of the per-sample
  differences, shifted to centre on the whole set's drop. Exact in spread for a metric that
  is a mean over samples; for a ratio over samples (recall over boxes, errors over
  characters) the per-sample spread stands in for it, and the method says so. If ``fn``
  fails or is not finite on single samples, resampling is used.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

import numpy as np

from fuser.search.config import CONFIDENCE

Outputs = Mapping[str, np.ndarray]

BOOTSTRAP = 1000
MIN_BOOTSTRAP = 100
USER_BOOTSTRAP_SECONDS = 5.0
PER_SAMPLE_AFTER = USER_BOOTSTRAP_SECONDS / MIN_BOOTSTRAP


def tails(confidence: float) -> tuple[float, float]:
    """The quantiles of a two-sided percentile interval at ``confidence``."""
    return (1 - confidence) / 2, (1 + confidence) / 2


def judge_user(fn: Callable, ref: Outputs, new: Outputs, labels: np.ndarray | None,
               rng: np.random.Generator, cache: dict, groups: np.ndarray | None = None,
               confidence: float = CONFIDENCE) -> tuple[float, float, tuple[float, float], str]:
    """``(before, after, (low, high) of the drop at ``confidence``, method)``; see the
    module docstring. ``groups``: the group of near-copies of each sample; resamples draw
    groups."""
    count = len(next(iter(ref.values())))
    groups = np.arange(count) if groups is None else np.asarray(groups)

    def score(outputs: Outputs, picks: np.ndarray | None) -> float:
        if picks is None:
            return float(fn(dict(outputs), labels))
        return float(fn({k: v[picks] for k, v in outputs.items()},
                        None if labels is None else np.asarray(labels)[picks]))

    if cache.get("reference") is not ref:
        cache.clear()
        cache.update(reference=ref, before=score(ref, None))
    started = time.perf_counter()
    before, after = cache["before"], score(new, None)
    seconds = time.perf_counter() - started
    if seconds > PER_SAMPLE_AFTER:
        singles = _per_sample(score, ref, new, count, cache)
        if singles is not None:
            diffs = singles[0] - singles[1]
            spread = np.quantile(group_means(diffs, groups, rng) - diffs.mean(),
                                 tails(confidence))
            drop = before - after
            return before, after, (float(drop + spread[0]), float(drop + spread[1])), (
                f"bootstrap over per-sample scores (the metric on each sample alone: one "
                f"call on the whole set took {seconds:.2f} s)")
    drops = []
    started = time.perf_counter()
    for i in range(BOOTSTRAP):
        picks = _resample(groups, rng)
        if i not in cache:
            cache[i] = score(ref, picks)
        drops.append(cache[i] - score(new, picks))
        if i + 1 >= MIN_BOOTSTRAP and time.perf_counter() - started > USER_BOOTSTRAP_SECONDS:
            break
    low, high = np.quantile(drops, tails(confidence))
    method = "bootstrap" if len(drops) == BOOTSTRAP else f"bootstrap ({len(drops)} resamples)"
    return before, after, (float(low), float(high)), method


def group_means(values: np.ndarray, groups: np.ndarray, rng: np.random.Generator,
                draws: int = BOOTSTRAP) -> np.ndarray:
    """The mean of ``values`` over ``draws`` resamples of the groups (with replacement, as
    many as there are; each drawn group brings all its samples): a cluster bootstrap. With
    every sample its own group, the plain bootstrap of the mean."""
    count = int(groups.max()) + 1
    sums = np.bincount(groups, weights=values, minlength=count)
    sizes = np.bincount(groups, minlength=count).astype(np.float64)
    picks = rng.integers(0, count, (draws, count))
    return sums[picks].sum(axis=1) / sizes[picks].sum(axis=1)


def _resample(groups: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Sample indices of one resample of the groups (each drawn group with all its samples)."""
    count = int(groups.max()) + 1
    if count == len(groups):  # every sample its own group: the plain bootstrap
        return rng.integers(0, count, count)
    members = [np.flatnonzero(groups == g) for g in range(count)]
    return np.concatenate([members[g] for g in rng.integers(0, count, count)])


def _per_sample(score: Callable, ref: Outputs, new: Outputs, count: int,
                cache: dict) -> tuple[np.ndarray, np.ndarray] | None:
    """Both models' scores on each sample alone (the original's cached); None when the
    function fails or is not finite on single samples."""
    if "singles" not in cache:
        cache["singles"] = _singles(score, ref, count)
    after = None if cache["singles"] is None else _singles(score, new, count)
    return None if after is None else (cache["singles"], after)


def _singles(score: Callable, outputs: Outputs, count: int) -> np.ndarray | None:
    try:
        values = np.array([score(outputs, np.array([i])) for i in range(count)])
    except Exception:  # noqa: BLE001 - a user's function that needs more than one sample
        return None
    return values if np.isfinite(values).all() else None

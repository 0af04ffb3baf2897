"""The task metric the low-rank guard judges, and the interval of its drop.

A metric scores a model's outputs on the held-out calibration samples (higher is better):

- ``agreement``: share of samples whose top-1 class (last axis of the first output) is the
  original's; the default for class scores.
- ``top1``: accuracy against the calibration ``labels``.
- ``rel-error:X``: share of samples whose output error, ``||new_i - ref_i||`` over the RMS
  norm of the reference's samples, is at most X (every output, the worst counts); the
  default, ``rel-error:0.05``, for outputs without class scores (a regression, a heat map,
  independent probabilities such as multi-label notes: ``class_scores``).
- ``snr:DB``: share of samples whose signal-to-noise ratio against the reference is at
  least DB decibels (every output, the worst counts).
- a user function ``fn(outputs: dict[str, np.ndarray], labels) -> float``: outputs keyed by
  output name, samples in calibration order.

The drop is the original's score minus the compressed model's. When every sample scores 0
or 1 (the built-ins on batch-first outputs of one prediction per sample), its interval is the
exact binomial (Clopper-Pearson) one of the share of samples made worse, an upper bound of
the drop; otherwise the 95 % percentile interval of a seeded bootstrap over samples (a
user's function: ``user_metric``). A bootstrap cannot see what no sample showed (nothing
changed: [0, 0] on any number of samples), so its upper end is never below the exact
binomial's floor (no sample made worse); for a user's function the floor is scaled by the
original's score (a sample taken to be able to lose the metric's size, exact for a share of
samples). A held-out set whose floor is past the allowed drop cannot resolve it. Intervals
are at ``confidence`` (``looks`` spends the 95 % of ``config.CONFIDENCE`` over its looks).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Mapping

import numpy as np

from fuser.errors import FuserError
from fuser.runtime.comparison import class_scores
from fuser.search.config import CONFIDENCE
from fuser.search.user_metric import group_means, judge_user, tails
from fuser.usercode import load_callable

Outputs = Mapping[str, np.ndarray]
UserMetric = Callable[[dict[str, np.ndarray], "np.ndarray | None"], float]

#: The default bound of ``rel-error`` for outputs without classes (a user's function's
#: bootstrap: ``user_metric``).
DEFAULT_REL_ERROR = 0.05


@dataclasses.dataclass(frozen=True)
class Metric:
    """A resolved metric: its name and either a per-sample scorer or a user function."""

    name: str
    per_sample: Callable[[Outputs, Outputs, np.ndarray | None], tuple[np.ndarray,
                                                                        np.ndarray]] | None
    user: UserMetric | None = None
    reference_scores: dict = dataclasses.field(default_factory=dict, compare=False)
    #: the group of near-copies of each held-out sample (``calibration_check``): the
    #: interval counts groups, not rows; None: every sample its own
    groups: np.ndarray | None = dataclasses.field(default=None, compare=False)


@dataclasses.dataclass(frozen=True)
class Judgement:
    """The guard's figures for one candidate."""

    before: float
    after: float
    drop: float
    interval: tuple[float, float]
    method: str
    samples: int
    confidence: float = CONFIDENCE  # the interval's level
    scale: float = 1.0  # the floor's factor: a user's metric, the original's score
    rows: int = 0  # the held-out rows, when near-copies make them more than ``samples``
    look: int = 1  # the look that decided, of ``looks`` (``fuser.search.looks``)
    looks: int = 1
    held_rows: int = 0  # every held-out row, when the looks stopped before the last

    @property
    def floor(self) -> float:
        """The smallest upper end this many samples can give (no sample made worse)."""
        return _floor(self.samples, self.confidence, self.scale)

    def within(self, allowed: float) -> bool:
        return self.interval[1] <= allowed

    def resolvable(self, allowed: float) -> bool:
        """Whether this many samples can resolve ``allowed`` at this judgement's level."""
        return self.floor <= allowed


def parse(spec: str | UserMetric | None) -> str | UserMetric | None:
    """Check a metric spec early (the CLI's ``--metric``): a built-in name, or load
    ``FILE.py:FUNCTION`` / ``MODULE:FUNCTION``; a bad spec raises a one-line FuserError."""
    if spec is None or callable(spec) or spec in ("agreement", "top1"):
        return spec
    kind, _, value = spec.partition(":")
    if kind in ("snr", "rel-error"):
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not math.isfinite(number) or (kind == "rel-error" and number <= 0):
            raise FuserError(f"--metric {spec!r}: expected {kind}:NUMBER"
                             + (" > 0" if kind == "rel-error" else ""))
        return spec
    if not value:
        raise FuserError(f"--metric {spec!r}: expected top1, agreement, snr:DB, rel-error:X, "
                         "FILE.py:FUNCTION or MODULE:FUNCTION")
    return _load(kind, value, spec)


def _load(where: str, name: str, spec: str) -> UserMetric:
    return load_callable(where, name, f"--metric {spec!r}")


def resolve(spec: str | UserMetric | None, reference: Outputs,
            labels: np.ndarray | None) -> Metric:
    """The metric to judge by: ``spec``, or the default for these outputs (agreement, or
    top-1 with labels, for class scores: ``class_scores``; ``rel-error:0.05`` otherwise)."""
    spec = parse(spec)
    if callable(spec):
        return Metric(getattr(spec, "__name__", "metric"), None, guarded(spec))
    first = next(iter(reference.values()))
    if spec is None:
        spec = ("top1" if _class_labels(labels, first) else "agreement") \
            if class_scores(first) else f"rel-error:{DEFAULT_REL_ERROR:g}"
    if spec in ("agreement", "top1"):
        if first.ndim < 2 or first.shape[-1] < 2:
            raise FuserError(f"metric {spec}: the first output {list(first.shape)} has no "
                             "class axis (use rel-error:X, snr:DB or your own function)")
        if spec == "top1" and labels is None:
            raise FuserError("metric top1 needs labels (a 'labels' array in the calibration "
                             ".npz)")
        if spec == "top1" and not _class_labels(labels, first):
            raise FuserError(f"metric top1: labels of shape {list(np.shape(labels))} are not "
                             f"one class per sample (or per position) of the first output "
                             f"{list(first.shape)} (use your own function for other labels)")
        return Metric(spec, _top1 if spec == "top1" else _agreement)
    kind, _, value = spec.partition(":")
    bound = float(value)
    scorer = _within_error(bound) if kind == "rel-error" else _above_snr(bound)
    return Metric(spec, scorer)


def guarded(fn: UserMetric) -> UserMetric:
    """``fn`` whose failures are one line naming it: an exception it raises, or a result
    that is not a finite number (a FuserError; the per-sample scoring of ``user_metric``
    catches it and resamples instead)."""
    name = getattr(fn, "__name__", "metric")

    @functools.wraps(fn)
    def call(outputs: dict[str, np.ndarray], labels: np.ndarray | None) -> float:
        try:
            value = fn(outputs, labels)
        except FuserError:
            raise
        except Exception as exc:  # the user's code: any error is theirs
            given = ", ".join(f"{k} {list(v.shape)}" for k, v in outputs.items())
            raise FuserError(f"metric function {name!r} raised {type(exc).__name__}: "
                             f"{str(exc).strip() or '(no message)'} (given outputs {given}; "
                             f"labels {'none' if labels is None else len(labels)})") from exc
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise FuserError(f"metric function {name!r} returned {type(value).__name__} "
                             f"{str(value)[:40]!r}, not a number") from None
        if not math.isfinite(number):
            raise FuserError(f"metric function {name!r} returned {number}, not a finite number")
        return number

    return call


def _per_sample(values: np.ndarray) -> np.ndarray:
    return values.reshape(values.shape[0], -1).mean(axis=1)


def _agreement(ref: Outputs, new: Outputs, labels: np.ndarray | None
               ) -> tuple[np.ndarray, np.ndarray]:
    r, n = next(iter(ref.values())), next(iter(new.values()))
    same = (r.argmax(-1) == n.argmax(-1)).astype(np.float64)
    return np.ones(len(r)), _per_sample(same)


def _class_labels(labels: np.ndarray | None, scores: np.ndarray) -> bool:
    """Whether ``labels`` hold a class index per sample (``[N]``) or per position of the
    scores (``[N, ...]``, the scores' shape without its class axis): what ``top1`` reads.
    Labels of another shape (multi-label rows, boxes) are for the user's own function."""
    if labels is None:
        return False
    labels = np.asarray(labels)
    return labels.dtype.kind in "iu" and labels.shape[:1] == scores.shape[:1] and \
        labels.shape in (scores.shape[:1], scores.shape[:-1])


def _top1(ref: Outputs, new: Outputs, labels: np.ndarray | None
          ) -> tuple[np.ndarray, np.ndarray]:
    r, n = next(iter(ref.values())), next(iter(new.values()))
    truth = np.asarray(labels)
    if truth.ndim == 1:  # one class per sample, against every position
        truth = truth.reshape(len(r), *([1] * (r.ndim - 2)))
    return (_per_sample((r.argmax(-1) == truth).astype(np.float64)),
            _per_sample((n.argmax(-1) == truth).astype(np.float64)))


def _sample_errors(ref: Outputs, new: Outputs) -> tuple[np.ndarray, np.ndarray]:
    """Per sample, the worst output's squared error and squared reference norm."""
    errors, norms = [], []
    for name, r in ref.items():
        r64, n64 = r.astype(np.float64).reshape(len(r), -1), new[name].astype(
            np.float64).reshape(len(r), -1)
        errors.append(((n64 - r64) ** 2).sum(1))
        norms.append((r64 ** 2).sum(1))
    return np.stack(errors), np.stack(norms)


def _within_error(bound: float) -> Callable:
    def score(ref: Outputs, new: Outputs, labels: np.ndarray | None):
        errors, norms = _sample_errors(ref, new)
        rms = np.sqrt(np.maximum(norms.mean(axis=1, keepdims=True), 1e-30))
        ok = (np.sqrt(errors) / rms <= bound).all(axis=0)
        return np.ones(len(ok)), ok.astype(np.float64)
    return score


def _above_snr(decibels: float) -> Callable:
    def score(ref: Outputs, new: Outputs, labels: np.ndarray | None):
        errors, norms = _sample_errors(ref, new)
        ok = (norms >= errors * 10 ** (decibels / 10)).all(axis=0)
        return np.ones(len(ok)), ok.astype(np.float64)
    return score


def judge(metric: Metric, ref: Outputs, new: Outputs, labels: np.ndarray | None,
          seed: int = 0, confidence: float = CONFIDENCE) -> Judgement:
    """The scores before and after, the drop and its interval at ``confidence``, counting
    groups of near-copies (``metric.groups``) as one sample each."""
    rng = np.random.default_rng(seed)
    rows = len(next(iter(ref.values())))
    groups = np.arange(rows) if metric.groups is None else np.asarray(metric.groups)
    count = int(groups.max()) + 1 if rows else 0
    if metric.user is not None:
        cache = metric.reference_scores.setdefault(("held", rows), {})
        before, after, interval, method = judge_user(metric.user, ref, new, labels, rng,
                                                     cache, groups, confidence)
        low, high = interval
        floor = _floor(count, confidence, abs(before))
        return Judgement(before, after, before - after, (low, max(high, floor)), method,
                         count, confidence, abs(before), rows)
    before, after = metric.per_sample(ref, new, labels)
    drop = float(before.mean() - after.mean())
    if np.isin(before, (0.0, 1.0)).all() and np.isin(after, (0.0, 1.0)).all():
        worse = int(((before == 1) & (after == 0)).sum())
        # near-copies: the share made worse, over the distinct samples (rounded up)
        worse = clopper_pearson(math.ceil(worse * count / rows), count, confidence)
        better = float(((before == 0) & (after == 1)).mean())
        return Judgement(float(before.mean()), float(after.mean()), drop,
                         (worse[0] - better, worse[1]), "exact binomial", count, confidence,
                         rows=rows)
    low, high = np.quantile(group_means(before - after, groups, rng), tails(confidence))
    return Judgement(float(before.mean()), float(after.mean()), drop,
                     (float(low), max(float(high), _floor(count, confidence))), "bootstrap",
                     count, confidence, rows=rows)


def _floor(samples: int, confidence: float, scale: float = 1.0) -> float:
    """The exact binomial's upper end with no sample made worse, times ``scale``."""
    return clopper_pearson(0, samples, confidence)[1] * scale


def clopper_pearson(k: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The exact binomial (Clopper-Pearson) interval of a share ``k / n`` at ``confidence``:
    scipy's ``binomtest(k, n).proportion_ci(method="exact")`` (imported here: scipy.stats
    costs half a second)."""
    from scipy.stats import binomtest

    if n == 0:
        return 0.0, 1.0
    interval = binomtest(k, n).proportion_ci(confidence_level=confidence, method="exact")
    return float(interval.low), float(interval.high)


def needed_samples(allowed: float, confidence: float = CONFIDENCE) -> int:
    """Held-out samples for a sample-by-sample metric to resolve a drop of ``allowed`` at
    ``confidence`` (no sample made worse)."""
    if allowed >= 1:
        return 1
    return math.ceil(math.log((1 - confidence) / 2) / math.log1p(-allowed))


def point_drop(metric: Metric, ref: Outputs, new: Outputs, labels: np.ndarray | None) -> float:
    """The drop of the score, without an interval (the search's sensitivity runs)."""
    if metric.user is not None:
        seen = metric.reference_scores.get("point")
        if seen is None or seen[0] is not ref:  # the probe's reference, scored once
            seen = metric.reference_scores["point"] = (ref, float(metric.user(dict(ref),
                                                                              labels)))
        return seen[1] - float(metric.user(dict(new), labels))
    before, after = metric.per_sample(ref, new, labels)
    return float(before.mean() - after.mean())

"""The guard's held-out judgements in looks: a growing share of the held-out samples, stopping
as soon as the interval decides (group-sequential testing).

A choice is accepted when the upper end of its drop's interval is within the allowed drop.
Looking at the first quarter of the held-out samples, then half, then all, and stopping at
the first look that decides, would accept a bad choice more often than one look at the same
level: every look is a chance. So the error is spent over the looks (alpha spending, Lan and
DeMets 1983, with Kim and DeMets' power family): with ``alpha = (1 - CONFIDENCE) / 2``, the
one-sided error of the interval's upper end, look k of K, at the share ``t_k`` of the samples,
judges at the one-sided level

    alpha_k = alpha (t_k^RHO - t_{k-1}^RHO),        sum_k alpha_k = alpha,

i.e. with an interval at confidence ``1 - 2 alpha_k``. A choice whose true drop is past the
bound is accepted at some look with probability at most ``sum_k alpha_k = alpha``
(Bonferroni over the looks: conservative, and free of any assumption on how the looks'
statistics are correlated). ``RHO = 3`` spends little early (O'Brien-Fleming-like): an
early look accepts only a clear pass, and the last keeps most of the level (95.6 % instead
of 95 % with looks at 1/4, 1/2 and 1). A look refuses when the lower end of the same
interval is past the allowed drop; refusing early needs no level of its own (it can only
make a false acceptance rarer), so a clearly bad choice costs a quarter of the samples.

The original's outputs are computed once, look by look, as the looks need them: a search
whose choices are all refused at the first look never runs the original on the rest.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import onnx

from fuser.runtime import sessions as runtime
from fuser.search.build import outputs
from fuser.search.calibrate import Feeds
from fuser.search.metric import (
    CONFIDENCE,
    Judgement,
    Metric,
    clopper_pearson,
    judge,
    needed_samples,
    point_drop,
)

#: The shares of the held-out samples at which the looks are taken.
SHARES = (0.25, 0.5, 1.0)
#: The power of the spending function ``alpha t^RHO``.
RHO = 3.0


def levels(shares: list[float], confidence: float = CONFIDENCE) -> list[float]:
    """The confidence of each look's interval, from the shares of the samples it sees."""
    alpha, spent, out = (1 - confidence) / 2, 0.0, []
    for share in shares:
        step = alpha * share ** RHO - spent
        spent += step
        out.append(1 - 2 * step)
    return out


class Originals:
    """The original's outputs on runs of the held-out batches, each computed once, from one
    session, and shared by every ``Looks`` that judges against the same original on the
    same batches (``lossy``'s two stages: the int8 stage does not run the original again)."""

    def __init__(self, model: onnx.ModelProto, batches: list[Feeds]) -> None:
        self.model, self.batches = model, batches
        self._session: object | None = None
        self.session_seconds = 0.0
        self._parts: dict[tuple[int, int], tuple[dict[str, np.ndarray], float]] = {}

    def serves(self, model: onnx.ModelProto, batches: list[Feeds]) -> bool:
        """Whether these are ``model``'s outputs on ``batches`` (the same split of the same
        calibration data: the same arrays, batch by batch)."""
        return model is self.model and len(batches) == len(self.batches) and all(
            a.keys() == b.keys() and all(a[k] is b[k] or np.array_equal(a[k], b[k]) for k in a)
            for a, b in zip(batches, self.batches, strict=True))

    def part(self, start: int, end: int) -> tuple[dict[str, np.ndarray], float]:
        """The outputs on batches ``start:end`` (samples first), and the seconds they took."""
        if self._session is None:
            started = time.perf_counter()
            self._session = runtime.session(self.model, level="all")
            self.session_seconds = time.perf_counter() - started
        if (start, end) not in self._parts:
            started = time.perf_counter()
            got = outputs(self.model, self.batches[start:end], level="all",
                          session=self._session)
            self._parts[start, end] = got, time.perf_counter() - started
        return self._parts[start, end]


class Looks:
    """The held-out batches, their labels and the original's outputs on them (computed as the
    looks need them), the metric and the allowed drop (None: no bound, one look at all)."""

    def __init__(self, model: onnx.ModelProto, batches: list[Feeds],
                 labels: np.ndarray | None, allowed: float | None,
                 originals: Originals | None = None) -> None:
        self.model, self.batches, self.labels, self.allowed = model, batches, labels, allowed
        self.metric: Metric | None = None  # set once resolved on the first look's outputs
        self.sizes = [len(next(iter(b.values()))) for b in batches]
        self.rows = sum(self.sizes)
        # one look without a bound, or when even every sample cannot resolve it (then the
        # point estimate decides the ladder: ``guard.accepted``)
        sequential = allowed is not None and self.rows >= needed_samples(allowed)
        ends = sorted({self._end(share) for share in SHARES}) if sequential else []
        self.ends = [e for e in ends if e < len(batches)] + [len(batches)]
        shares = [sum(self.sizes[:e]) / max(self.rows, 1) for e in self.ends]
        self.confidences = levels(shares)
        if allowed is not None and len(self.ends) > 1 and \
                self.rows < needed_samples(allowed, self.confidences[-1]):
            # the last look's level (above 95 %, the looks spend the 5 %) needs more samples
            # than there are: 368 samples resolve 1 % at 95 % but not at 95.7 %; one look
            # at all of them, at 95 %, resolves it
            self.ends, self.confidences = [len(batches)], levels([1.0])
        self._reference: list[dict[str, np.ndarray]] = []  # per look's part of the batches
        self._upto: dict[int, dict[str, np.ndarray]] = {}  # the parts joined up to each look
        self.judge_seconds = 0.0  # one judgement on the first look (``timed_judgement``)
        self.originals = originals if originals is not None and originals.serves(
            model, batches) else Originals(model, batches)
        self.run_seconds = 0.0

    @property
    def session_seconds(self) -> float:
        """Seconds the original's session took to make."""
        return self.originals.session_seconds

    def _end(self, share: float) -> int:
        """The batches a look at ``share`` of the samples sees (one at least)."""
        cumulative = np.cumsum(self.sizes)
        return int(min(np.searchsorted(cumulative, share * self.rows - 1e-9) + 1,
                       len(self.sizes)))

    def reference(self, look: int = 0) -> dict[str, np.ndarray]:
        """The original's outputs on the samples of look ``look`` (samples first), from one
        session (``session_seconds`` to make; ``run_seconds`` to run, so far: the seconds
        they took where ``originals`` had them already)."""
        while len(self._reference) <= look:
            k = len(self._reference)
            part, seconds = self.originals.part(self.ends[k - 1] if k else 0, self.ends[k])
            self._reference.append(part)
            self.run_seconds += seconds
        if look not in self._upto:
            self._upto[look] = _joined(self._reference[:look + 1])
        return self._upto[look]

    def _part(self, model: onnx.ModelProto, look: int) -> dict[str, np.ndarray]:
        """``model``'s outputs on the batches look ``look`` adds to the one before."""
        start = self.ends[look - 1] if look else 0
        return outputs(model, self.batches[start:self.ends[look]], level="all")

    def seen(self, look: int) -> tuple[np.ndarray | None, Metric]:
        """The labels and the metric (near-copy groups renumbered) of look ``look``."""
        rows = sum(self.sizes[:self.ends[look]])
        labels = None if self.labels is None else self.labels[:rows]
        groups = self.metric.groups
        if groups is not None:
            groups = np.unique(np.asarray(groups)[:rows], return_inverse=True)[1]
        return labels, dataclasses.replace(self.metric, groups=groups)

    def judged(self, model: onnx.ModelProto
               ) -> tuple[Judgement, dict[str, np.ndarray], dict[str, np.ndarray]]:
        """``model`` judged look by look until one decides (the module docstring): the
        verdict, ``model``'s outputs and the original's on the samples seen."""
        parts = []
        for look, confidence in enumerate(self.confidences):
            parts.append(self._part(model, look))
            new, reference = _joined(parts), self.reference(look)
            labels, metric = self.seen(look)
            last = look == len(self.ends) - 1
            if not last and self._undecidable(look, metric, reference, new, labels):
                continue
            verdict = judge(metric, reference, new, labels, confidence=confidence)
            if last or verdict.within(self.allowed) or verdict.interval[0] > self.allowed:
                return dataclasses.replace(verdict, look=look + 1, looks=len(self.ends),
                                           held_rows=self.rows), new, reference
        raise AssertionError("a look always decides at the last one")

    def _undecidable(self, look: int, metric: Metric, reference: dict, new: dict,
                     labels: np.ndarray | None) -> bool:
        """Whether look ``look`` cannot decide, known without its interval (a user's metric
        bootstraps for seconds): too few samples for any interval to accept (the floor with
        no sample made worse is past the bound) and a point drop within the bound (the lower
        end, below the point, cannot be past it). Skipping such a look spends none of the
        error: it can only accept less often."""
        rows = sum(self.sizes[:self.ends[look]])
        if clopper_pearson(0, rows, self.confidences[look])[1] <= self.allowed:
            return False
        return point_drop(metric, reference, new, labels) <= self.allowed

    def timed_judgement(self) -> float:
        """Seconds of judging the first look (the original against itself: a user's
        metric and its bootstrap cost as much as a real candidate's); ``Budget`` adds it,
        scaled to every held-out sample, to each build's estimate (the looks that cannot
        decide compute no interval: about one judgement per build)."""
        started = time.perf_counter()
        labels, metric = self.seen(0)
        judge(metric, self.reference(0), self.reference(0), labels,
              confidence=self.confidences[0])
        self.judge_seconds = time.perf_counter() - started
        return self.judge_seconds

    def original(self) -> tuple[Judgement, dict[str, np.ndarray]]:
        """The original judged against itself (nothing changed) on the samples whose
        outputs the looks have computed so far."""
        look = max(len(self._reference) - 1, 0)
        reference = self.reference(look)
        labels, metric = self.seen(look)
        verdict = judge(metric, reference, reference, labels)
        return dataclasses.replace(verdict, held_rows=self.rows), reference


def _joined(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Per-look outputs (samples first) joined along the samples."""
    if len(parts) == 1:
        return parts[0]
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


"""The search's one budget of time: every deadline of a search, and the seconds of each phase.

``search_time`` is shared out as the search learns what its model costs:

- the latency table times layers until ``LATENCY_SHARE`` of it (then latencies are estimated
  from MACs);
- the first look's reference run (the original on a quarter of the held-out samples:
  ``fuser.search.looks``) gives the seconds of one sample through the whole model. A build
  of the guard's ladder costs about one run over the fitting samples (to fit the factors)
  and, at worst, one over the held-out samples, and the metric's judgement at each look (a
  user's metric with its bootstrap: seconds per look on a detector): ``per_sample * (held +
  fit) + judging``, with a margin (``BUILD_MARGIN``);
- the sensitivity runs stop early enough to leave ``GUARD_BUILDS`` such builds, or fewer
  (one at least) when that would leave the sensitivity runs less than ``SENSITIVITY_SHARE``
  of the time left: without sensitivity no layer is rewritten at all, while the ladder
  spreads whatever builds fit. Of the sensitivity time, ``ESTIMATE_SHARE`` (at most
  ``ESTIMATE_SECONDS``) is kept for the estimates from fits alone
  (``sensitivity.estimate``);
- the guard starts no build that would end after ``guard``, which leaves ``finish``: each
  layer's error and the end-to-end comparison.
"""

from __future__ import annotations

import time

#: The latency table's share of the search time.
LATENCY_SHARE = 0.4
GUARD_BUILDS = 3
SENSITIVITY_SHARE = 1 / 3
#: A build takes longer than the two runs it is estimated from (fitting the factors, the
#: layer's part of the network run per layer): picodet-layout's one build took 80 s where its
#: reference run predicted 70 s, and the search ended at 189 s of 180.
BUILD_MARGIN = 1.25
#: Seconds for the end-to-end comparison of the two models after the guard.
COMPARE_SECONDS = 5.0
#: The share of the sensitivity time kept for the estimates of the options the network runs
#: do not reach (fits only: seconds where a network run takes minutes), and its cap.
ESTIMATE_SHARE, ESTIMATE_SECONDS = 0.1, 10.0


class Budget:
    """Every deadline of one search (``time.perf_counter()`` values), and its phases."""

    def __init__(self, seconds: float, start: float | None = None) -> None:
        self.start = time.perf_counter() if start is None else start
        self.seconds = seconds
        self.end = self.start + seconds
        self.latency = self.start + LATENCY_SHARE * seconds
        self.sensitivity = self.estimates = self.guard = self.end
        self.per_sample, self.finish, self.builds = 0.0, 0.0, GUARD_BUILDS
        self._basis: tuple[float, int, int, int, float] = (0.0, 1, 0, 0, 0.0)
        self.phases: dict[str, float] = {}
        self._last = self.start

    def lap(self, phase: str) -> float:
        """Close ``phase``; its seconds."""
        now = time.perf_counter()
        self.phases[phase] = round(now - self._last, 3)
        self._last = now
        return self.phases[phase]

    def referenced(self, seconds: float, judged: int, held: int, fit: int,
                   now: float | None = None, judging: float = 0.0) -> None:
        """The reference run took ``seconds`` over ``judged`` samples, and the metric takes
        ``judging`` seconds to judge a build (every look): share the time left between the
        sensitivity runs and the guard's builds (module docstring)."""
        self._basis = (seconds, judged, held, fit, judging)
        self._share(seconds, now)

    def builds_run_faster(self, ratio: float) -> None:
        """The guard's builds run the held-out samples in ``ratio`` of the reference's time
        (int8's: the latency gate measured the all-int8 model; tempocnn-cnn's at 0.26 took
        a third of the estimate): share the time left again, from now."""
        self._share(self._basis[0] * ratio, None)

    def _share(self, seconds: float, now: float | None) -> None:
        """Share the time left from ``now`` as if the reference run took ``seconds``."""
        now = time.perf_counter() if now is None else now
        _, judged, held, fit, judging = self._basis
        self.per_sample = seconds / max(judged, 1)
        self.finish = self.per_sample * fit + COMPARE_SECONDS
        build = BUILD_MARGIN * (self.per_sample * (held + fit) + judging)
        left = self.end - now - self.finish
        self.builds = GUARD_BUILDS
        while self.builds > 1 and left - self.builds * build < SENSITIVITY_SHARE * left:
            self.builds -= 1
        self.guard = self.end - self.finish
        self.estimates = self.guard - self.builds * build
        kept = min(ESTIMATE_SHARE * max(self.estimates - now, 0.0), ESTIMATE_SECONDS)
        self.sensitivity = self.estimates - kept

    def left(self, until: float) -> float:
        """Seconds from now until ``until``."""
        return until - time.perf_counter()

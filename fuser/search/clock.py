"""The search's clock: the seconds of each phase, and how the time left after the reference
run is shared between the sensitivity runs and the guard's builds.

A build of the guard's ladder costs about one run over the fitting samples (to fit the
factors) and one over the held-out samples (to judge the choice), so after the reference run
over the held-out samples its time is known: ``per_sample * (held + fit)``, with a margin
(``BUILD_MARGIN``). The sensitivity runs stop early enough to leave ``GUARD_BUILDS`` of them,
or fewer (one at least) when that would leave the sensitivity runs less than
``SENSITIVITY_SHARE`` of the time left: without sensitivity no layer is rewritten at all,
while the ladder spreads whatever builds fit.
"""

from __future__ import annotations

import dataclasses
import time

GUARD_BUILDS = 3
SENSITIVITY_SHARE = 1 / 3
#: A build takes longer than the two runs it is estimated from (fitting the factors, the
#: layer's part of the network run per layer): picodet-layout's one build took 80 s where its
#: reference run predicted 70 s, and the search ended at 189 s of 180.
BUILD_MARGIN = 1.25
#: Seconds for the end-to-end comparison of the two models after the guard.
COMPARE_SECONDS = 5.0


class Phases:
    """Seconds spent in each phase of the search, lap by lap."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, phase: str) -> None:
        now = time.perf_counter()
        self.seconds[phase] = round(now - self._last, 3)
        self._last = now


@dataclasses.dataclass(frozen=True)
class Reserve:
    """The time the sensitivity runs leave the guard."""

    per_sample: float  # seconds of one sample through the whole model
    finish: float  # seconds after the guard: each layer's error, the end-to-end timing
    builds: int  # builds of the guard's ladder reserved
    deadline: float  # when the sensitivity runs stop (a time.perf_counter() value)


def reserve(deadline: float, now: float, reference_seconds: float, held: int,
            fit: int) -> Reserve:
    """The reserve for the guard, from the reference run's ``reference_seconds`` over the
    ``held`` samples, in a search that must end at ``deadline``."""
    per_sample = reference_seconds / max(held, 1)
    finish = per_sample * fit + COMPARE_SECONDS
    build = BUILD_MARGIN * per_sample * (held + fit)
    left = deadline - now - finish
    builds = GUARD_BUILDS
    while builds > 1 and left - builds * build < SENSITIVITY_SHARE * left:
        builds -= 1
    return Reserve(per_sample, finish, builds, deadline - finish - builds * build)

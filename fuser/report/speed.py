"""The end-to-end speed check of an ``optimize`` run: the delivered model against the file the
user brought, at the level they deploy with, per batch size, with the interval (computed by
``fuser.runtime.speed``; the rollback of the passes that cost time by
``fuser.speed_check``).

A ratio is ``original median / delivered median`` (> 1: the delivered model is faster). It is
*slower* when its median is below ``1 - tolerance`` and its whole 95 % interval below 1: a
difference the timing resolved and that matters; *unresolved* when the interval stayed wider
than asked and contains 1.
"""

from __future__ import annotations

import dataclasses

from fuser.report.records import Record, doc

#: A delivered model is slower when its median speed-up is below 1 - TOLERANCE (and the
#: whole interval below 1).
TOLERANCE = 0.03

_LEVELS = {"all": "ORT_ENABLE_ALL", "basic": "ORT_ENABLE_BASIC", "disable": "ORT_DISABLE_ALL"}


@dataclasses.dataclass(frozen=True)
class SpeedRatio(Record):
    """The delivered model against the original at one batch size."""

    batch: int = doc("batch size")
    speedup: float = doc("original median / delivered median (> 1: faster)")
    speedup_ci: tuple[float, float] = doc("95 % paired bootstrap interval, [low, high]")
    original_ms: float = doc("the original's median, ms")
    delivered_ms: float = doc("the delivered model's median, ms")
    rounds: int = doc("interleaved rounds timed")
    resolved: bool | None = doc("the interval got as narrow as asked (5 %)", default=None)

    def verdict(self, tolerance: float = TOLERANCE) -> str:
        """``faster``, ``slower``, ``same`` or ``unresolved`` (see the module)."""
        low, high = self.speedup_ci
        if high < 1.0 and self.speedup < 1.0 - tolerance:
            return "slower"
        if low > 1.0:
            return "faster"
        return "same" if self.resolved is not False else "unresolved"

    def text(self) -> str:
        """``1.02x [0.99, 1.05] at batch 1 (0.81 -> 0.79 ms)``."""
        low, high = self.speedup_ci
        unresolved = "" if self.resolved is not False else ", unresolved"
        return (f"{self.speedup:.2f}x [{low:.2f}, {high:.2f}] at batch {self.batch} "
                f"({self.original_ms:.3g} -> {self.delivered_ms:.3g} ms{unresolved})")


def any_slower(ratios: list[SpeedRatio], tolerance: float = TOLERANCE) -> bool:
    """Some batch size's ratio is slower (``SpeedRatio.verdict``)."""
    return any(r.verdict(tolerance) == "slower" for r in ratios)


@dataclasses.dataclass(frozen=True)
class SpeedCheck(Record):
    """The delivered model against the original, and what was rolled back to make it so."""

    level: str = doc("the onnxruntime level deployed with (`all` unless `--level` says)")
    provider: str = doc('"cpu" or "cuda"')
    ratios: list[SpeedRatio] = doc("the delivered model against the original, per batch size")
    tolerance: float = doc("slower means a median below 1 - this, the interval below 1",
                           default=TOLERANCE)
    before_rollback: list[SpeedRatio] = doc(
        "the pipeline's full output against the original, when it was slower and passes "
        "were rolled back (empty otherwise)", default_factory=list)
    rolled_back: list[str] = doc("passes dropped because they cost time",
                                 default_factory=list)
    probes: int = doc("timings the bisection needed", default=0)
    allow_slower: bool = doc("`--allow-slower`: a slower result was kept", default=False)
    note: str = doc("what happened, in a line", default="")

    @property
    def slower(self) -> bool:
        """The delivered model is slower than the original at some batch size."""
        return any_slower(self.ratios, self.tolerance)

    def short(self) -> str:
        """``0.99x [0.97, 1.01] b1, 1.00x [0.99, 1.00] b64 against the original (ORT_ENABLE_ALL,
        cpu)``: the PASSED line's lead."""
        figures = ", ".join(f"{r.speedup:.2f}x [{r.speedup_ci[0]:.2f}, {r.speedup_ci[1]:.2f}] "
                            f"b{r.batch}" + ("?" if r.resolved is False else "")
                            for r in self.ratios)
        return f"{figures} against the original ({_LEVELS.get(self.level, self.level)}, " \
               f"{self.provider})"

    def headline(self) -> str:
        """``1.02x [0.99, 1.05] at batch 1 against the original at ORT_ENABLE_ALL``."""
        level = _LEVELS.get(self.level, self.level)
        figures = ", ".join(r.text() for r in self.ratios)
        return f"{figures} against the original at {level} ({self.provider})"

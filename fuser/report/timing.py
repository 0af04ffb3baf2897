"""The results of timing models (``fuser.runtime.bench``): per model, level and batch size
the statistics of the timed rounds, the provider the timing ran on, and each session's
placement."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from fuser.report.records import Record, doc
from fuser.report.text import session_line


@dataclasses.dataclass(frozen=True)
class Stats(Record):
    """Summary of repeated timings, in milliseconds."""

    median_ms: float = doc("median of the rounds")
    p90_ms: float = doc("90th percentile")
    min_ms: float = doc("fastest round")
    mean_ms: float = doc("mean")
    iqr_ms: float = doc("interquartile range")
    runs: int = doc("rounds timed")

    @classmethod
    def from_seconds(cls, seconds: Sequence[float]) -> Stats:
        """The statistics of round times given in seconds."""
        values = np.asarray(seconds, dtype=np.float64) * 1e3
        if values.size == 0:
            raise ValueError("no timings to summarize")
        q25, median, q75, p90 = np.percentile(values, [25, 50, 75, 90])
        return cls(float(median), float(p90), float(values.min()), float(values.mean()),
                   float(q75 - q25), int(values.size))


@dataclasses.dataclass(frozen=True)
class ProviderChoice(Record):
    """The provider a timing runs on and why (see ``fuser.runtime.providers``)."""

    requested: str = doc('what the user asked for: "auto", "cpu" or "cuda"')
    used: str = doc('"cpu" or "cuda"')
    providers: list[str] = doc("the execution providers the sessions get, in order")
    provider_options: list[dict] = doc("their options, one dict per provider",
                                       schema_type="[{str: str}]", default_factory=list)
    reason: str = doc("why this provider (e.g. CUDA requested but not loadable)", default="")
    cuda_graph: bool = doc("the options turn CUDA graphs on (a probe session accepted them)",
                           default=False)

    @property
    def device(self) -> str:
        """The OrtValue device name inputs and outputs are bound to ("cpu" or "cuda")."""
        return self.used


@dataclasses.dataclass(frozen=True)
class TimingResult(Record):
    """One model at one level and batch size; speed-up against ``reference``."""

    model: str = doc("the model's name")
    level: str = doc("onnxruntime's optimization level: `disable`, `basic` or `all`")
    batch: int = doc("batch size")
    provider: str = doc('"cpu" or "cuda"')
    threads: int = doc("intra-op threads")
    stats: Stats = doc("the timed rounds")
    speedup: float | None = doc("reference median / this median (> 1 is faster)",
                                default=None)
    speedup_ci: tuple[float, float] | None = doc(
        "95 % paired bootstrap interval over rounds, [low, high]", default=None)
    reference: str | None = doc("the model the speed-up is against", default=None)
    resolved: bool | None = doc(
        "timed to resolve: whether the speed-up's interval got as narrow as asked (5 % by "
        "default); null when not asked, or for the reference itself", default=None)


@dataclasses.dataclass(frozen=True)
class SessionInfo(Record):
    """One model's session at one level: the providers it loaded, CUDA graphs, and (on
    CUDA) where its nodes really run, from the session's profile; ``note`` says what fell
    back."""

    model: str = doc("the model's name")
    level: str = doc("optimization level")
    providers: list[str] = doc("the providers the session loaded")
    cuda_graph: bool = doc("timed with CUDA graphs", default=False)
    placement: dict[str, int] | None = doc(
        'on CUDA: nodes per execution provider, from the session\'s profile, e.g. '
        '`{"CPUExecutionProvider": 3, "CUDAExecutionProvider": 50}`; null on the CPU',
        schema_type="{provider: count} or null", default=None)
    note: str = doc("e.g. CUDA graphs refused for this model, timed without them",
                    default="")

    def describe(self) -> str | None:
        """A line for the text report, or None when there is nothing to say (the CPU)."""
        return session_line(self.model, self.level, self.placement, self.note)


@dataclasses.dataclass(frozen=True)
class BenchResult(Record):
    """Timings of one or more models (the report's `timings`, null with `--no-bench`)."""

    timings: list[TimingResult] = doc("per model, level and batch size")
    provider: ProviderChoice = doc("where the timings ran")
    threads: int = doc("intra-op threads of every session")
    cpu: str = doc("the CPU model")
    onnxruntime: str = doc("onnxruntime's version")
    sessions: list[SessionInfo] = doc("per model and level (the first batch size's session)",
                                      default_factory=list)
    busy: str | None = doc("on the CPU, why the machine looked busy when the timing began (a "
                           "reference convolution slower than its best here, the load "
                           "average above the cores), else null", default=None)

    def to_text(self) -> str:
        """A table: model, level, batch, median ms, p90 ms, speed-up [95 % CI]."""
        lines = [f"onnxruntime {self.onnxruntime} on {self.provider.used} "
                 f"({self.provider.reason}); {self.threads} threads; CPU {self.cpu}"]
        rows = [("model", "level", "batch", "median ms", "p90 ms", "speed-up [95% CI]")]
        for t in self.timings:
            if t.speedup is None:
                speed = "-"
            elif t.model == t.reference:
                speed = "1.00 (reference)"
            else:
                ci = t.speedup_ci or (t.speedup, t.speedup)
                speed = f"{t.speedup:.2f} [{ci[0]:.2f}, {ci[1]:.2f}]" + (
                    " unresolved" if t.resolved is False else "")
            rows.append((t.model, t.level, str(t.batch), f"{t.stats.median_ms:.3f}",
                         f"{t.stats.p90_ms:.3f}", speed))
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            cells = [cell.ljust(w) if i < 2 else cell.rjust(w)
                     for i, (cell, w) in enumerate(zip(row, widths, strict=True))]
            lines.append("  ".join(cells).rstrip())
        lines += [line for line in (s.describe() for s in self.sessions) if line]
        if self.busy:
            lines.append(f"warning: {self.busy}")
        return "\n".join(lines)

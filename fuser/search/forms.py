"""The search's candidates: a layer, a form and a rank, with its MACs and measured time.

The forms themselves (their algebra, fits and ONNX nodes) are ``fuser.passes.lowrank.forms``,
one module each; the search reads them through the registry (``form(option.method)``).
"""

from __future__ import annotations

import dataclasses

from fuser.passes.lowrank.forms import LayerData, Rank

__all__ = ["Candidates", "Effect", "LayerData", "Option", "Rank"]


@dataclasses.dataclass(frozen=True)
class Option:
    """One way to rewrite layer ``layer``: a form at a rank, its MACs and latency."""

    layer: int
    method: str
    rank: Rank
    macs: int
    ms: float

    @property
    def key(self) -> tuple:
        return self.layer, self.method, self.rank


@dataclasses.dataclass(frozen=True)
class Effect:
    """What rewriting one layer alone does on the probe samples (``sensitivity.measure``)."""

    drop: float  # the metric's drop (point estimate; 0 when estimated)
    error: float  # the worst output's relative L2 error
    energy: float  # what the factorization kept of its spectrum
    measured: bool = True  # False: estimated from the fit alone (``estimate``)


@dataclasses.dataclass
class Candidates:
    """What the search found per layer: the options timed faster than dense, why a layer
    has none, and the measured effect of each option (``sensitivity``) by ``Option.key``."""

    options: list[list[Option]]
    why: dict[int, str]
    effects: dict[tuple, Effect] = dataclasses.field(default_factory=dict)

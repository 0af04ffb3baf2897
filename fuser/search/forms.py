"""The search's candidates: a layer, a form and a rank, with its MACs and measured time.

The forms themselves (their algebra, fits and ONNX nodes) are ``fuser.passes.lowrank.forms``,
one module each; the search reads them through the registry (``form(option.method)``).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from fuser.passes.lowrank.forms import LayerData, Rank

if TYPE_CHECKING:
    from fuser.search.sensitivity import Effect

__all__ = ["Candidates", "LayerData", "Option", "Rank"]


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


@dataclasses.dataclass
class Candidates:
    """What the search found per layer: the options timed faster than dense, why a layer
    has none, and the measured effect of each option (``sensitivity``) by ``Option.key``."""

    options: list[list[Option]]
    why: dict[int, str]
    effects: dict[tuple, Effect] = dataclasses.field(default_factory=dict)

"""The search's candidates: a layer, a form and a rank, with its MACs and measured time.

The forms themselves (their algebra, fits and ONNX nodes) are ``fuser.passes.lowrank.forms``,
one module each; the search reads them through the registry (``form(option.method)``).
"""

from __future__ import annotations

import dataclasses

from fuser.passes.lowrank.forms import LayerData, Rank

__all__ = ["LayerData", "Option", "Rank"]


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

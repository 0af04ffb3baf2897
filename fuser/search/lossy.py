"""The lossy stage's methods together: ``lowrank`` (``search.compress``), ``int8``
(``int8.quantize``), or both, one after the other.

With both, the low-rank search runs first with ``LOWRANK_SHARE`` of the allowed drop and of
the search time; int8 then quantizes the model it delivered (its factor convs are layers
like any other, so a layer may be both factored and quantized), and its guard judges
against the user's original with the whole allowed drop: the delivered model's drop is
bounded at the same level, whatever the first stage spent. The speed-up is the delivered
model against the input, timed again (not a product of the stages' ratios).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence

import numpy as np
import onnx

from fuser.report.compression import Compression
from fuser.search.calibrate import Feeds
from fuser.search.config import Search, parse_budget
from fuser.search.int8 import INT8, quantize
from fuser.search.latency import LatencyTable
from fuser.search.search import compress

#: With both methods, the low-rank search's share of the allowed drop and of the time: int8
#: is cheap to search (one calibration, a build per rung) but needs room in the drop.
LOWRANK_SHARE = 0.5


def run(model: onnx.ModelProto, calibration: Sequence[Feeds], search: Search, *,
        labels: np.ndarray | None = None, table: LatencyTable | None = None
        ) -> tuple[onnx.ModelProto, Compression]:
    """``model`` through ``search.methods`` (module docstring), and one record of the
    delivered model."""
    if INT8 not in search.methods:
        return compress(model, calibration, search, labels=labels, table=table)
    if "lowrank" not in search.methods:
        return quantize(model, calibration, search, labels=labels, table=table)
    started = time.perf_counter()
    table = table or LatencyTable(batch=search.batch, threads=search.threads,
                                  provider=search.provider)
    factored, first = compress(model, calibration, _first(search), labels=labels, table=table)
    left = max(search.search_time - (time.perf_counter() - started), 0.25 * search.search_time)
    delivered, second = quantize(factored, calibration,
                                 dataclasses.replace(search, search_time=left),
                                 labels=labels, table=table, reference=model)
    return delivered, _joined(first, second, delivered is not factored,
                              time.perf_counter() - started, table, model, delivered,
                              calibration[0])


def _first(search: Search) -> Search:
    """The low-rank stage's settings: its share of the drop and of the time."""
    kind, value = parse_budget(search.budget)
    drop = search.max_accuracy_drop
    budget = f"accuracy={value * LOWRANK_SHARE:g}" if kind == "accuracy" else search.budget
    return dataclasses.replace(
        search, methods=("lowrank",), budget=budget,
        max_accuracy_drop=None if drop is None else drop * LOWRANK_SHARE,
        search_time=search.search_time * LOWRANK_SHARE)


def _joined(first: Compression, second: Compression, quantized: bool, seconds: float,
            table: LatencyTable, model: onnx.ModelProto, delivered: onnx.ModelProto,
            feeds: Feeds) -> Compression:
    """One record of both stages: the low-rank one's layers and the int8 one's, their notes,
    phases by stage; the verdict is int8's (against the original) when it quantized."""
    phases = {f"lowrank {k}": v for k, v in first.phases.items()}
    phases.update({f"int8 {k}": v for k, v in second.phases.items()})
    notes = [*first.notes, *(f"int8: {n}" for n in second.notes)]
    both = {"methods": ["lowrank", INT8], "notes": notes, "phases": phases,
            "seconds": seconds, "calibration_method": second.calibration_method,
            "budget": second.budget}
    if not quantized:
        return dataclasses.replace(first, **both)
    before, after = table.compare(model, delivered, feeds)
    return dataclasses.replace(
        second, layers=[*first.layers, *second.layers], macs_before=first.macs_before,
        macs_after=first.macs_after, not_considered=first.not_considered,
        speedup=before / after, **both)

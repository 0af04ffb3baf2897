"""The lossy stage's methods together: ``lowrank`` (``search.compress``), ``int8``
(``int8.quantize``), or both, one after the other.

With both, the low-rank search runs first with ``LOWRANK_SHARE`` of the search time and of
the allowed drop (the whole drop when the held-out samples cannot resolve that share:
crepe-full's 384 held-out tones resolve 1 point, not half of one); int8 then quantizes the
model it delivered (its factor convs are layers like any other, so a layer may be both
factored and quantized), and its guard judges against the user's original with the whole
allowed drop: the delivered model's drop is bounded at the same level, whatever the first
stage spent. When int8 keeps every layer float, the low-rank result is judged against the
original at the whole drop too: the verdict is always the delivered model's. The speed-up
is the delivered model against the input, timed again (not a product of the stages'
ratios). The original runs on the held-out samples once (``looks.Originals``).

Factors that pay in float need not pay in int8 (a k x k conv in int8 is cheap; its two
factors add a layer and its Q/DQ). So before int8 is searched, the low-rank result and the
original are both quantized whole and timed against each other (``_base``): int8 starts
from the low-rank result only if that is ``speed_margin`` faster. The choice reads times,
never the metric, so the int8 guard's error control is untouched.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence

import numpy as np
import onnx

from fuser.errors import FuserError
from fuser.report.compression import Compression
from fuser.search.calibrate import Feeds
from fuser.search.config import Search, parse_budget
from fuser.search.int8 import INT8, quantize
from fuser.search.latency import LatencyTable
from fuser.search.looks import Originals
from fuser.search.metric import needed_samples
from fuser.search.plan import split
from fuser.search.qdq import Quantizer
from fuser.search.search import compress, samples_in

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
    held = split(calibration, None, search.fit_samples)[1]
    originals = Originals(model, held)  # both stages judge against the original on them
    factored, first = compress(model, calibration, _first(search, samples_in(held)),
                               labels=labels, table=table, originals=originals)
    base, note = _base(model, factored, calibration, search, table)
    left = max(search.search_time - (time.perf_counter() - started), 0.25 * search.search_time)
    delivered, second = quantize(base, calibration, dataclasses.replace(search, search_time=left),
                                 labels=labels, table=table, reference=model,
                                 originals=originals)
    if base is not factored:  # the low-rank layers are not in the delivered model
        first = _undone(first, note)
    record = _joined(first, second, time.perf_counter() - started)
    if delivered is not model:  # the delivered model against the input, timed again
        before, after = table.compare(model, delivered, calibration[0])
        record = dataclasses.replace(record, speedup=before / after)
    return delivered, record


def _base(model: onnx.ModelProto, factored: onnx.ModelProto, calibration: Sequence[Feeds],
          search: Search, table: LatencyTable) -> tuple[onnx.ModelProto, str]:
    """The model int8 starts from: the low-rank result if, both quantized whole, it runs
    ``speed_margin`` faster than the original; else the original, with a note."""
    if factored is model:
        return model, ""
    fit = split(calibration, None, search.fit_samples)[0]
    try:
        whole = [Quantizer(m, fit, "minmax").quantized()  # a timing: any ranges serve,
                 for m in (model, factored)]                   # MinMax's are the cheapest
    except FuserError:  # the int8 stage says why
        return factored, ""
    plain, both = table.compare(whole[0], whole[1], fit[0])
    if both < (1 - search.speed_margin) * plain:
        return factored, ""
    return model, (f"low-rank result not kept: in int8 it ran {both:.3f} ms against "
                   f"{plain:.3f} ms for the original in int8 (ORT_ENABLE_ALL, batch "
                   f"{table.batch}); int8 starts from the original")


def _first(search: Search, held: int) -> Search:
    """The low-rank stage's settings: its share of the time, and of the drop when ``held``
    held-out samples can resolve that share (else the whole drop: a bound the held-out set
    cannot resolve would leave the stage to point estimates; int8 then adds only what keeps
    the whole within it)."""
    kind, value = parse_budget(search.budget)
    drop = search.max_accuracy_drop
    share = LOWRANK_SHARE if drop is not None and held >= needed_samples(
        drop * LOWRANK_SHARE) else 1.0
    budget = f"accuracy={value * share:g}" if kind == "accuracy" else search.budget
    return dataclasses.replace(
        search, methods=("lowrank",), budget=budget,
        max_accuracy_drop=None if drop is None else drop * share,
        search_time=search.search_time * LOWRANK_SHARE)


def _undone(first: Compression, note: str) -> Compression:
    """The low-rank record when its result was not kept: every layer dense, and why."""
    layers = [dataclasses.replace(row, method="dense", rank=0, rank_out=0,
                                  macs_after=row.macs_before, ms_after=row.ms_before, note=note)
              if row.method != "dense" else row for row in first.layers]
    return dataclasses.replace(first, layers=layers, macs_after=first.macs_before,
                               notes=[*first.notes, note])


def _joined(first: Compression, second: Compression, seconds: float) -> Compression:
    """One record of both stages: both stages' layers and notes, phases by stage, and int8's
    verdict (the delivered model against the original, at the whole allowed drop)."""
    phases = {f"lowrank {k}": v for k, v in first.phases.items()}
    phases.update({f"int8 {k}": v for k, v in second.phases.items()})
    return dataclasses.replace(
        second, methods=["lowrank", INT8], phases=phases, seconds=seconds,
        notes=[*first.notes, *(f"int8: {n}" for n in second.notes)],
        layers=[*first.layers, *second.layers], macs_before=first.macs_before,
        macs_after=first.macs_after, not_considered=first.not_considered)

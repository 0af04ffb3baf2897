"""INT8 quantization under the guard: which layers run in int8, chosen by measured latency
and the user's metric (``--lossy int8``; ``qdq`` makes the models).

1. Calibration: the first ``fit_samples`` samples calibrate the activation ranges once
   (onnxruntime's MinMax, Entropy or Percentile calibrator); every other sample is held out
   for the guard, as in the low-rank search (``fuser.search.search``).
2. Latency decides whether int8 is offered at all: the model with every layer quantized is
   timed against the input, interleaved at ORT_ENABLE_ALL on the deploy provider
   (``LatencyTable.compare``). onnxruntime's CPU provider runs the fused ``QLinearConv``
   regions faster; a provider without int8 kernels (CUDA's convolutions) runs each
   ``DequantizeLinear`` and a float Conv, slower: there int8 is not offered, and the note
   gives both times.
3. Sensitivity (``int8_ranking``): each layer's own error, the growth of the relative
   error across its region, from one run of the float and one of the all-int8 model on
   the probe samples; then the user's metric on the layers of largest error, each kept
   float alone: those that gain go into int8 last.
4. Mixed precision by the guard: the layers in order of their own error, least first; state
   k quantizes the first k (the others kept float, ``nodes_to_exclude``); a state's
   predicted error is the sum of its layers' errors. The guard's ladder
   (``guard.largest_accepted``: rungs at geometric shares of the whole model's predicted
   error, judged fewest layers first by the user's metric on the held-out samples, look by
   look, until one is refused; three rungs, ``_Builder.rungs``) delivers the most layers
   quantized that it accepts.
5. End to end: the delivered model must be ``speed_margin / 2`` faster than the input, or
   the input is delivered.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence

import numpy as np
import onnx

from fuser import ir as graph_io
from fuser.errors import FuserError
from fuser.report.compression import Compression, LayerChoice
from fuser.runtime import sessions as runtime
from fuser.runtime.runners import Progress
from fuser.runtime.sessions import RuntimeRefusedError
from fuser.search.budget import Budget
from fuser.search.build import outputs, relative_error
from fuser.search.calibrate import Feeds
from fuser.search.config import CALIBRATIONS, Search
from fuser.search.forms import Option
from fuser.search.guard import Delivered, guard, largest_accepted
from fuser.search.int8_ranking import ranked
from fuser.search.latency import LatencyTable
from fuser.search.looks import Looks, Originals
from fuser.search.metric import Metric, point_drop
from fuser.search.plan import split
from fuser.search.qdq import Quantizer
from fuser.search.record import quantization
from fuser.search.search import Run, end_to_end, judging_looks, latency_table, samples_in

#: The name of the form in reports and options (its "rank" is the bits).
INT8, BITS = "int8", 8



@dataclasses.dataclass(frozen=True)
class _Layer:
    name: str


class _Builder:
    """The guard's builder for int8 states: each a model from the ``Quantizer``."""

    label = "int8"
    #: The ladder's rungs at ``RATIO ** m`` of the whole model's predicted error, m in -2..0
    #: (half, 71 %, all): each int8 build is judged on every held-out sample it needs (a
    #: pass over them), and three such builds fit in the default time on the realzoo's
    #: detectors where the low-rank ladder's seven did not.
    rungs = range(-2, 1)

    def __init__(self, model: onnx.ModelProto, quantizer: Quantizer) -> None:
        self.model, self.quantizer = model, quantizer
        self.layers = [_Layer(name) for name in quantizer.layers]
        self.energies: dict[int, float] = {}

    def build(self, chosen: list[Option | None]) -> onnx.ModelProto:
        return self.quantizer.quantized({layer.name for layer, o in zip(self.layers, chosen,
                                                                         strict=True) if o is None})

    def kept(self, model: onnx.ModelProto) -> onnx.ModelProto:
        return model  # every build is a new model


def quantize(model: onnx.ModelProto, calibration: Sequence[Feeds], search: Search, *,
             labels: np.ndarray | None = None, table: LatencyTable | None = None,
             reference: onnx.ModelProto | None = None, originals: Originals | None = None
             ) -> tuple[onnx.ModelProto, Compression]:
    """``model`` with the layers the guard accepts in int8 (module docstring), and the record.

    ``reference``: the model the guard judges against (the user's original, when ``model``
    is the low-rank search's output); ``model`` itself by default. ``originals``: its
    held-out outputs, where the low-rank stage ran them. The settings are the
    low-rank search's (``config.Search``); a budget other than ``accuracy=D`` only bounds
    the drop. Without a layer in int8 the record says why, and ``model`` is returned.
    """
    budget = Budget(search.search_time)
    run = Run(search, *search.budget_parts(), budget, Progress(search.progress))
    fit, held, fit_labels, labels = split(calibration, labels, search.fit_samples)
    looks, _ = judging_looks(model if reference is None else reference, calibration, fit,
                             held, labels, run, originals)
    table = latency_table(table, run)
    notes: list[str] = []
    run.line.show("int8: calibrating the activation ranges")
    try:
        quantizer = calibrated(model, (fit, fit_labels), search, looks.metric, notes)
    except FuserError as error:
        return model, _unchanged(model, search, [f"int8 not offered: {error}"], budget, looks)
    budget.lap("calibration")
    notes += _repairs(search, quantizer)
    whole, refused = _whole(quantizer)
    if whole is None:
        return model, _unchanged(model, search, [*notes, refused], budget, looks)
    before, after = _timed(table, model, whole, fit[0], budget)
    if after >= (1 - search.speed_margin) * before:
        notes.append(f"int8 not offered: every layer in int8 ran {after:.3f} ms against "
                     f"{before:.3f} ms for the float model ({_provider(table)}, "
                     f"ORT_ENABLE_ALL, batch {table.batch})")
        return model, _unchanged(model, search, notes, budget, looks)
    run.line.show(f"int8: the error of each of {len(quantizer.layers)} layers")
    own, order = ranked(model, quantizer, whole, (fit, fit_labels), looks.metric,
                        budget.sensitivity, notes)
    budget.lap("sensitivity")
    states, errors = _states(order, own)
    builder = _Builder(model, quantizer)
    got = largest_accepted(builder, states, errors, max(errors[-1], 1e-12), looks, notes,
                           run.line, budget.guard)
    _grouped(notes, got, len(own))
    speedup = end_to_end(model, got, fit[0], table, notes, search.speed_margin)
    if speedup is None or not any(got.chosen):
        return model, _unchanged(model, search, notes, budget, looks)
    passed, reason = guard(got.verdict, run.allowed, True)
    budget.lap("build and guard")
    shapes = graph_io.infer_shapes(quantizer.model, search.input_shapes)
    macs = graph_io.layer_macs(quantizer.model, shapes)
    rows = _rows(quantizer.model, quantizer.layers, got.chosen, own, macs)
    record = quantization(search, got, rows, notes, samples_in(fit))
    total = graph_io.mac_count(quantizer.model, shapes) or 0
    return got.model, dataclasses.replace(
        record, macs_before=total, macs_after=total, guard=reason, passed=passed,
        allowed_drop=run.allowed, seconds=time.perf_counter() - budget.start,
        phases=budget.phases, search_time=search.search_time, speedup=speedup,
        back_off_steps=max(got.builds - 1, 0))


def calibrated(model: onnx.ModelProto, fit: tuple[list[Feeds], np.ndarray | None],
               search: Search, metric: Metric, notes: list[str]) -> Quantizer:
    """The ``Quantizer`` of ``search.calibration_method``; with ``auto``, of the calibrator
    whose all-int8 model loses least of the user's ``metric`` on the fitting samples (``fit``:
    batches and labels), the relative output error breaking ties (never the held-out
    samples: the guard's error control is untouched), with a note of what each read.
    FuserError when every calibrator fails."""
    fit, labels = fit
    methods = CALIBRATIONS if search.calibration_method == "auto" else \
        (search.calibration_method,)
    found, failure = {}, None
    for method in methods:
        try:
            found[method] = Quantizer(model, fit, method, correct_bias=search.int8_bias_correction,
                                      equalize=search.int8_equalize)
        except FuserError as error:
            failure = error
    if not found:
        raise failure
    if len(found) == 1:
        return next(iter(found.values()))
    reference = outputs(model, fit, level="all")  # every fitting sample (16 read noisier)
    read = {}
    for method, quantizer in found.items():
        new = outputs(quantizer.quantized(), fit, level="all")
        read[method] = (point_drop(metric, reference, new, labels),
                        relative_error(reference, new))
    best = min(read, key=read.get)
    notes.append(f"int8 ranges from the {best} calibrator (every layer in int8, on the "
                 "fitting samples: " + ", ".join(f"{m} drop {d:.3g}, output error {e:.3g}"
                                                for m, (d, e) in read.items()) + ")")
    return found[best]


def _timed(table: LatencyTable, model: onnx.ModelProto, whole: onnx.ModelProto,
           feeds: Feeds, budget: Budget) -> tuple[float, float]:
    """The float and the all-int8 model's ms, interleaved; the guard's builds (int8 models)
    then budgeted at the int8 model's speed."""
    before, after = table.compare(model, whole, feeds)
    budget.lap("latency")
    budget.builds_run_faster(min(after / before, 1.0))
    return before, after


def _whole(quantizer: Quantizer) -> tuple[onnx.ModelProto | None, str]:
    """The model with every layer in int8, or None and why int8 is not offered: onnxruntime's
    quantizer failed, or made a model onnxruntime cannot load."""
    try:
        whole = quantizer.quantized()
        runtime.session(whole, level="all", label="the int8 model")
    except RuntimeRefusedError as error:
        return None, f"int8 not offered: {error} (made by onnxruntime's quantizer)"
    except FuserError as error:
        return None, f"int8 not offered: {error}"
    return whole, ""


def _repairs(search: Search, quantizer: Quantizer) -> list[str]:
    """Notes on the repairs asked for: what they reached."""
    notes = []
    if search.int8_equalize:
        notes.append(f"cross-layer equalization: {quantizer.equalized} Conv pair(s)")
    if search.int8_bias_correction:
        notes.append(f"bias correction: {len(quantizer.shifts)} of {len(quantizer.layers)} "
                     "layers (a bias read by one layer alone)")
    return notes


def _grouped(notes: list[str], got: Delivered, layers: int) -> None:
    """The guard's "backed off" notes, one per layer, as one line."""
    backed = [n for n in notes if n.startswith("backed off ")]
    if backed:
        notes[:] = [n for n in notes if not n.startswith("backed off ")]
        names = ", ".join(got.backed_off[:5]) + (", ..." if len(got.backed_off) > 5 else "")
        notes.append(f"kept float after the guard's ladder: {len(backed)} of {layers} layers "
                     f"with their regions ({names})")


def _provider(table: LatencyTable) -> str:
    """The provider the table timed on, as onnxruntime names it."""
    return str(getattr(table.provider, "used", table.provider))


def _states(order: list[int], own: list[float]) -> tuple[list[list[Option | None]], list[float]]:
    """State k: the first k layers of ``order`` in int8; its predicted error, the sum of
    their own errors."""
    states, errors, chosen, total = [], [], [None] * len(own), 0.0
    states.append(list(chosen))
    errors.append(0.0)
    for i in order:
        chosen[i] = Option(i, INT8, BITS, 0, 0.0)
        total += own[i]
        states.append(list(chosen))
        errors.append(total)
    return states, errors


def _rows(model: onnx.ModelProto, layers: list[str], chosen: list[Option | None],
          own: list[float], macs: dict[str, int]) -> list[LayerChoice]:
    """One row per layer the quantizer could take: int8 or kept float, with its own error
    (``response_error``) and MACs (0 where its shapes are unknown)."""
    ops = {n.name: n.op_type for n in model.graph.node}
    rank = {i: k + 1 for k, i in enumerate(sorted(range(len(own)), key=lambda i: -own[i]))}
    rows = []
    for i, name in enumerate(layers):
        quantized = chosen[i] is not None
        note = "" if quantized else (f"kept float: its own error ranks {rank[i]} of "
                                     f"{len(own)} (the guard's ladder stopped before it)")
        rows.append(LayerChoice(name, ops[name], INT8 if quantized else "dense",
                                BITS if quantized else 0, macs.get(name, 0),
                                macs.get(name, 0), 0.0, 0.0, 1.0, own[i], note))
    return rows


def _unchanged(model: onnx.ModelProto, search: Search, notes: list[str], budget: Budget,
               looks: Looks) -> Compression:
    """The record when no layer is delivered in int8: the input, judged against itself, or
    against the original the looks judge by (``quantize``'s ``reference``: the low-rank
    result is then judged at the whole allowed drop)."""
    if looks.model is model:
        verdict, reference = looks.original()
        got = Delivered(model, reference, verdict, reference, [], [], 0, looks.metric.name)
        passed = True if looks.allowed is not None else None
        reason = "no layer in int8: the model is the input"
    else:
        verdict, new, reference = looks.judged(model)
        got = Delivered(model, new, verdict, reference, [], [], 1, looks.metric.name)
        passed, reason = guard(verdict, looks.allowed, True)
        reason = f"no layer in int8; the input against the original: {reason}"
    record = quantization(search, got, [], notes, 0)
    macs = graph_io.mac_count(model, graph_io.infer_shapes(model, search.input_shapes)) or 0
    return dataclasses.replace(record, guard=reason, macs_before=macs, macs_after=macs,
                               passed=passed, allowed_drop=looks.allowed, seconds=time.perf_counter() - budget.start,
                               phases=budget.phases, search_time=search.search_time,
                               speedup=1.0)

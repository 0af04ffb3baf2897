"""The search's result record (``fuser.report.compression.Compression``) and the guard's
verdict in one line."""

from __future__ import annotations

from collections.abc import Mapping

from fuser import ir as graph_io
from fuser.report.compression import Compression, LayerChoice, Rung
from fuser.search.build import agreement, relative_error
from fuser.search.config import Search
from fuser.search.forms import Candidates, Option
from fuser.search.guard import Delivered
from fuser.search.plan import Plan


def compression(search: Search, plan: Plan, found: Candidates, got: Delivered,
                errors: list[float], notes: list[str], fit_samples: int,
                states: list[list[Option | None]] | None = None) -> Compression:
    """The record of the delivered model (times and the guard's verdict are added by the
    caller): ``errors`` are its layers' response errors, ``states`` the trajectory's
    choices (the ladder's rungs are some of them)."""
    top1, verdict = got.metric == "top1", got.verdict
    result, new, reference = got.model, got.outputs, got.reference
    return Compression(
        search.budget, layer_choices(plan, got.chosen, errors, found, got.energies),
        plan.total_macs,
        graph_io.mac_count(result, graph_io.infer_shapes(result, search.input_shapes)) or 0,
        agreement(reference, new), relative_error(reference, new),
        verdict.before if top1 else None, verdict.after if top1 else None, got.backed_off,
        0.0, notes, plan.not_considered, metric=got.metric, metric_before=verdict.before,
        metric_after=verdict.after, drop=verdict.drop, drop_interval=list(verdict.interval),
        drop_confidence=verdict.confidence, interval_method=verdict.method,
        held_out_samples=verdict.rows or verdict.samples, distinct_held_out=verdict.samples,
        held_out_total=verdict.held_rows or verdict.rows or verdict.samples,
        fit_samples=fit_samples, ladder=ladder(got, plan.dense_ms, states))


def ladder(got: Delivered, dense_ms: list[float] | None = None,
           states: list[list[Option | None]] | None = None) -> list[Rung]:
    """The guard's rungs as records; with the trajectory's ``states`` and the layers'
    dense times, each rung's layers timed alone as chosen."""
    rungs = []
    last = len(states) - 1 if states else max((k for k, _, _ in got.rungs), default=0)
    for k, verdict, accepted in got.rungs:
        ms = dense = None
        if states is not None and dense_ms is not None:
            ms = sum(d if o is None else o.ms for d, o in zip(dense_ms, states[k], strict=True))
            dense = sum(dense_ms)
        rungs.append(Rung(k, last, verdict.drop, list(verdict.interval), verdict.confidence,
                          verdict.samples, accepted, ms, dense))
    return rungs


def layer_choices(plan: Plan, chosen: list[Option | None], errors: list[float],
                  found: Candidates, energies: Mapping[int, float]) -> list[LayerChoice]:
    rows = []
    for i, layer in enumerate(plan.layers):
        option, offered = chosen[i], found.options[i]
        measured = sum(o.key in found.effects and found.effects[o.key].measured
                       for o in offered)
        if option is None:
            note = found.why.get(i) or ("sensitivity not measured within the search time"
                                        if offered and not measured else "")
            rows.append(LayerChoice(layer.name, layer.node.op, "dense", 0, layer.macs(),
                                    layer.macs(), plan.dense_ms[i], plan.dense_ms[i], 1.0,
                                    errors[i], note, options_measured=measured))
            continue
        rank, rank_out = option.rank if isinstance(option.rank, tuple) else (option.rank, 0)
        effect = found.effects[option.key]
        rows.append(LayerChoice(
            layer.name, layer.node.op, option.method, rank, layer.macs(), option.macs,
            plan.dense_ms[i], option.ms, energies.get(i, 1.0), errors[i],
            "" if effect.measured else "effect estimated from the fit alone (not run)",
            rank_out=rank_out, drop_alone=effect.drop if effect.measured else None,
            options_measured=measured))
    return rows


def quantization(search: Search, got: Delivered, layers: list[LayerChoice],
                 notes: list[str], fit_samples: int) -> Compression:
    """The record of an int8 search's delivered model (``fuser.search.int8``; times, the
    speed-up and the guard's verdict are added by the caller)."""
    verdict, new, reference = got.verdict, got.outputs, got.reference
    top1 = got.metric == "top1"
    return Compression(
        search.budget, layers, 0, 0, agreement(reference, new), relative_error(reference, new),
        verdict.before if top1 else None, verdict.after if top1 else None, got.backed_off,
        0.0, notes, [], metric=got.metric, metric_before=verdict.before,
        metric_after=verdict.after, drop=verdict.drop, drop_interval=list(verdict.interval),
        drop_confidence=verdict.confidence, interval_method=verdict.method,
        held_out_samples=verdict.rows or verdict.samples, distinct_held_out=verdict.samples,
        held_out_total=verdict.held_rows or verdict.rows or verdict.samples,
        fit_samples=fit_samples, methods=["int8"],
        calibration_method=search.calibration_method, ladder=ladder(got))

"""The search's result record (``fuser.report.compression.Compression``) and the guard's
verdict in one line."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import onnx

from fuser import ir as graph_io
from fuser.report.compression import Compression, LayerChoice
from fuser.search.build import agreement, relative_error
from fuser.search.forms import Option
from fuser.search.metric import Judgement
from fuser.search.plan import Plan


def compression(budget: str, plan: Plan, chosen: list[Option | None], errors: list[float],
                why: dict[int, str], effects: Mapping, options: list[list[Option]],
                energies: Mapping[int, float], result: onnx.ModelProto,
                input_shapes: Mapping[str, Sequence[int]] | None, reference: dict,
                new: dict, metric: str, verdict: Judgement, backed_off: list[str],
                notes: list[str], fit_samples: int) -> Compression:
    """The record (times and the guard's verdict are added by the caller)."""
    top1 = metric == "top1"
    return Compression(
        budget, layer_choices(plan, chosen, errors, why, effects, options, energies),
        plan.total_macs,
        graph_io.mac_count(result, graph_io.infer_shapes(result, input_shapes)) or 0,
        agreement(reference, new), relative_error(reference, new),
        verdict.before if top1 else None, verdict.after if top1 else None, backed_off, 0.0,
        notes, plan.not_considered, metric=metric, metric_before=verdict.before,
        metric_after=verdict.after, drop=verdict.drop, drop_interval=list(verdict.interval),
        drop_confidence=verdict.confidence, interval_method=verdict.method,
        held_out_samples=verdict.rows or verdict.samples, distinct_held_out=verdict.samples,
        fit_samples=fit_samples)


def layer_choices(plan: Plan, chosen: list[Option | None], errors: list[float],
                  why: dict[int, str], effects: Mapping, options: list[list[Option]],
                  energies: Mapping[int, float]) -> list[LayerChoice]:
    rows = []
    for i, layer in enumerate(plan.layers):
        option = chosen[i]
        measured = sum(o.key in effects for o in options[i])
        if option is None:
            note = why.get(i) or ("sensitivity not measured within the search time"
                                  if options[i] and not measured else "")
            rows.append(LayerChoice(layer.name, layer.node.op, "dense", 0, layer.macs(),
                                    layer.macs(), plan.dense_ms[i], plan.dense_ms[i], 1.0,
                                    errors[i], note, options_measured=measured))
            continue
        rank, rank_out = option.rank if isinstance(option.rank, tuple) else (option.rank, 0)
        rows.append(LayerChoice(
            layer.name, layer.node.op, option.method, rank, layer.macs(), option.macs,
            plan.dense_ms[i], option.ms, energies.get(i, 1.0), errors[i], "",
            rank_out=rank_out, drop_alone=effects[option.key].drop, options_measured=measured))
    return rows

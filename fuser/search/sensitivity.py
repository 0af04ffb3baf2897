"""Each layer's sensitivity: the task metric when that layer alone is rewritten (the rest of
the network dense), for every form and rank the search offers it (AIMET's greedy
compression-ratio selection measures the same thing on PyTorch models).

Only the part of the network from the layer on runs (``cut.suffix``), fed with the original
network's upstream tensors, on the probe samples (the first fitting batches); the metric's
drop there and the relative output error are the option's ``Effect``. Layers are measured
in order of their dense latency (the largest first) until the ``deadline``; a layer not
reached is offered no rewrite (the report counts the options measured).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence

import numpy as np
import onnx

from fuser import ir as graph_io
from fuser.runtime import sessions as runtime
from fuser.runtime.runners import Progress
from fuser.search import cut, forms
from fuser.search.build import relative_error, samples_first
from fuser.search.calibrate import Feeds
from fuser.search.forms import LayerData, Option
from fuser.search.metric import Metric, point_drop


@dataclasses.dataclass(frozen=True)
class Effect:
    """What rewriting one layer alone does on the probe samples."""

    drop: float  # the metric's drop (point estimate)
    error: float  # the worst output's relative L2 error
    energy: float  # what the factorization kept of its spectrum


@dataclasses.dataclass
class Probe:
    """The samples sensitivities are measured on, with the original's outputs on them."""

    batches: list[Feeds]
    labels: np.ndarray | None
    reference: dict[str, np.ndarray]


def measure(model: onnx.ModelProto, layers: Sequence, data: Sequence[LayerData],
            options: list[list[Option]], order: Sequence[int], probe: Probe, metric: Metric,
            reconstruction: str, deadline: float | None, line: Progress) -> dict[tuple, Effect]:
    """``{option.key: Effect}`` for the options of the layers in ``order`` (indices, the
    most promising first) reached before ``deadline``."""
    effects: dict[tuple, Effect] = {}
    for i in order:
        if not options[i]:
            continue
        if deadline is not None and time.perf_counter() > deadline:
            break
        layer, key = layers[i], layers[i].node.outputs[0].name
        side = _upstream(model, key, probe.batches)
        base = cut.suffix(model, key, {k: v.dtype for k, v in side[0].items()})
        for option in options[i]:
            line.show(f"low-rank: sensitivity of {layer.name} {option.method} rank "
                      f"{_rank_text(option.rank)} ({len(effects) + 1} measured)")
            factors = forms.fit(layer, option.method, option.rank, data[i], reconstruction)
            graph = graph_io.to_graph(base)
            node = next(n for n in graph.nodes if n.outputs and n.outputs[0].name == key)
            forms.apply(graph, dataclasses.replace(layer, node=node), option.method, factors)
            graph.cleanup().toposort()
            new = _run(graph_io.to_model(graph, template=base), side, probe)
            effects[option.key] = Effect(point_drop(metric, probe.reference, new, probe.labels),
                                         relative_error(probe.reference, new), factors.energy)
    return effects


def _rank_text(rank: forms.Rank) -> str:
    return "x".join(map(str, rank)) if isinstance(rank, tuple) else str(rank)


def _upstream(model: onnx.ModelProto, key: str, batches: list[Feeds]) -> list[dict]:
    """The tensors the suffix from ``key`` reads, on every probe batch."""
    names = cut.upstream_inputs(model, key)
    graph_inputs = {i.name for i in model.graph.input}
    computed = [n for n in names if n not in graph_inputs]
    sess = runtime.session(cut.prefix(model, computed), level="all") if computed else None
    side = []
    for feeds in batches:
        values = dict(zip(computed, sess.run(computed, dict(feeds)), strict=True)) if sess \
            else {}
        values.update({n: feeds[n] for n in names if n in graph_inputs})
        side.append(values)
    return side


def _run(model: onnx.ModelProto, side: list[dict], probe: Probe) -> dict[str, np.ndarray]:
    """The suffix's outputs on the probe batches; outputs it does not compute are the
    original's (they do not depend on the layer)."""
    sess = runtime.session(model, level="all")
    names = [o.name for o in sess.get_outputs()]
    collected: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for feeds in side:
        for name, value in zip(names, sess.run(names, feeds), strict=True):
            collected[name].append(value)
    sizes = [len(next(iter(feeds.values()))) for feeds in probe.batches]
    new = dict(probe.reference)
    new.update({n: samples_first(v, sizes) for n, v in collected.items()})
    return new

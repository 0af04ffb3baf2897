"""The search's plan: the layers it can consider, their calibration data in the original
network, the latency of each dense layer, and the options (form, rank) measurably faster
than the dense layer."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np
import onnx

from fuser import ir as graph_io
from fuser.passes.lowrank.factorize import Factors
from fuser.passes.lowrank.forms import form, searched
from fuser.passes.lowrank.layers import Layer, candidates
from fuser.passes.match import describe
from fuser.search.build import Edit, factor_model, kept, taken
from fuser.search.calibrate import Feeds, sample
from fuser.search.forms import LayerData, Option
from fuser.search.latency import LatencyTable

#: Each form is offered at the ranks that keep these shares of the dense layer's MACs.
FRACTIONS = (0.15, 0.3, 0.5, 0.7)
#: The in-context factor is measured only when the savings timed alone are at least this
#: share of the whole model's time (``in_context``).
RESOLVED = 0.1


@dataclasses.dataclass
class Plan:
    """What the search knows of the model before it chooses."""

    layers: list[Layer]
    not_considered: list[str]
    data: list[LayerData]  # each layer's samples in the original network
    dense_ms: list[float]
    total_macs: int

    @property
    def order(self) -> list[int]:
        """Layer indices, the slowest dense layer first."""
        return sorted(range(len(self.layers)), key=lambda i: -self.dense_ms[i])


def split(calibration: Sequence[Feeds], labels: np.ndarray | None, fit_samples: int
          ) -> tuple[list[Feeds], list[Feeds], np.ndarray | None, np.ndarray | None]:
    """Fitting batches (the first ones, until ``fit_samples`` samples, leaving one batch at
    least), the held-out batches (every other one), and the labels of each. With a single
    batch, it is both (the report says so)."""
    sizes = [len(next(iter(b.values()))) for b in calibration]
    count = 1
    while count < len(calibration) - 1 and sum(sizes[:count]) < fit_samples:
        count += 1
    fit, held = list(calibration[:count]), list(calibration[count:]) or list(calibration)
    fit_labels = held_labels = None
    if labels is not None:
        labels = label_array(labels)
        start = sum(sizes[:count]) if len(calibration) > 1 else 0
        fit_labels, held_labels = labels[:sum(sizes[:count])], labels[start:sum(sizes)]
    return fit, held, fit_labels, held_labels


def label_array(labels: object) -> np.ndarray:
    """Labels as an array indexable by sample: ragged ones (a list of boxes per image, text)
    become an object array."""
    try:
        return np.asarray(labels)
    except ValueError:  # inhomogeneous: one object per sample
        array = np.empty(len(labels), dtype=object)
        array[:] = list(labels)
        return array


def make_plan(model: onnx.ModelProto, fit: list[Feeds], table: LatencyTable,
              input_shapes: Mapping[str, Sequence[int]] | None, samples: int,
              seed: int) -> Plan:
    layers, not_considered = considered(model, input_shapes)
    data = [LayerData(s.responses(), s.responses(), s.inputs())
            for s in sample(model, layers, fit, samples, seed)]
    total = graph_io.mac_count(model, graph_io.infer_shapes(model, input_shapes)) or 0
    return Plan(layers, not_considered, data, [table.ms(layer) for layer in layers], total)


def offer(plan: Plan, table: LatencyTable, speed_margin: float, aim: float
          ) -> tuple[list[list[Option]], dict[int, str]]:
    """Per layer, the options measured at least ``speed_margin`` faster than the dense layer
    (and why a layer has none). Layers are timed slowest first, each form at the MACs share
    nearest ``aim`` (the budget's fraction, offered too) first, so that a time budget cuts
    the least useful measurements."""
    options: list[list[Option]] = [[] for _ in plan.layers]
    why = {}
    fractions = sorted({*FRACTIONS, min(aim, 1.0)}, key=lambda f: abs(f - aim))
    for i in plan.order:
        layer = plan.layers[i]
        for shape in searched(layer):
            for fraction in fractions:
                rank = shape.rank_at(layer, fraction)
                if rank is None or any(o.rank == rank and o.method == shape.name
                                       for o in options[i]):
                    continue
                ms = table.ms(layer, shape.name, rank)
                if ms < (1 - speed_margin) * plan.dense_ms[i]:
                    options[i].append(Option(i, shape.name, rank, shape.macs(layer, rank), ms))
        options[i] = undominated(options[i])
        if not options[i]:
            why[i] = "no rank is faster than the dense layer"
    return options, why


def in_context(plan: Plan, options: list[list[Option]], model: onnx.ModelProto,
               table: LatencyTable, feeds: Feeds, speed_margin: float
               ) -> tuple[list[list[Option]], dict[int, str], float]:
    """The options with their savings measured in context, and the factor that did it.

    Layers timed alone save more than they save in the network (onnxruntime's fusions and
    layout changes around a layer, the caches it shares): 2-4x more on the real zoo. So the
    whole model is timed against a twin with every layer that has options at its first
    one (nearest the budget; random weights: a time does not depend on values), interleaved
    at ORT_ENABLE_ALL (``LatencyTable.compare``), and the ratio ``k`` of the saving in
    context to the summed savings alone (clipped to [0, 1]) scales every option's saving:
    ``ms' = dense - k (dense - ms)``. Options no longer ``speed_margin`` faster than their
    dense layer are dropped (the reason is given per layer). When the savings alone add up
    to less than ``RESOLVED`` of the whole model's time, two timings of the whole cannot
    resolve them (ppocr-v2-cls read k = 0.05 in one run, 1.0 in the next): no scaling, and
    the end-to-end check after the guard decides."""
    moved = [(i, offered[0]) for i, offered in enumerate(options) if offered]
    alone = sum(plan.dense_ms[i] - o.ms for i, o in moved)
    if not moved or alone <= 0:
        return options, {}, 1.0
    twin, rng = kept(model), np.random.default_rng(0)
    for i, option in moved:
        layer, shape = plan.layers[i], form(option.method)
        weights = [rng.standard_normal(w) for w in shape.shapes(layer, option.rank)]
        Edit.splice(twin, factor_model(layer, option.method, Factors(weights, option.rank, 1.0),
                                       taken(twin)))
    before, after = table.compare(model, twin, feeds)
    if alone < RESOLVED * before:  # a saving this small is within the timing noise
        return options, {}, 1.0
    factor = float(np.clip((before - after) / alone, 0.0, 1.0))
    scaled, why = [], {}
    for i, offered in enumerate(options):
        dense = plan.dense_ms[i]
        kept_options = [dataclasses.replace(o, ms=dense - factor * (dense - o.ms)) for o in offered]
        kept_options = [o for o in kept_options if o.ms < (1 - speed_margin) * dense]
        if offered and not kept_options:
            why[i] = (f"no rank is faster than the dense layer in context (the rewrites "
                      f"saved {factor:.0%} in the network of what they saved timed alone)")
        scaled.append(kept_options)
    return scaled, why, factor


def undominated(options: list[Option]) -> list[Option]:
    """Drop each option that a higher rank of the same form matches or beats in latency
    (a lower rank is only worth its error if it is faster)."""
    def size(option: Option) -> int:
        return int(np.prod(option.rank))

    return [o for o in options if not any(
        p.method == o.method and size(p) > size(o) and p.ms <= o.ms for p in options)]


def candidate_layers(model: onnx.ModelProto,
                     input_shapes: Mapping[str, Sequence[int]] | None = None) -> list[Layer]:
    return considered(model, input_shapes)[0]


def considered(model: onnx.ModelProto, input_shapes: Mapping[str, Sequence[int]] | None
               ) -> tuple[list[Layer], list[str]]:
    """The candidate layers, and each Conv/Gemm/MatMul left out with the reason."""
    graph = graph_io.to_graph(model)
    with graph_io.annotated_at(graph, model, input_shapes):
        layers, skipped = candidates(graph)
    left = [f"{describe(la.node)}: weight on the left (W @ X) is not factorized"
            for la in layers if la.weight_on_left]
    return [la for la in layers if not la.weight_on_left], [*skipped, *left]

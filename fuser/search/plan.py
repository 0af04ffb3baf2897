"""The search's plan: which layers it can consider, their calibration responses and
spectra, the latency of each dense layer, the ranks measurably faster than dense, and the
first allocation under the budget."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np
import onnx

from fuser import ir as graph_io
from fuser.passes.lowrank.layers import Layer, candidates
from fuser.passes.lowrank.ranks import DENSE, allocate
from fuser.passes.match import describe
from fuser.runtime import sessions as runtime
from fuser.search.calibrate import Feeds, layer_outputs, responses
from fuser.search.latency import LatencyTable


@dataclasses.dataclass
class Plan:
    """What the search knows of the model before it chooses ranks."""

    layers: list[Layer]
    not_considered: list[str]
    keys: list[str]  # each layer's output tensor
    targets: list[np.ndarray]  # each layer's calibration responses
    spectra: list[np.ndarray]
    dense_ms: list[float]
    grids: list[list[int]]
    total_macs: int


def split(calibration: Sequence[Feeds], labels: np.ndarray | None, fit_samples: int
           ) -> tuple[list[Feeds], list[Feeds], np.ndarray | None]:
    """Fitting batches (the first ones, until ``fit_samples`` samples, leaving one batch at
    least), the held-out batches (every other one), and the held-out samples' labels. With a
    single batch, it is both (the report says so)."""
    sizes = [len(next(iter(b.values()))) for b in calibration]
    count = 1
    while count < len(calibration) - 1 and sum(sizes[:count]) < fit_samples:
        count += 1
    fit, held = list(calibration[:count]), list(calibration[count:]) or list(calibration)
    if labels is not None:
        start = sum(sizes[:count]) if len(calibration) > 1 else 0
        labels = np.asarray(labels)[start:sum(sizes)]
    return fit, held, labels


def make_plan(model: onnx.ModelProto, fit: list[Feeds], table: LatencyTable,
          input_shapes: Mapping[str, Sequence[int]] | None, samples: int, seed: int) -> Plan:
    layers, not_considered = considered(model, input_shapes)
    keys = [layer.node.outputs[0].name for layer in layers]
    original = layer_outputs(model, keys, fit)
    targets = [responses(layer, original[k], samples, seed + i)
               for i, (layer, k) in enumerate(zip(layers, keys, strict=True))]
    total = graph_io.mac_count(model, graph_io.infer_shapes(model, input_shapes)) or 0
    return Plan(layers, not_considered, keys, targets, [spectrum(y) for y in targets],
                 [table.ms(layer) for layer in layers], [grid(la) for la in layers], total)


def faster_ranks(plan: Plan, table: LatencyTable, speed_margin: float
             ) -> tuple[list[list[int]], dict[int, str]]:
    """Per layer, the ranks measurably faster than the dense layer (and why none is)."""
    options, choices = [], {}
    for i, layer in enumerate(plan.layers):
        step = max(1, layer.out_channels // 64)
        faster = [r for r in range(layer.max_rank(form_of(layer)), 0, -step)
                  if table.interpolate(layer, form_of(layer), r, plan.grids[i])
                  < (1 - speed_margin) * plan.dense_ms[i]]
        options.append(faster)
        if not faster:
            choices[i] = "no rank is faster than the dense layer"
    return options, choices


def initial_ranks(model: onnx.ModelProto, plan: Plan, table: LatencyTable, kind: str,
                   fraction: float, fit: list[Feeds], threads: int,
                   options: list[list[int]]) -> list[int]:
    """Ranks allocated by the response spectra under the budget (MACs or latency)."""
    layers = plan.layers

    def factor_cost(index: int, rank: int) -> float:
        layer = layers[index]
        if kind == "macs":
            return layer.macs(form_of(layer), rank)
        return table.interpolate(layer, form_of(layer), rank, plan.grids[index])

    if kind == "macs":
        dense = [layer.macs() for layer in layers]
        target, fixed = fraction * plan.total_macs, plan.total_macs - sum(dense)
    else:
        whole = runtime.median_ms(model, fit[0], threads=threads)
        dense = plan.dense_ms
        target, fixed = fraction * whole, max(whole - sum(dense), 0.0)
    return allocate(plan.spectra, factor_cost, dense, options, target, fixed)


def back_off(rank: int, options: list[int]) -> int:
    """Double the rank, within the ranks that stay faster than dense; else keep it dense."""
    larger = [r for r in options if r >= 2 * rank]
    return min(larger) if larger else DENSE


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


def form_of(layer: Layer) -> str:
    return "channel" if layer.is_conv else "svd"


def spectrum(y: np.ndarray) -> np.ndarray:
    centered = y - y.mean(axis=1, keepdims=True)
    values = np.linalg.eigvalsh(centered @ centered.T / max(y.shape[1], 1))
    return np.clip(values[::-1], 0, None)


def grid(layer: Layer) -> list[int]:
    """Ranks at which the latency table is measured (interpolated in between)."""
    method = form_of(layer)
    ranks = {layer.rank_for(method, f) for f in (0.1, 0.2, 0.35, 0.5, 0.7, 0.9)}
    ranks.add(1)
    return sorted(r for r in ranks if r >= 1)



"""Weight-only low-rank passes: one lossy pass per factorization, ranks from the weights.

These need no data, so their accuracy cost is unverified: on trained nets weight spectra are
flat and a rank that keeps most weight energy can still hurt accuracy (``lowrank`` with
calibration data is the recommended path). Each layer's rank is the largest whose MACs are
at most ``fraction`` of the dense layer's; with ``energy``, the smallest that keeps that
fraction of the weight spectrum's energy; with ``vbmf``, the EVBMF estimate (``vbmf``). A
layer is left alone when the form would not cut its MACs by at least ``min_saving``, when
a rank not chosen by ``energy`` keeps less than ``min_energy`` of the layer's weight energy
(``||W_r||^2 / ||W||^2`` of the factorization: at half the MACs, the convs of our small
digits nets keep 49-73 % and the net falls to 10-19 % accuracy), or when
(``measure``, the default) onnxruntime does not run the factorized layer at least
``speed_margin`` faster than the dense one (``latency.LatencyTable``): a rewrite, CP's
depthwise form included, is never made where it is slower.

| pass               | rewrites                                  | factorization (``factorize``) |
|--------------------|-------------------------------------------|-------------------------------|
| lowrank-svd        | Gemm, MatMul with a constant weight, 1x1 Conv | truncated SVD             |
| lowrank-spatial    | k x k Conv (k > 1)                        | spatial SVD (Jaderberg 2014)  |
| lowrank-channel    | k x k Conv                                | channel SVD                   |
| lowrank-tucker2    | k x k Conv                                | Tucker-2 (Kim 2016)           |
| lowrank-cp         | k x k Conv                                | CP-ALS (Lebedev 2015)         |
"""

from __future__ import annotations

import time
from typing import ClassVar

import numpy as np
import onnx_graphsurgeon as gs

from fuser.passes.base import Pass, PassResult, register
from fuser.passes.lowrank import factorize
from fuser.passes.lowrank.forms import form
from fuser.passes.lowrank.layers import Layer, candidates
from fuser.passes.lowrank.vbmf import vbmf_rank
from fuser.passes.match import Names, Skip, describe
from fuser.search.latency import LatencyTable


def _energy_rank(values: np.ndarray, energy: float) -> int:
    cumulative = np.cumsum(values**2) / max(float(np.sum(values**2)), 1e-300)
    return int(np.searchsorted(cumulative, energy - 1e-12) + 1)


class WeightOnlyLowRank(Pass):
    """Base of the weight-only passes; ``method`` names the factorization."""

    lossy = True
    method: ClassVar[str]

    def __init__(self, fraction: float = 0.5, energy: float | None = None,
                 vbmf: bool = False, min_saving: float = 0.1, measure: bool = True,
                 speed_margin: float = 0.05, min_energy: float = 0.9) -> None:
        if not 0 < fraction <= 1 or (energy is not None and not 0 < energy <= 1):
            raise ValueError("fraction and energy must be in (0, 1]")
        if not 0 <= min_energy <= 1:
            raise ValueError("min_energy must be in [0, 1]")
        self.fraction, self.energy, self.vbmf = fraction, energy, vbmf
        self.min_saving, self.measure, self.speed_margin = min_saving, measure, speed_margin
        self.min_energy = 0.0 if energy is not None else min_energy

    def run(self, graph: gs.Graph) -> PassResult:
        result = PassResult()
        names = Names(graph)
        layers, skipped = candidates(graph)
        for reason, count in skipped.items():
            result.skipped[reason] += count
        table = LatencyTable() if self.measure else None
        for layer in layers:
            try:
                self._applies(layer)
                rank = self._rank(layer)
                started = time.perf_counter()
                factors = self._factors(layer, rank)
                seconds = time.perf_counter() - started
            except Skip as reason:
                result.skip(str(reason))
                continue
            method = self.method_for(layer)
            dense, low = layer.macs(), form(method).macs(layer, factors.rank)
            if low > (1 - self.min_saving) * dense:
                result.skip(f"{describe(layer.node)}: rank {factors.rank} saves "
                            f"{1 - low / dense:.0%} of MACs, less than {self.min_saving:.0%}")
                continue
            if factors.energy < self.min_energy:
                result.skip(f"{describe(layer.node)}: {method} rank {factors.rank} keeps "
                            f"{factors.energy:.0%} of its weight energy, less than "
                            f"{self.min_energy:.0%} (min_energy)")
                continue
            if table is not None:
                fast, slow = table.ms(layer, method, factors.rank), table.ms(layer)
                if fast > (1 - self.speed_margin) * slow:
                    result.skip(f"{describe(layer.node)}: {method} rank {factors.rank} is not "
                                f"faster on onnxruntime ({fast:.3f} ms vs {slow:.3f} ms)")
                    continue
            flushed = self._replace(graph, layer, factors, names)
            result.stats["denormals flushed"] += flushed
            result.rewrote(f"{describe(layer.node)}: {method} rank "
                           f"{factors.rank}, MACs {dense:,} -> {low:,}, weight energy "
                           f"{factors.energy:.3f}, factorized in {seconds:.2f} s")
        if table is not None:
            table.save()
        if result.rewrites:
            result.notes.append("weight-only ranks: accuracy unverified (use --lossy lowrank "
                                "with calibration data to check it)")
        return result

    def method_for(self, layer: Layer) -> str:
        return self.method

    def _applies(self, layer: Layer) -> None:
        if not layer.is_conv or layer.weight.shape[2:] == (1, 1):
            raise Skip(f"{describe(layer.node)} is not a k x k Conv ({self.name})")

    def _rank(self, layer: Layer) -> int | tuple[int, int]:
        method = self.method_for(layer)
        if self.vbmf and method != "cp":
            ranks = tuple(max(vbmf_rank(m), 1) for m in _unfoldings(layer, method))
            return ranks if method == "tucker2" else ranks[0]
        if self.energy is not None and method != "cp":
            spectrum = _spectrum(layer, method)
            if method == "tucker2":
                return tuple(_energy_rank(s, self.energy) for s in spectrum)
            return _energy_rank(spectrum, self.energy)
        rank = form(method).largest_rank(layer, self.fraction)
        if rank < 1:
            raise Skip(f"{describe(layer.node)}: no rank of {method} fits "
                       f"{self.fraction:.0%} of its MACs")
        return (rank, rank) if method == "tucker2" else rank

    def _factors(self, layer: Layer, rank: int | tuple[int, int]) -> factorize.Factors:
        return form(self.method_for(layer)).fit_weights(layer, rank)

    def _replace(self, graph: gs.Graph, layer: Layer, factors: factorize.Factors,
                 names: Names) -> int:
        return form(self.method_for(layer)).replace(graph, layer, factors, names)


def _unfoldings(layer: Layer, method: str) -> list[np.ndarray]:
    """The matrices whose spectra set the rank(s): one, or (input, output) for Tucker-2."""
    w = layer.weight
    if method == "spatial":
        n, c, kh, kw = w.shape
        return [w.transpose(1, 2, 0, 3).reshape(c * kh, n * kw)]
    if method == "tucker2":
        n, c = w.shape[:2]
        return [w.transpose(1, 0, 2, 3).reshape(c, -1), w.reshape(n, -1)]
    return [w.reshape(w.shape[0], -1)]


def _spectrum(layer: Layer, method: str) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    values = [np.linalg.svd(m, compute_uv=False) for m in _unfoldings(layer, method)]
    return tuple(values) if method == "tucker2" else values[0]


@register
class LowRankSVD(WeightOnlyLowRank):
    """Truncated SVD of Gemm, MatMul (constant weight) and 1x1 Conv (lossy, weight-only)."""

    name = "lowrank-svd"
    method = "svd"

    def _applies(self, layer: Layer) -> None:
        if layer.is_conv and layer.weight.shape[2:] != (1, 1):
            raise Skip(f"{describe(layer.node)} is a k x k Conv ({self.name} takes 1x1)")

    def method_for(self, layer: Layer) -> str:
        return "channel" if layer.is_conv else "svd"


@register
class LowRankSpatial(WeightOnlyLowRank):
    """Spatial SVD of k x k Conv: k x 1 then 1 x k (lossy, weight-only)."""

    name = "lowrank-spatial"
    method = "spatial"


@register
class LowRankChannel(WeightOnlyLowRank):
    """Channel SVD of k x k Conv: k x k with fewer filters, then 1 x 1 (lossy, weight-only)."""

    name = "lowrank-channel"
    method = "channel"


@register
class LowRankTucker2(WeightOnlyLowRank):
    """Tucker-2 of k x k Conv: 1 x 1, k x k core, 1 x 1 (lossy, weight-only)."""

    name = "lowrank-tucker2"
    method = "tucker2"


@register
class LowRankCP(WeightOnlyLowRank):
    """CP of k x k Conv: 1 x 1, depthwise k x 1, depthwise 1 x k, 1 x 1 (lossy, weight-only)."""

    name = "lowrank-cp"
    method = "cp"

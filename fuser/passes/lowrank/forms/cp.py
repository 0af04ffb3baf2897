"""CP decomposition of a Conv (Lebedev et al. 2015): four thin convs.

    W[n, c, i, j] ~ sum_r A[n, r] B[c, r] Kh[i, r] Kw[j, r]

Nodes: ``[R, C, 1, 1]`` -> depthwise ``[R, 1, kh, 1]`` (group R, vertical attributes) ->
depthwise ``[R, 1, 1, kw]`` (group R, horizontal ones) -> ``[N, R, 1, 1]`` (bias). Fitted
to the weights by CP-ALS (``factorize.cp``); no data-aware fit yet, so the search does not
offer it (``searched``): the weight-only pass ``lowrank-cp`` does.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import onnx_graphsurgeon as gs

from fuser.passes.lowrank import factorize
from fuser.passes.lowrank.forms.base import (
    Chain,
    Form,
    Rank,
    horizontal_attrs,
    in_pixels,
    out_pixels,
    vertical_attrs,
)
from fuser.passes.match import Names


class CP(Form):
    name: ClassVar[str] = "cp"
    searched: ClassVar[bool] = False

    def applies(self, layer) -> bool:
        return layer.is_conv and layer.weight.shape[2:] != (1, 1)

    def max_rank(self, layer) -> int:
        return int(np.prod(layer.weight.shape[:2]))

    def macs(self, layer, rank: Rank) -> int:
        n, c, kh, kw = layer.weight.shape
        g = layer.geometry
        height = g.out_hw[0]
        return (in_pixels(g) * rank * c + height * g.in_hw[1] * rank * kh
                + out_pixels(g) * rank * (kw + n))

    def shapes(self, layer, rank: Rank) -> list[tuple[int, ...]]:
        n, c, kh, kw = layer.weight.shape
        return [(rank, c, 1, 1), (rank, 1, kh, 1), (rank, 1, 1, kw), (n, rank, 1, 1)]

    def fit_weights(self, layer, rank: Rank) -> factorize.Factors:
        return factorize.cp(layer.weight, rank)

    def emit(self, graph: gs.Graph, layer, weights: list[np.ndarray],
             bias: np.ndarray | None, names: Names) -> int:
        chain, g, rank = Chain(graph, layer, names), layer.geometry, weights[0].shape[0]
        mid = chain.conv("in", chain.input, weights[0], {})
        mid = chain.conv("v", mid, weights[1], {**vertical_attrs(g), "group": rank})
        mid = chain.conv("h", mid, weights[2], {**horizontal_attrs(g), "group": rank})
        chain.conv("out", mid, weights[3], {}, bias, last=True)
        return chain.flushed

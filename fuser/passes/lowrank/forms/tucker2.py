"""Tucker-2 of a Conv (Kim et al. 2016): both channel sides shrunk around a k x k core.

    W ~ G x_0 V x_1 U:   1 x 1 C -> R3 (U^T), k x k core R3 -> R4 (G), 1 x 1 R4 -> N (V)

Nodes: ``U^T[R3, C, 1, 1]`` -> ``G[R4, R3, kh, kw]`` (the original spatial attributes) ->
``V[N, R4, 1, 1]`` (bias). The rank is the pair ``(R3, R4)``. Fitted with U from the PCA of
the layer's inputs and V from that of its responses (``factorize.tucker2_fitted``); from
the weights alone, truncated HOSVD of the two channel modes (``factorize.tucker2``).
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
import onnx_graphsurgeon as gs

from fuser.passes.lowrank import factorize
from fuser.passes.lowrank.forms.base import (
    Chain,
    Form,
    LayerData,
    Rank,
    aligned,
    full_attrs,
    in_pixels,
    out_pixels,
)
from fuser.passes.match import Names


class Tucker2(Form):
    name: ClassVar[str] = "tucker2"

    def applies(self, layer) -> bool:
        return layer.is_conv and layer.weight.shape[2:] != (1, 1)

    def max_rank(self, layer) -> int:
        return min(layer.weight.shape[:2])

    def full(self, layer) -> Rank:
        n, c = layer.weight.shape[:2]
        return (c, n)

    def macs(self, layer, rank: Rank) -> int:
        r_in, r_out = (rank, rank) if isinstance(rank, int) else rank
        n, c, kh, kw = layer.weight.shape
        g = layer.geometry
        return in_pixels(g) * r_in * c + out_pixels(g) * (r_out * r_in * kh * kw + n * r_out)

    def shapes(self, layer, rank: Rank) -> list[tuple[int, ...]]:
        r_in, r_out = rank
        n, c, kh, kw = layer.weight.shape
        return [(r_in, c, 1, 1), (r_out, r_in, kh, kw), (n, r_out, 1, 1)]

    def rank_at(self, layer, fraction: float) -> Rank | None:
        """Both sides shrunk by the same share of their channels, block-aligned."""
        n, c = layer.weight.shape[:2]
        best = None
        for step in range(1, 101):
            share = step / 100
            rank = (aligned(max(1, math.ceil(share * c))), aligned(max(1, math.ceil(share * n))))
            if self.macs(layer, rank) > fraction * layer.macs():
                break
            best = rank
        return best

    def fit(self, layer, rank: Rank, data: LayerData, reconstruction: str) -> factorize.Factors:
        bias = None if layer.bias is None else np.asarray(layer.bias, np.float64).reshape(-1)
        responses = data.target + (0.0 if bias is None else bias[:, None])
        return factorize.tucker2_fitted(layer.weight, bias, data.inputs, responses, *rank)

    def fit_weights(self, layer, rank: Rank) -> factorize.Factors:
        return factorize.tucker2(layer.weight, *rank)

    def emit(self, graph: gs.Graph, layer, weights: list[np.ndarray],
             bias: np.ndarray | None, names: Names) -> int:
        chain = Chain(graph, layer, names)
        mid = chain.conv("in", chain.input, weights[0], {})
        mid = chain.conv("core", mid, weights[1], full_attrs(layer.geometry))
        chain.conv("out", mid, weights[2], {}, bias, last=True)
        return chain.flushed

"""Output-side channel factorization of a Conv: a k x k conv C -> R, then 1 x 1 R -> N.

    W[n, c, i, j] ~ sum_r P[n, r] W'[r, c, i, j]        W' = Q^T W,  P = Q

Nodes: ``W'[R, C, kh, kw]`` (the original spatial attributes) -> ``P[N, R, 1, 1]`` (bias).
Fitted to the responses ``y = W x`` (Zhang et al. 2015): ``asymmetric`` reconstruction
(``factorize.asymmetric``) or their principal subspace (``response_pca``); from the weights
alone, the SVD of W as ``(N, C kh kw)`` (``channel_svd``). Also the form of a 1 x 1 Conv's
SVD: two 1 x 1 convs.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import onnx_graphsurgeon as gs

from fuser.passes.lowrank import factorize
from fuser.passes.lowrank.forms.base import (
    Chain,
    Form,
    LayerData,
    Rank,
    full_attrs,
    out_pixels,
)
from fuser.passes.match import Names


class Channel(Form):
    name: ClassVar[str] = "channel"

    def applies(self, layer) -> bool:
        return layer.is_conv

    def max_rank(self, layer) -> int:
        n, c, kh, kw = layer.weight.shape
        return min(n, c * kh * kw)

    def macs(self, layer, rank: Rank) -> int:
        n, c, kh, kw = layer.weight.shape
        return out_pixels(layer.geometry) * rank * (c * kh * kw + n)

    def shapes(self, layer, rank: Rank) -> list[tuple[int, ...]]:
        n, c, kh, kw = layer.weight.shape
        return [(rank, c, kh, kw), (n, rank, 1, 1)]

    def fit(self, layer, rank: Rank, data: LayerData, reconstruction: str) -> factorize.Factors:
        if reconstruction == "asymmetric":
            return factorize.asymmetric(layer.weight, data.target, data.approx, rank)
        return factorize.response_pca(layer.weight, data.target, rank)

    def fit_weights(self, layer, rank: Rank) -> factorize.Factors:
        return factorize.channel_svd(layer.weight, rank)

    def emit(self, graph: gs.Graph, layer, weights: list[np.ndarray],
             bias: np.ndarray | None, names: Names) -> int:
        chain = Chain(graph, layer, names)
        mid = chain.conv("k", chain.input, weights[0], full_attrs(layer.geometry))
        chain.conv("p", mid, weights[1], {}, bias, last=True)
        return chain.flushed

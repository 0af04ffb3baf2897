"""Input-side projection of a Conv: 1 x 1 C -> R onto the principal components of its
inputs, then the k x k conv R -> N.

    x ~ U U^T x + m,    W * x ~ (W x_C U) * (U^T x) + W * m        U: (C, R) orthonormal

Nodes: ``P[R, C, 1, 1]`` -> ``W'[N, R, kh, kw]`` (the original spatial attributes, bias).
What pays on wide layers whose inputs are redundant (CREPE's 1024-channel convs). Fitted to
the PCA of the layer's calibration inputs (``factorize.input_projection``); no weight-only
fit.
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
    in_pixels,
    out_pixels,
)
from fuser.passes.match import Names


class Input(Form):
    name: ClassVar[str] = "input"

    def applies(self, layer) -> bool:
        return layer.is_conv and layer.weight.shape[2:] != (1, 1)

    def max_rank(self, layer) -> int:
        return layer.weight.shape[1]

    def macs(self, layer, rank: Rank) -> int:
        n, c, kh, kw = layer.weight.shape
        g = layer.geometry
        return in_pixels(g) * rank * c + out_pixels(g) * n * rank * kh * kw

    def shapes(self, layer, rank: Rank) -> list[tuple[int, ...]]:
        n, c, kh, kw = layer.weight.shape
        return [(rank, c, 1, 1), (n, rank, kh, kw)]

    def fit(self, layer, rank: Rank, data: LayerData, reconstruction: str) -> factorize.Factors:
        return factorize.input_projection(layer.weight, data.inputs, rank)

    def emit(self, graph: gs.Graph, layer, weights: list[np.ndarray],
             bias: np.ndarray | None, names: Names) -> int:
        chain = Chain(graph, layer, names)
        mid = chain.conv("in", chain.input, weights[0], {})
        chain.conv("k", mid, weights[1], full_attrs(layer.geometry), bias, last=True)
        return chain.flushed

"""Spatial separable factorization of a Conv (Jaderberg et al. 2014): a k x 1 conv C -> R,
then a 1 x k conv R -> N. A 3 x 39 kernel is its textbook case.

    W[n, c, i, j] ~ sum_r V[r, c, i] H[n, r, j],   M[(c, i), (n, j)] = W[n, c, i, j] ~ V^T H

Nodes: ``V[R, C, kh, 1]`` (vertical stride, dilation, pads) -> ``H[N, R, 1, kw]``
(horizontal ones, bias).

From the weights alone, the SVD of M (``factorize.spatial_svd``). Fitted to data: the output
error for inputs x is ``sum_j dM_j^T x_j`` over the kernel's columns j, where x_j are the
vertical patches ``(C kh)`` a column reads. With their second moment taken as
``Sigma (x) I_kh`` (``Sigma = L L^T`` the input channels' second moment; rows of a patch
treated as independent) and the columns' cross terms dropped, the error is
``||(L (x) I)^T dM||_F^2``: the truncated SVD of ``(L (x) I)^T M = U S V^T`` minimizes it,
``V^T = (L (x) I)^-T U_R S_R^1/2``, ``H = S_R^1/2 V_R^T``. At full rank, exact.
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
    horizontal_attrs,
    out_pixels,
    vertical_attrs,
)
from fuser.passes.match import Names


class Spatial(Form):
    name: ClassVar[str] = "spatial"

    def applies(self, layer) -> bool:
        return layer.is_conv and min(layer.weight.shape[2:]) > 1

    def max_rank(self, layer) -> int:
        n, c, kh, kw = layer.weight.shape
        return min(c * kh, n * kw)

    def macs(self, layer, rank: Rank) -> int:
        n, c, kh, kw = layer.weight.shape
        g = layer.geometry
        height = g.out_hw[0]
        return height * g.in_hw[1] * rank * c * kh + out_pixels(g) * n * rank * kw

    def shapes(self, layer, rank: Rank) -> list[tuple[int, ...]]:
        n, c, kh, kw = layer.weight.shape
        return [(rank, c, kh, 1), (n, rank, 1, kw)]

    def fit(self, layer, rank: Rank, data: LayerData, reconstruction: str) -> factorize.Factors:
        return whitened_spatial(layer.weight, data.inputs, rank)

    def fit_weights(self, layer, rank: Rank) -> factorize.Factors:
        return factorize.spatial_svd(layer.weight, rank)

    def emit(self, graph: gs.Graph, layer, weights: list[np.ndarray],
             bias: np.ndarray | None, names: Names) -> int:
        chain, g = Chain(graph, layer, names), layer.geometry
        mid = chain.conv("v", chain.input, weights[0], vertical_attrs(g))
        chain.conv("h", mid, weights[1], horizontal_attrs(g), bias, last=True)
        return chain.flushed


def whitened_spatial(w: np.ndarray, inputs: np.ndarray, r: int,
                     ridge: float = 1e-9) -> factorize.Factors:
    """``w (N, C, kh, kw)``, ``inputs (C, S)`` channel samples: the data-aware spatial
    factors ``[V (r, C, kh, 1), H (N, r, 1, kw)]`` (module docstring)."""
    n, c, kh, kw = w.shape
    moment = inputs @ inputs.T / max(inputs.shape[1], 1)
    moment += ridge * (np.trace(moment) / c + 1e-12) * np.eye(c)
    lower = np.kron(np.linalg.cholesky(moment), np.eye(kh))  # rows (c, i), c major
    m = w.transpose(1, 2, 0, 3).reshape(c * kh, n * kw)
    u, s, vt = np.linalg.svd(lower.T @ m, full_matrices=False)
    root = np.sqrt(s[:r])
    left = np.linalg.solve(lower.T, u[:, :r] * root)  # (c kh, r)
    right = root[:, None] * vt[:r]  # (r, n kw)
    energy = float(np.sum(s[:r] ** 2) / np.sum(s ** 2)) if np.any(s) else 1.0
    return factorize.Factors([left.T.reshape(r, c, kh, 1),
                              right.reshape(r, n, 1, kw).transpose(1, 0, 2, 3)], r, energy)

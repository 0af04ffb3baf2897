"""The factorized forms the search offers per layer, fitted to calibration data.

| form    | layer       | fitted to                                | ONNX (``rewrite``)    |
|---------|-------------|------------------------------------------|-----------------------|
| channel | Conv        | responses (asymmetric / response PCA)    | k x k C->r, 1x1 r->N  |
| input   | Conv, k > 1 | PCA of the layer's input channels        | 1x1 C->r, k x k r->N  |
| tucker2 | Conv, k > 1 | input PCA and response PCA (both sides)  | 1x1, k x k core, 1x1  |
| svd     | Gemm/MatMul | responses, or whitened SVD of the inputs | two Gemm/MatMul       |
|         |             | (always when N > ``WIDE_OUTPUT``, N > K) |                       |

The output-side ``channel`` form keeps the k x k conv on all C input channels and shrinks its
outputs; ``input`` shrinks what the k x k conv reads, which is what pays off on wide layers
whose inputs are redundant (CREPE's 1024-channel convs); ``tucker2`` does both. Each form at
full rank reproduces the layer (tests/passes/test_lowrank_exact.py).

A layer's data (``LayerData``) are sampled on the fitting batches: the original network's
responses ``y = W x`` (no bias) at seeded output pixels, the original filters' responses to
the approximated network's inputs at the same pixels (Zhang's asymmetric reconstruction;
equal to the first in a network where only this layer changes), and channel samples of the
layer's input in the approximated network.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import onnx_graphsurgeon as gs

from fuser.passes.lowrank import factorize
from fuser.passes.lowrank.layers import Layer
from fuser.passes.lowrank.rewrite import replace_conv, replace_matmul
from fuser.passes.match import Names

Rank = int | tuple[int, int]

#: The response fits solve and diagonalize an N x N matrix for N outputs; a Gemm/MatMul with
#: more outputs than this and than inputs K is fitted on its input side instead (whitened
#: SVD: K x K), e.g. an OCR head's 8210 characters from 1024 features (minutes, not ms).
WIDE_OUTPUT = 1024


@dataclasses.dataclass(frozen=True)
class Option:
    """One way to rewrite layer ``layer``: a form at a rank, its MACs and latency."""

    layer: int
    method: str
    rank: Rank
    macs: int
    ms: float

    @property
    def key(self) -> tuple:
        return self.layer, self.method, self.rank


@dataclasses.dataclass
class LayerData:
    """What the fitting of one layer sees (see the module docstring)."""

    target: np.ndarray  # (N, S) original responses, no bias
    approx: np.ndarray  # (N, S) original filters on the approximated inputs, no bias
    inputs: np.ndarray | None  # (C, S') input channel samples (Conv), (K, S') rows (Gemm)


def methods(layer: Layer) -> list[str]:
    """The forms offered for ``layer``."""
    if not layer.is_conv:
        return ["svd"]
    if layer.geometry.kernel == (1, 1):  # every form is one rank-r product of two 1 x 1s
        return ["channel"]
    return ["channel", "input", "tucker2"]


def aligned(rank: int) -> int:
    """``rank`` rounded down to a multiple of 16 from 32 on, of 8 from 8 on: onnxruntime's
    CPU convolutions work on blocks of 8 or 16 channels (NCHWc), and a rank off the block
    adds layout reorders around the factors that the layer timed alone does not show; GPU
    kernels prefer multiples of 8 too."""
    for block in (16, 8):
        if rank >= 2 * block or (block == 8 and rank >= block):
            return rank - rank % block
    return rank


def rank_at(layer: Layer, method: str, fraction: float) -> Rank | None:
    """The largest block-aligned rank whose MACs are at most ``fraction`` of the dense
    layer's (None if even rank 1 is not). Tucker-2 shrinks both sides by the same share of
    channels."""
    if method == "svd":
        method = "channel"  # Layer.macs counts a Gemm's rank-r form whatever the name
    if method != "tucker2":
        rank = layer.rank_for(method, fraction)
        return aligned(rank) or None
    n, c = layer.weight.shape[:2]
    best = None
    for step in range(1, 101):
        share = step / 100
        rank = (aligned(max(1, math.ceil(share * c))), aligned(max(1, math.ceil(share * n))))
        if layer.macs("tucker2", rank) > fraction * layer.macs():
            break
        best = rank
    return best


def fit(layer: Layer, method: str, rank: Rank, data: LayerData,
        reconstruction: str) -> factorize.Factors:
    """The factors of ``layer`` in ``method`` at ``rank``; ``bias_shift`` is added to the
    layer's own bias on the last node."""
    if method == "input":
        return factorize.input_projection(layer.weight, data.inputs, rank)
    if method == "tucker2":
        bias = None if layer.bias is None else np.asarray(layer.bias, np.float64).reshape(-1)
        responses = data.target + (0.0 if bias is None else bias[:, None])
        return factorize.tucker2_fitted(layer.weight, bias, data.inputs, responses, *rank)
    if method == "svd" and whitenable(layer) and (reconstruction == "whitened"
                                                  or _wide(layer)):
        return factorize.whitened_svd(layer.weight, data.inputs, rank)
    if reconstruction == "asymmetric":
        return factorize.asymmetric(layer.weight, data.target, data.approx, rank)
    return factorize.response_pca(layer.weight, data.target, rank)


def apply(graph: gs.Graph, layer: Layer, method: str, factors: factorize.Factors) -> None:
    """Replace ``layer``'s node in ``graph`` (the node must be this graph's) by the factors."""
    shift = factors.bias_shift if factors.bias_shift is not None else 0.0
    bias = shift + (layer.bias if layer.bias is not None else 0.0)
    bias = None if np.isscalar(bias) and bias == 0.0 else bias
    names = Names(graph)
    if layer.is_conv:
        replace_conv(graph, layer.node, method, factors.weights, bias, layer.geometry, names)
    else:
        replace_matmul(graph, layer.node, *factors.weights, bias, names,
                       layer.weight_on_left)


def _wide(layer: Layer) -> bool:
    """More outputs than ``WIDE_OUTPUT`` and than inputs (``weight`` is N x K)."""
    n, k = layer.weight.shape[:2]
    return n > max(WIDE_OUTPUT, k)


def whitenable(layer: Layer) -> bool:
    """Gemm/MatMul whose input rows are the samples (no transA, weight on the right)."""
    return not layer.is_conv and not layer.node.attrs.get("transA", 0) and \
        not layer.weight_on_left

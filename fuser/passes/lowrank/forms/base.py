"""The ``Form`` every low-rank rewrite implements, and what the forms share.

A form is one way to factor a layer: its ranks, its MACs and weight shapes, how its factors
are fitted (to the weights alone, or to calibration data), and the ONNX nodes that compute
them. Adding a form is one file in this package and one line in its registry
(``fuser.passes.lowrank.forms``).

Rules for every form's nodes: only the last node carries the bias; no non-linearity between
factors; strides, pads and dilations sit on the nodes with spatial extent (1 x 1 nodes get
none); padding is explicit (``auto_pad`` resolved first: ``geometry``); factors are cast
back to the weight dtype (``match.cast_back``, which flushes float32/64 denormals).
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import onnx_graphsurgeon as gs

from fuser.passes.lowrank.factorize import Factors
from fuser.passes.lowrank.geometry import ConvGeometry
from fuser.passes.match import Names, Skip, cast_back, describe

if TYPE_CHECKING:
    from fuser.passes.lowrank.layers import Layer

Rank = int | tuple[int, int]


@dataclasses.dataclass
class LayerData:
    """What a data-aware fit of one layer sees, sampled on the calibration batches: the
    original network's responses ``y = W x`` (no bias) at seeded output pixels, the original
    filters' responses to the approximated network's inputs at the same pixels (Zhang's
    asymmetric reconstruction; equal to the first where only this layer changes), and
    samples of the layer's input channels in the approximated network."""

    target: np.ndarray  # (N, S) original responses, no bias
    approx: np.ndarray  # (N, S) original filters on the approximated inputs, no bias
    inputs: np.ndarray | None  # (C, S') input channel samples (Conv), (K, S') rows (Gemm)


class Form:
    """One factorization. Subclasses set ``name`` and implement the methods that raise."""

    name: ClassVar[str]
    #: offered by the data-aware search (a form without a data-aware fit is weight-only)
    searched: ClassVar[bool] = True

    def applies(self, layer: Layer) -> bool:
        """Whether the form can rewrite ``layer`` (and saves anything on it)."""
        raise NotImplementedError

    def max_rank(self, layer: Layer) -> int:
        """The largest useful rank, where the form is exact."""
        raise NotImplementedError

    def macs(self, layer: Layer, rank: Rank) -> int:
        """MACs per sample of the factored layer (exact output sizes of every node)."""
        raise NotImplementedError

    def shapes(self, layer: Layer, rank: Rank) -> list[tuple[int, ...]]:
        """The factor weights' shapes, in the order ``emit`` takes them."""
        raise NotImplementedError

    def fit(self, layer: Layer, rank: Rank, data: LayerData, reconstruction: str) -> Factors:
        """Factors fitted to calibration data (``reconstruction``: ``asymmetric``, ``pca``
        or ``whitened``, for the forms that fit responses)."""
        raise NotImplementedError

    def fit_weights(self, layer: Layer, rank: Rank) -> Factors:
        """Factors from the weights alone (the weight-only passes)."""
        raise Skip(f"{describe(layer.node)}: {self.name} has no weight-only fit")

    def emit(self, graph: gs.Graph, layer: Layer, weights: list[np.ndarray],
             bias: np.ndarray | None, names: Names) -> int:
        """Replace ``layer``'s node (``graph``'s) by the factor nodes; denormals flushed."""
        raise NotImplementedError

    def full(self, layer: Layer) -> Rank:
        """The rank at which the form reproduces the layer."""
        return self.max_rank(layer)

    def largest_rank(self, layer: Layer, fraction: float) -> int:
        """The largest rank ``r`` (``(r, r)`` for a pair) whose MACs are at most ``fraction``
        of the dense layer's; 0 if even rank 1 is not."""
        dense, best = layer.macs(), 0
        for r in range(1, self.max_rank(layer) + 1):
            if self.macs(layer, r) > fraction * dense:
                break
            best = r
        return best

    def rank_at(self, layer: Layer, fraction: float) -> Rank | None:
        """``largest_rank`` aligned to channel blocks (``aligned``); None if it is 0."""
        return aligned(self.largest_rank(layer, fraction)) or None

    def replace(self, graph: gs.Graph, layer: Layer, factors: Factors, names: Names) -> int:
        """``emit`` the factors with the layer's bias plus the fit's ``bias_shift``."""
        shift = factors.bias_shift if factors.bias_shift is not None else 0.0
        bias = shift + (layer.bias if layer.bias is not None else 0.0)
        bias = None if np.isscalar(bias) and bias == 0.0 else bias
        return self.emit(graph, layer, factors.weights, bias, names)


def aligned(rank: int) -> int:
    """``rank`` rounded down to a multiple of 16 from 32 on, of 8 from 8 on: onnxruntime's
    CPU convolutions work on blocks of 8 or 16 channels (NCHWc), and a rank off the block
    adds layout reorders around the factors that the layer timed alone does not show; GPU
    kernels prefer multiples of 8 too."""
    for block in (16, 8):
        if rank >= 2 * block or (block == 8 and rank >= block):
            return rank - rank % block
    return rank


# ------------------------------------------------------------------------ Conv emission


class Chain:
    """The Conv nodes that replace one layer's node: made, it unplugs the node; ``conv`` appends
    each factor; the last one writes the layer's output and carries the bias."""

    def __init__(self, graph: gs.Graph, layer: Layer, names: Names) -> None:
        node = layer.node
        self.graph, self.names = graph, names
        self.dtype = np.dtype(node.inputs[1].dtype)
        self.base = node.name or node.outputs[0].name
        self.input, self.output = node.inputs[0], node.outputs[0]
        node.inputs.clear()
        node.outputs.clear()
        self.flushed = 0  # denormals flushed in the factors cast back

    def conv(self, suffix: str, x: gs.Tensor, weight: np.ndarray, attrs: dict,
             bias: np.ndarray | None = None, last: bool = False) -> gs.Tensor:
        """Append a Conv of ``weight`` (cast to the layer's dtype) on ``x``; its output."""
        base = f"{self.base}_{suffix}"
        w, count = cast_back(weight, self.dtype)
        inputs = [x, gs.Constant(self.names.fresh(f"{base}_W"), w)]
        if bias is not None:
            b, more = cast_back(bias, self.dtype)
            inputs.append(gs.Constant(self.names.fresh(f"{base}_B"), b))
            count += more
        self.flushed += count
        out = self.output if last else gs.Variable(self.names.fresh(f"{base}_out"),
                                                   dtype=self.dtype)
        attrs = {"kernel_shape": list(weight.shape[2:]), **attrs}
        self.graph.nodes.append(gs.Node("Conv", self.names.fresh(base), attrs=attrs,
                                        inputs=inputs, outputs=[out]))
        return out


def full_attrs(g: ConvGeometry) -> dict:
    """The original layer's spatial attributes, for the node with its whole kernel."""
    return {"strides": list(g.strides), "dilations": list(g.dilations), "pads": list(g.pads)}


def vertical_attrs(g: ConvGeometry) -> dict:
    """A k x 1 node's share of the attributes: the vertical stride, dilation and pads."""
    t, _, b, _ = g.pads
    return {"strides": [g.strides[0], 1], "dilations": [g.dilations[0], 1], "pads": [t, 0, b, 0]}


def horizontal_attrs(g: ConvGeometry) -> dict:
    """A 1 x k node's share: the horizontal stride, dilation and pads."""
    _, left, _, right = g.pads
    return {"strides": [1, g.strides[1]], "dilations": [1, g.dilations[1]],
            "pads": [0, left, 0, right]}


def out_pixels(g: ConvGeometry) -> int:
    return math.prod(g.out_hw)


def in_pixels(g: ConvGeometry) -> int:
    return math.prod(g.in_hw)

"""SVD of a Gemm or MatMul weight: two thinner products.

    W (N x K) ~ B A,    A: (r x K), B: (N x r)

Nodes: ``Gemm(X, A, transB=1) -> Gemm(., B, C, transB=1)``, or ``MatMul(X, A^T) ->
MatMul(., B^T)`` (+ ``Add`` of the bias), or ``B @ (A @ X)`` for a weight on the left.
Fitted to the responses (``asymmetric`` / ``pca``, as the channel form), or by the whitened
SVD of ``W L`` (``L L^T`` the inputs' second moment: the truncation minimizes the output
error on the calibration data), always for a layer with more than ``WIDE_OUTPUT`` outputs
and more outputs than inputs (its response fits would solve an N x N system); from the
weights alone, the plain SVD (``factorize.svd_matrix``).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import onnx_graphsurgeon as gs

from fuser.passes.lowrank import factorize
from fuser.passes.lowrank.forms.base import Form, LayerData, Rank
from fuser.passes.match import Names, cast_back

#: The response fits solve and diagonalize an N x N matrix for N outputs; a Gemm/MatMul with
#: more outputs than this and than inputs K is fitted on its input side instead (whitened
#: SVD: K x K), e.g. an OCR head's 8210 characters from 1024 features (minutes, not ms).
WIDE_OUTPUT = 1024


class Svd(Form):
    name: ClassVar[str] = "svd"

    def applies(self, layer) -> bool:
        return not layer.is_conv

    def max_rank(self, layer) -> int:
        return min(layer.weight.shape)

    def macs(self, layer, rank: Rank) -> int:
        n, k = layer.weight.shape
        return layer.positions * rank * (n + k)

    def shapes(self, layer, rank: Rank) -> list[tuple[int, ...]]:
        n, k = layer.weight.shape
        return [(rank, k), (n, rank)]

    def fit(self, layer, rank: Rank, data: LayerData, reconstruction: str) -> factorize.Factors:
        if whitenable(layer) and (reconstruction == "whitened" or wide(layer)):
            return factorize.whitened_svd(layer.weight, data.inputs, rank)
        if reconstruction == "asymmetric":
            return factorize.asymmetric(layer.weight, data.target, data.approx, rank)
        return factorize.response_pca(layer.weight, data.target, rank)

    def fit_weights(self, layer, rank: Rank) -> factorize.Factors:
        return factorize.svd_matrix(layer.weight.reshape(layer.weight.shape[0], -1), rank)

    def emit(self, graph: gs.Graph, layer, weights: list[np.ndarray],
             bias: np.ndarray | None, names: Names) -> int:
        return replace_matmul(graph, layer.node, *weights, bias, names, layer.weight_on_left)


def wide(layer) -> bool:
    """More outputs than ``WIDE_OUTPUT`` and than inputs (``weight`` is N x K)."""
    n, k = layer.weight.shape[:2]
    return n > max(WIDE_OUTPUT, k)


def whitenable(layer) -> bool:
    """Gemm/MatMul whose input rows are the samples (no transA, weight on the right)."""
    return not layer.is_conv and not layer.node.attrs.get("transA", 0) and \
        not layer.weight_on_left


def replace_matmul(graph: gs.Graph, node: gs.Node, a: np.ndarray, b: np.ndarray,
                   bias: np.ndarray | None, names: Names, weight_on_left: bool = False) -> int:
    """Replace a Gemm or MatMul computing ``W x (+ c)`` with ``W ~ b @ a`` (a: r x K, b: N x r).

    ``bias`` is the new effective bias (Gemm's ``beta * C`` plus any data-aware shift)."""
    dtype = np.dtype(node.inputs[1 if not weight_on_left else 0].dtype)
    base = node.name or node.outputs[0].name
    y = node.outputs[0]
    casts = [cast_back(v, dtype) for v in (a, b)]
    flushed = sum(f for _, f in casts)
    (a_c, _), (b_c, _) = casts
    mid = gs.Variable(names.fresh(f"{base}_low"), dtype=dtype)
    if node.op == "Gemm":
        x = node.inputs[0]
        trans_a = int(node.attrs.get("transA", 0))
        node.inputs.clear()
        node.outputs.clear()
        graph.nodes.append(gs.Node("Gemm", names.fresh(f"{base}_a"),
                                   attrs={"transA": trans_a, "transB": 1},
                                   inputs=[x, gs.Constant(names.fresh(f"{base}_A"), a_c)],
                                   outputs=[mid]))
        inputs = [mid, gs.Constant(names.fresh(f"{base}_B"), b_c)]
        if bias is not None:
            bias_c, f = cast_back(bias, dtype)
            flushed += f
            inputs.append(gs.Constant(names.fresh(f"{base}_C"), bias_c))
        graph.nodes.append(gs.Node("Gemm", names.fresh(f"{base}_b"), attrs={"transB": 1},
                                   inputs=inputs, outputs=[y]))
        return flushed
    x = node.inputs[1 if weight_on_left else 0]
    node.inputs.clear()
    node.outputs.clear()
    out = y if bias is None else gs.Variable(names.fresh(f"{base}_nobias"), dtype=dtype)
    if weight_on_left:  # W @ X ~ b @ (a @ X)
        first = [gs.Constant(names.fresh(f"{base}_A"), a_c), x]
        second = [gs.Constant(names.fresh(f"{base}_B"), b_c), mid]
    else:  # X @ W^T-layout: X (.., K) @ W (K, N) ~ (X @ a^T) @ b^T
        first = [x, gs.Constant(names.fresh(f"{base}_A"), np.ascontiguousarray(a_c.T))]
        second = [mid, gs.Constant(names.fresh(f"{base}_B"), np.ascontiguousarray(b_c.T))]
    graph.nodes.append(gs.Node("MatMul", names.fresh(f"{base}_a"), inputs=first, outputs=[mid]))
    graph.nodes.append(gs.Node("MatMul", names.fresh(f"{base}_b"), inputs=second,
                               outputs=[out]))
    if bias is not None:
        shape = bias.reshape(-1, 1) if weight_on_left else bias
        bias_c, f = cast_back(shape, dtype)
        flushed += f
        graph.nodes.append(gs.Node("Add", names.fresh(f"{base}_bias"), inputs=[
            out, gs.Constant(names.fresh(f"{base}_C"), bias_c)], outputs=[y]))
    return flushed

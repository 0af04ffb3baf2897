"""Candidate layers for low-rank rewrites and the ranks worth trying on them.

A candidate is a 2-D group-1 Conv, a Gemm, or a MatMul with one constant 2-D weight, whose
weight is a float constant used by this node only (a shared weight would be factorized for
one user and left dense for the other). Everything here reads the graph; the forms
(``fuser.passes.lowrank.forms``) change it.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx_graphsurgeon as gs

from fuser.passes.lowrank.geometry import ConvGeometry, conv_geometry
from fuser.passes.match import Skip, constant, describe


@dataclasses.dataclass
class Layer:
    """One candidate: its node, weight as ``(N, C, kh, kw)`` or ``(N, K)`` float64, bias."""

    node: gs.Node
    weight: np.ndarray
    bias: np.ndarray | None
    geometry: ConvGeometry | None = None  # Conv only
    weight_on_left: bool = False  # MatMul W @ X
    positions: int = 1  # output rows per sample for Gemm/MatMul (product of batch-like dims)

    @property
    def name(self) -> str:
        return self.node.name or self.node.outputs[0].name

    @property
    def source(self) -> str:
        """The tensor the weight multiplies (the right-hand one of ``W @ X``)."""
        return self.node.inputs[1 if self.weight_on_left else 0].name

    @property
    def is_conv(self) -> bool:
        return self.node.op == "Conv"

    @property
    def out_channels(self) -> int:
        return self.weight.shape[0]

    @property
    def in_features(self) -> int:
        return int(np.prod(self.weight.shape[1:]))

    def macs(self) -> int:
        """MACs per sample of the dense layer (a form's: ``forms.form(name).macs``)."""
        if self.is_conv:
            n, c, kh, kw = self.weight.shape
            return int(np.prod(self.geometry.out_hw)) * n * c * kh * kw
        n, k = self.weight.shape
        return self.positions * n * k


def candidates(graph: gs.Graph) -> tuple[list[Layer], dict[str, int]]:
    """The graph's candidate layers in topological order, and counted skip reasons."""
    layers, skipped = [], {}
    for node in graph.nodes:
        if node.op not in ("Conv", "Gemm", "MatMul"):
            continue
        try:
            layers.append(_layer(node))
        except Skip as reason:
            skipped[str(reason)] = skipped.get(str(reason), 0) + 1
    return layers, skipped


def _layer(node: gs.Node) -> Layer:
    if node.op == "MatMul":
        left = isinstance(node.inputs[0], gs.Constant) and \
            not isinstance(node.inputs[1], gs.Constant)
        tensor = node.inputs[0 if left else 1]
        w = constant(tensor, "weight", node)
        if w.ndim != 2:
            raise Skip(f"{describe(node)} has a {w.ndim}-D weight, not 2-D")
        _unshared(tensor, node)
        out_shape = getattr(node.outputs[0], "shape", None)
        positions = _rows(out_shape, left)
        return Layer(node, w if left else w.T, None, weight_on_left=left, positions=positions)
    tensor = node.inputs[1]
    w = constant(tensor, "weight", node)
    _unshared(tensor, node)
    bias = constant(node.inputs[2], "bias", node) if len(node.inputs) > 2 and \
        node.inputs[2].name else None
    if node.op == "Gemm":
        w = w if node.attrs.get("transB", 0) else w.T  # (N, K)
        w = w * float(node.attrs.get("alpha", 1.0))
        if bias is not None:
            bias = bias * float(node.attrs.get("beta", 1.0))
        return Layer(node, w, bias)
    geometry = conv_geometry(node, w)
    if geometry.in_hw is None:
        raise Skip(f"{describe(node)}: input size unknown (give --input-shape)")
    return Layer(node, w, bias, geometry)


def _unshared(tensor: gs.Tensor, node: gs.Node) -> None:
    if len(tensor.outputs) > 1:
        raise Skip(f"weight '{tensor.name}' of {describe(node)} is shared")


def _rows(shape: object, left: bool) -> int:
    """Output rows per sample: every dim but the first and the feature dim."""
    if not shape or not all(isinstance(d, int) for d in list(shape)[1:]):
        return 1
    dims = list(shape)
    inner = dims[1:-2] + ([dims[-1]] if left else [dims[-2]]) if len(dims) > 2 else []
    return int(np.prod(inner)) if inner else 1

"""Put factor weights into the graph: the exact ONNX forms of the low-rank rewrites.

Rules for every form: only the last node carries the bias; no non-linearity between factors;
strides, pads and dilations sit on the nodes with spatial extent (1 x 1 nodes get none);
padding is explicit (``auto_pad`` resolved first); factors are cast back to the weight dtype.

| method   | nodes (Conv weight shapes, M x C/group x kh x kw)                                  |
|----------|-------------------------------------------------------------------------------------|
| spatial  | V[R,C,kh,1] (strides [sh,1], pads [t,0,b,0]) -> H[N,R,1,kw] ([1,sw], [0,l,0,r])   |
| channel  | W'[R,C,kh,kw] (original spatial attributes) -> P[N,R,1,1]                           |
| tucker2  | U[R3,C,1,1] -> G[R4,R3,kh,kw] (original spatial attributes) -> O[N,R4,1,1]          |
| cp       | [R,C,1,1] -> [R,1,kh,1] group=R -> [R,1,1,kw] group=R -> [N,R,1,1]                  |
| input    | P[R,C,1,1] -> W'[N,R,kh,kw] (original spatial attributes)                           |
| gemm     | Gemm(X, A[r,K], transB=1) -> Gemm(., B[N,r], C, transB=1)                            |
| matmul   | MatMul(X, W1[K,r]) -> MatMul(., W2[r,N])   (or W2 @ (W1 @ X) for a left weight)       |
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import onnx_graphsurgeon as gs

from fuser.passes.match import Names, Skip, cast_back, describe

CONV_METHODS = ("spatial", "channel", "tucker2", "cp", "input")


@dataclasses.dataclass(frozen=True)
class ConvGeometry:
    """A 2-D Conv's spatial attributes with explicit pads, and its input/output sizes."""

    kernel: tuple[int, int]
    strides: tuple[int, int]
    dilations: tuple[int, int]
    pads: tuple[int, int, int, int]  # top, left, bottom, right
    in_hw: tuple[int, int] | None
    out_hw: tuple[int, int] | None


def conv_geometry(conv: gs.Node, weight: np.ndarray) -> ConvGeometry:
    """Explicit geometry of a 2-D, group-1 Conv; Skip for anything else."""
    if weight.ndim != 4:
        raise Skip(f"{describe(conv)} is not a 2-D convolution")
    if int(conv.attrs.get("group", 1)) != 1:
        raise Skip(f"{describe(conv)} has group={conv.attrs.get('group')} (not factorized)")
    kernel = tuple(weight.shape[2:])
    strides = tuple(conv.attrs.get("strides", [1, 1]))
    dilations = tuple(conv.attrs.get("dilations", [1, 1]))
    in_shape = getattr(conv.inputs[0], "shape", None)
    in_hw = tuple(in_shape[2:]) if in_shape is not None and all(
        isinstance(d, int) for d in in_shape[2:]) else None
    auto_pad = conv.attrs.get("auto_pad", "NOTSET")
    if auto_pad in ("NOTSET", "VALID"):
        pads = tuple(conv.attrs.get("pads", [0, 0, 0, 0])) if auto_pad == "NOTSET" else (0,) * 4
    else:  # SAME_UPPER / SAME_LOWER: resolve against the input size
        if in_hw is None:
            raise Skip(f"{describe(conv)} has auto_pad={auto_pad} and an unknown input size")
        total = [max((math.ceil(n / s) - 1) * s + (k - 1) * d + 1 - n, 0)
                 for n, s, k, d in zip(in_hw, strides, kernel, dilations, strict=True)]
        small = [t // 2 for t in total]
        large = [t - t // 2 for t in total]
        begin, end = (small, large) if auto_pad == "SAME_UPPER" else (large, small)
        pads = (begin[0], begin[1], end[0], end[1])
    out_hw = None
    if in_hw is not None:
        out_hw = tuple((in_hw[a] + pads[a] + pads[a + 2] - dilations[a] * (kernel[a] - 1) - 1)
                       // strides[a] + 1 for a in (0, 1))
    return ConvGeometry(kernel, strides, dilations, pads, in_hw, out_hw)


def conv_macs(method: str, g: ConvGeometry, c: int, n: int, rank: int | tuple[int, int]) -> int:
    """MACs per sample of the factorized form (exact output sizes of every node)."""
    h, w = g.out_hw
    if method == "dense":
        return h * w * n * c * g.kernel[0] * g.kernel[1]
    if method == "channel":
        return h * w * rank * (c * g.kernel[0] * g.kernel[1] + n)
    if method == "spatial":  # the vertical node keeps the input's full width
        width_mid = g.in_hw[1]
        return h * width_mid * rank * c * g.kernel[0] + h * w * n * rank * g.kernel[1]
    if method == "tucker2":
        r_in, r_out = rank
        return g.in_hw[0] * g.in_hw[1] * r_in * c + h * w * (r_out * r_in * g.kernel[0]
                                                             * g.kernel[1] + n * r_out)
    if method == "input":
        return g.in_hw[0] * g.in_hw[1] * rank * c + h * w * n * rank * g.kernel[0] * g.kernel[1]
    if method == "cp":
        width_mid = g.in_hw[1]
        return (g.in_hw[0] * g.in_hw[1] * rank * c + h * width_mid * rank * g.kernel[0]
                + h * w * rank * (g.kernel[1] + n))
    raise ValueError(method)


def _conv(graph: gs.Graph, names: Names, base: str, x: gs.Tensor, weight: np.ndarray,
          dtype: np.dtype, attrs: dict, bias: np.ndarray | None = None,
          out: gs.Tensor | None = None, flushed: list | None = None) -> gs.Tensor:
    w, f1 = cast_back(weight, dtype)
    inputs = [x, gs.Constant(names.fresh(f"{base}_W"), w)]
    if bias is not None:
        b, f2 = cast_back(bias, dtype)
        inputs.append(gs.Constant(names.fresh(f"{base}_B"), b))
        f1 += f2
    if flushed is not None:
        flushed.append(f1)
    out = out or gs.Variable(names.fresh(f"{base}_out"), dtype=dtype)
    attrs = {"kernel_shape": list(weight.shape[2:]), **attrs}
    graph.nodes.append(gs.Node("Conv", names.fresh(base), attrs=attrs, inputs=inputs,
                               outputs=[out]))
    return out


def replace_conv(graph: gs.Graph, conv: gs.Node, method: str, weights: list[np.ndarray],
                 bias: np.ndarray | None, g: ConvGeometry, names: Names) -> int:
    """Replace ``conv`` by the factor nodes of ``method``; return denormals flushed."""
    dtype = np.dtype(conv.inputs[1].dtype)
    base = conv.name or conv.outputs[0].name
    x, y = conv.inputs[0], conv.outputs[0]
    t, left, b, right = g.pads
    sh, sw = g.strides
    dh, dw = g.dilations
    full = {"strides": list(g.strides), "dilations": list(g.dilations), "pads": list(g.pads)}
    vertical = {"strides": [sh, 1], "dilations": [dh, 1], "pads": [t, 0, b, 0]}
    horizontal = {"strides": [1, sw], "dilations": [1, dw], "pads": [0, left, 0, right]}
    flushed: list[int] = []
    conv.inputs.clear()
    conv.outputs.clear()
    if method == "spatial":
        mid = _conv(graph, names, f"{base}_v", x, weights[0], dtype, vertical, flushed=flushed)
        _conv(graph, names, f"{base}_h", mid, weights[1], dtype, horizontal, bias, y, flushed)
    elif method == "channel":
        mid = _conv(graph, names, f"{base}_k", x, weights[0], dtype, full, flushed=flushed)
        _conv(graph, names, f"{base}_p", mid, weights[1], dtype, {}, bias, y, flushed)
    elif method == "tucker2":
        mid = _conv(graph, names, f"{base}_in", x, weights[0], dtype, {}, flushed=flushed)
        mid = _conv(graph, names, f"{base}_core", mid, weights[1], dtype, full, flushed=flushed)
        _conv(graph, names, f"{base}_out", mid, weights[2], dtype, {}, bias, y, flushed)
    elif method == "input":
        mid = _conv(graph, names, f"{base}_in", x, weights[0], dtype, {}, flushed=flushed)
        _conv(graph, names, f"{base}_k", mid, weights[1], dtype, full, bias, y, flushed)
    elif method == "cp":
        rank = weights[0].shape[0]
        mid = _conv(graph, names, f"{base}_in", x, weights[0], dtype, {}, flushed=flushed)
        mid = _conv(graph, names, f"{base}_v", mid, weights[1], dtype,
                    {**vertical, "group": rank}, flushed=flushed)
        mid = _conv(graph, names, f"{base}_h", mid, weights[2], dtype,
                    {**horizontal, "group": rank}, flushed=flushed)
        _conv(graph, names, f"{base}_out", mid, weights[3], dtype, {}, bias, y, flushed)
    else:
        raise ValueError(method)
    return sum(flushed)


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

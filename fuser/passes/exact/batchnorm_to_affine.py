"""Rewrite a BatchNormalization that could not be folded as one Mul and one Add.

    BN(x) = s * x + t,   s = gamma / sqrt(var + eps),   t = beta - mean * s

with ``s`` and ``t`` shaped (C, 1, ..., 1) to broadcast on axis 1. Not in the default
pipeline: on onnxruntime 1.31 CPU (2 threads) the BatchNormalization kernel was as fast as
Mul + Add on 1x64x56x56 and 8x64x56x56 and twice as fast on 1x256x14x14, at both
ORT_DISABLE_ALL and ORT_ENABLE_ALL (``python benchmarks/standalone_batchnorm.py``). Use it
for runtimes without a BatchNormalization kernel, or to let later passes see plain Mul/Add.
``s`` and ``t`` take the input's dtype (since opset 15 the parameters may have another one).
Skips: the input rank is unknown, the input is not float16/32/64, training mode, non-constant
parameters.
"""

from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs

from fuser.passes.base import Context, Rule, register
from fuser.passes.match import FLOAT_DTYPES, Skip, batchnorm_affine, cast_back, describe
from fuser.passes.surgery import detach


@register
class BatchNormToAffine(Rule):
    """Rewrite standalone BatchNormalization as Mul + Add (opt-in; BN is faster on ORT)."""

    name = "batchnorm-to-affine"
    ops = ("BatchNormalization",)

    def match(self, bn: gs.Node, context: Context) -> tuple:
        s, t = batchnorm_affine(bn)
        shape = getattr(bn.inputs[0], "shape", None)
        if shape is None:
            raise Skip(f"{describe(bn)}: input rank unknown")
        dtype = bn.inputs[0].dtype
        if not isinstance(dtype, np.dtype | type) or np.dtype(dtype) not in FLOAT_DTYPES:
            raise Skip(f"{describe(bn)}: input is not float16/32/64")
        return bn, s, t, shape, np.dtype(dtype)  # not the scale's: Mul/Add need one type

    def rewrite(self, found: tuple, context: Context) -> str:
        bn, s, t, shape, dtype = found
        names = context.names
        trailing = (1,) * (len(shape) - 2)
        s_c, flushed_s = cast_back(s.reshape((-1, *trailing)), dtype, keep_exact=True)
        t_c, flushed_t = cast_back(t.reshape((-1, *trailing)), dtype, keep_exact=True)
        context.result.stats["denormals flushed"] += flushed_s + flushed_t
        base = bn.name or bn.outputs[0].name
        x, y = bn.inputs[0], bn.outputs[0]
        scaled = gs.Variable(names.fresh(f"{base}_scaled"), dtype=x.dtype, shape=x.shape)
        detach(bn)
        context.graph.nodes.append(gs.Node(
            "Mul", names.fresh(f"{base}_mul"),
            inputs=[x, gs.Constant(names.fresh(f"{base}_scale"), s_c)], outputs=[scaled]))
        context.graph.nodes.append(gs.Node(
            "Add", names.fresh(f"{base}_add"),
            inputs=[scaled, gs.Constant(names.fresh(f"{base}_shift"), t_c)], outputs=[y]))
        return f"{describe(bn)} -> Mul + Add"

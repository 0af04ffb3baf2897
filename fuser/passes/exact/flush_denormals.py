"""Flush denormal floats in constant weights to zero.

A denormal (0 < |w| < finfo(dtype).tiny) contributes less than 1e-38 (float32) to any
output, but CPUs process it through a slow microcode path: onnxruntime users saw 5x
(microsoft/onnxruntime#6865) and 30x (#7448) slowdowns from trained or folded weights holding
them. Replacing them by 0 changes no output by more than that bound and is counted. Weights
inside subgraphs (If/Loop/Scan bodies) are flushed too. float16 weights are left alone
(``denormals.FLUSHED_DTYPES``): onnxruntime's CPU computes float16 in float32, where they are
normal numbers, and GPUs take them at full speed; zeroing them would cost accuracy only.
"""

from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs

from fuser.ir.statistics import constant_view, float_weights
from fuser.passes.base import Pass, PassResult, register
from fuser.passes.denormals import count_denormals, denormal_mask, is_flushed
from fuser.passes.exact._scaled import ScaledWeight


@register
class FlushDenormals(Pass):
    """Flush denormal floats in constant weights to zero."""

    name = "flush-denormals"

    def run(self, graph: gs.Graph) -> PassResult:
        result = PassResult()
        for tensor in float_weights(graph):
            if isinstance(tensor._values, ScaledWeight) or is_flushed(tensor._values):
                continue  # a fold's result: flushed when it is computed
            values = constant_view(tensor)
            count = count_denormals(values)
            if not count:
                continue
            flushed = np.array(values)
            flushed[denormal_mask(flushed)] = 0
            tensor.values = flushed
            result.stats["denormals flushed"] += count
            result.rewrote(f"{count} denormal(s) in '{tensor.name}' flushed to zero")
        return result

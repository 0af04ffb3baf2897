"""Calibration responses: what each candidate layer computes on real inputs.

The model is run on onnxruntime (CPU, optimizations off) with the candidate layers' outputs
exposed as extra graph outputs. For a Conv, ``samples`` output pixels per image are drawn
(seeded, the same positions for every model of a layer, so responses of the original and of
the approximated network pair up); for Gemm/MatMul every output row is a sample. Responses
exclude the layer's bias: ``y = W x``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import onnx

from fuser import ir as graph_io
from fuser.passes.lowrank.layers import Layer
from fuser.runtime import sessions as runtime

Feeds = Mapping[str, np.ndarray]


def layer_outputs(model: onnx.ModelProto, names: list[str],
                  batches: Sequence[Feeds]) -> dict[str, list[np.ndarray]]:
    """The tensors ``names`` computed by ``model`` on every batch."""
    if not names:  # onnxruntime reads an empty list as "every output"
        return {}
    probe = graph_io.with_outputs(model, names)
    sess = runtime.session(probe)
    collected: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for feeds in batches:
        for name, value in zip(names, sess.run(names, dict(feeds)), strict=True):
            collected[name].append(value)
    return collected


def responses(layer: Layer, outputs: list[np.ndarray], samples: int, seed: int) -> np.ndarray:
    """``(N, S)`` pre-bias responses of ``layer`` sampled from its output batches."""
    rng = np.random.default_rng(seed)
    columns = []
    for out in outputs:
        if layer.is_conv:
            b, n, h, w = out.shape
            count = min(samples, h * w)
            for image in range(b):
                pixels = rng.choice(h * w, count, replace=False)
                columns.append(out[image].reshape(n, -1)[:, pixels])
        elif layer.weight_on_left:
            columns.append(np.moveaxis(out, -2, 0).reshape(out.shape[-2], -1))
        else:
            columns.append(out.reshape(-1, out.shape[-1]).T)
    y = np.concatenate(columns, axis=1).astype(np.float64)
    if layer.bias is not None:
        y = y - np.asarray(layer.bias, np.float64).reshape(-1)[:, None]
    return y

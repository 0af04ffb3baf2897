"""Build the compressed model layer by layer from calibration data, and check it end to end
on the held-out samples."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import onnx

from fuser import ir as graph_io
from fuser.passes.lowrank import factorize
from fuser.passes.lowrank.layers import Layer, candidates
from fuser.passes.lowrank.ranks import DENSE
from fuser.passes.lowrank.rewrite import replace_conv, replace_matmul
from fuser.passes.match import Names
from fuser.runtime import sessions as runtime
from fuser.search.calibrate import Feeds, layer_outputs, responses


def build(model: onnx.ModelProto, layers: list[Layer], keys: list[str], ranks: list[int],
           targets: list[np.ndarray], fit: list[Feeds], samples: int, seed: int,
           reconstruction: str, input_shapes: Mapping[str, Sequence[int]] | None = None,
           ) -> tuple[onnx.ModelProto, list[float | None]]:
    """Rewrite the chosen layers in network order; return the model and response errors."""
    current, errors = model, [None] * len(layers)
    for i, key in enumerate(keys):
        if ranks[i] == DENSE:
            continue
        graph = graph_io.to_graph(current)
        with graph_io.annotated_at(graph, current, input_shapes):  # the export keeps the
            layer = next(la for la in candidates(graph)[0]          # declared interface
                         if la.node.outputs[0].name == key)
        if reconstruction == "whitened" and whitenable(layer):
            factors, fitted = whitened(current, layer, ranks[i], fit)
        else:
            if reconstruction == "asymmetric":
                seen = layer_outputs(current, [key], fit)[key]
                inputs = responses(layer, seen, samples, seed + i)
                factors = factorize.asymmetric(layer.weight, targets[i], inputs, ranks[i])
            else:  # pca, and the convolutions under "whitened"
                inputs = targets[i]
                factors = factorize.response_pca(layer.weight, inputs, ranks[i])
            second = factors.weights[1].reshape(len(inputs), -1)
            fitted = second @ (factors.mixing @ inputs) + factors.bias_shift[:, None]
        errors[i] = float(np.linalg.norm(fitted - targets[i]) / max(np.linalg.norm(targets[i]),
                                                                    1e-30))
        shift = factors.bias_shift if factors.bias_shift is not None else 0.0
        bias = shift + (layer.bias if layer.bias is not None else 0.0)
        bias = None if np.isscalar(bias) and bias == 0.0 else bias
        names = Names(graph)
        if layer.is_conv:
            replace_conv(graph, layer.node, "channel", factors.weights, bias, layer.geometry,
                         names)
        else:
            replace_matmul(graph, layer.node, *factors.weights, bias, names)
        graph.cleanup().toposort()
        current = graph_io.to_model(graph, template=model)
    return current, errors


def whitenable(layer: Layer) -> bool:
    """Gemm/MatMul whose input rows are the samples (no transA)."""
    return not layer.is_conv and not layer.node.attrs.get("transA", 0)


def whitened(current: onnx.ModelProto, layer: Layer, rank: int,
              fit: list[Feeds]) -> tuple[factorize.Factors, np.ndarray]:
    """Activation-whitened SVD from the layer's inputs in the approximated network."""
    name = layer.node.inputs[0].name
    batches = layer_outputs(current, [name], fit)[name]
    x = np.concatenate([b.reshape(-1, b.shape[-1]) for b in batches]).T.astype(np.float64)
    factors = factorize.whitened_svd(layer.weight, x, rank)
    a, b = factors.weights
    return factors, b @ (a @ x)


def outputs(model: onnx.ModelProto, held: list[Feeds]) -> dict[str, np.ndarray]:
    """Every output of ``model`` on the held-out batches, concatenated in calibration order."""
    sess = runtime.session(model)
    names = [o.name for o in sess.get_outputs()]
    collected: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for feeds in held:
        for name, value in zip(names, sess.run(names, dict(feeds)), strict=True):
            collected[name].append(value)
    return {n: np.concatenate(v) if v[0].ndim else np.stack(v) for n, v in collected.items()}


def relative_error(ref: dict[str, np.ndarray], new: dict[str, np.ndarray]) -> float:
    """The worst output's relative L2 error."""
    return max(float(np.linalg.norm(new[n].astype(np.float64) - r) /
                     max(float(np.linalg.norm(r.astype(np.float64))), 1e-30))
               for n, r in ref.items())


def agreement(ref: dict[str, np.ndarray], new: dict[str, np.ndarray]) -> float | None:
    """Top-1 agreement of the first output (None without a class axis)."""
    r, n = next(iter(ref.values())), next(iter(new.values()))
    if r.ndim < 2 or r.shape[-1] < 2:
        return None
    return float(np.mean(r.argmax(-1) == n.argmax(-1)))

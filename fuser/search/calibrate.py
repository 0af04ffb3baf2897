"""Calibration samples: what each candidate layer reads and computes on real inputs.

The model is run on onnxruntime (CPU, ORT_ENABLE_ALL) up to the layers asked for
(``cut.prefix``), one batch at a time, and each batch is sampled at once, so that only one
batch of layer tensors is held. For a Conv, ``samples`` output pixels per image are drawn
(seeded per layer, so the responses of the original and of the approximated network are
taken at the same pixels and pair up), and as many input pixels; for Gemm/MatMul every row
is a sample. Responses exclude the layer's bias: ``y = W x``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import onnx

from fuser.passes.lowrank.layers import Layer
from fuser.runtime import sessions as runtime
from fuser.search import cut

Feeds = Mapping[str, np.ndarray]


class Sampler:
    """Seeded samples of one layer's output responses and input channels."""

    def __init__(self, layer: Layer, samples: int, seed: int) -> None:
        self.layer, self.samples = layer, samples
        self._out_rng = np.random.default_rng(seed)
        self._in_rng = np.random.default_rng(seed + 1_000_003)
        self._out: list[np.ndarray] = []
        self._in: list[np.ndarray] = []

    def add(self, output: np.ndarray | None, inputs: np.ndarray | None = None) -> None:
        if output is not None:
            self._out.append(_columns(self.layer, output, self.samples, self._out_rng,
                                      self.layer.weight_on_left))
        if inputs is not None:
            self._in.append(_columns(self.layer, inputs, self.samples, self._in_rng, False))

    def responses(self) -> np.ndarray:
        """``(N, S)`` pre-bias responses."""
        y = np.concatenate(self._out, axis=1).astype(np.float64)
        if self.layer.bias is not None:
            y = y - np.asarray(self.layer.bias, np.float64).reshape(-1)[:, None]
        return y

    def inputs(self) -> np.ndarray:
        """``(C, S)`` input channel samples (Conv) or ``(K, rows)`` (Gemm/MatMul)."""
        return np.concatenate(self._in, axis=1).astype(np.float64)


def _columns(layer: Layer, x: np.ndarray, samples: int, rng: np.random.Generator,
             left: bool) -> np.ndarray:
    if layer.is_conv:
        b, n = x.shape[:2]
        flat = x.reshape(b, n, -1)
        count = min(samples, flat.shape[2])
        return np.concatenate([flat[i][:, rng.choice(flat.shape[2], count, replace=False)]
                               for i in range(b)], axis=1)
    if left:
        return np.moveaxis(x, -2, 0).reshape(x.shape[-2], -1)
    return x.reshape(-1, x.shape[-1]).T


def sample(model: onnx.ModelProto, layers: Sequence[Layer], batches: Sequence[Feeds],
           samples: int, seed: int, *, inputs: bool = True,
           seeds: Sequence[int] | None = None) -> list[Sampler]:
    """One ``Sampler`` per layer, filled from ``model`` run on ``batches`` (layer i seeded
    with ``seeds[i]``, default ``seed + i``)."""
    samplers = [Sampler(layer, samples, seed + i if seeds is None else seeds[i])
                for i, layer in enumerate(layers)]
    outs = [la.node.outputs[0].name for la in layers]
    ins = [la.source for la in layers] if inputs else []
    for values in tensors(model, list(dict.fromkeys(outs + ins)), batches):
        for i, sampler in enumerate(samplers):
            sampler.add(values[outs[i]], values[ins[i]] if inputs else None)
    return samplers


def tensors(model: onnx.ModelProto, names: list[str], batches: Sequence[Feeds],
            known: Sequence[Mapping[str, np.ndarray]] | None = None
            ) -> Iterator[dict[str, np.ndarray]]:
    """The tensors ``names`` on each batch in turn (graph inputs from the feeds, the others
    from the part of ``model`` that computes them, at ORT_ENABLE_ALL); with ``known`` (one
    dict per batch), that part starts from those tensors wherever it can."""
    graph_inputs = {i.name for i in model.graph.input}
    given = {n: v.dtype for n, v in known[0].items()} if known else {}
    computed = [n for n in names if n not in graph_inputs and n not in given]
    # an empty list would read as "every output" to onnxruntime: no session then
    sess = runtime.session(cut.prefix(model, computed, given), level="all") if computed \
        else None
    reads = [i.name for i in sess.get_inputs()] if sess else []
    for b, feeds in enumerate(batches):
        have = {**feeds, **known[b]} if known else feeds
        values = dict(zip(computed, sess.run(computed, {n: have[n] for n in reads}),
                          strict=True)) if sess else {}
        values.update({n: np.asarray(have[n]) for n in names if n not in values})
        yield values

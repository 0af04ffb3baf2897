"""Build the compressed model layer by layer from calibration data, and check it end to end
on the held-out samples."""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx

from fuser import ir as graph_io
from fuser.passes.lowrank.forms import form
from fuser.passes.lowrank.layers import Layer
from fuser.passes.match import Names
from fuser.runtime import sessions as runtime
from fuser.search import cut
from fuser.search.calibrate import Feeds, Sampler, sample, tensors
from fuser.search.forms import LayerData, Option

#: Past this size, the tensors carried from one rewritten layer to the next are dropped
#: and the next layer's part runs from the model's inputs.
FRONTIER_BYTES = 1 << 29


class Builder:
    """Builds the compressed model for a choice of options, layer by layer in network order,
    each layer fitted to its inputs in the network approximated so far (``forms``).

    Models after each layer are kept for the last choice built, so that a new choice is
    built from its first changed layer on: a choice on the guard's ladder that changes
    layer i does not refit layers 0 .. i-1. Fitting layer i runs only the part of the
    network up to it (``cut.prefix``), from the tensors the previous rewritten layer's run
    left for the network after it (so a build runs the fitting samples through the network
    about once, not once per layer); before the first rewrite, the original's data
    (``data``) are used.
    """

    def __init__(self, model: onnx.ModelProto, layers: list[Layer], data: list[LayerData],
                 fit: list[Feeds], samples: int, seed: int, reconstruction: str) -> None:
        self.model, self.layers, self.data, self.fit = model, layers, data, fit
        self.samples, self.seed, self.reconstruction = samples, seed, reconstruction
        self._states: list[tuple[tuple, onnx.ModelProto]] = [((), model)]
        self.energies: dict[int, float] = {}
        self.refits = 0  # layers fitted so far, over every build

    def build(self, chosen: list[Option | None]) -> onnx.ModelProto:
        keys = tuple(o.key if o else None for o in chosen)
        kept = 0
        while kept < len(self._states) and self._states[kept][0] == keys[:kept]:
            kept += 1
        del self._states[kept:]
        current, frontier = self._states[-1][1], None
        for i in range(kept - 1, len(chosen)):
            if chosen[i] is not None:
                current, frontier = self._rewrite(current, i, chosen[i], frontier)
            self._states.append((keys[:i + 1], current))
        return current

    def _rewrite(self, current: onnx.ModelProto, i: int, option: Option,
                 frontier: list[dict] | None) -> tuple[onnx.ModelProto, list[dict] | None]:
        layer, key = self.layers[i], self.layers[i].node.outputs[0].name
        if current is self.model:
            data, frontier = self.data[i], None
        else:
            data, frontier = self._data(current, i, frontier)
        shape = form(option.method)
        factors = shape.fit(layer, option.rank, data, self.reconstruction)
        self.energies[i] = factors.energy
        self.refits += 1
        graph = graph_io.to_graph(current)
        node = next(n for n in graph.nodes if n.outputs and n.outputs[0].name == key)
        shape.replace(graph, dataclasses.replace(layer, node=node), factors, Names(graph))
        graph.cleanup().toposort()
        return graph_io.to_model(graph, template=self.model), frontier

    def _data(self, current: onnx.ModelProto, i: int, known: list[dict] | None
              ) -> tuple[LayerData, list[dict] | None]:
        """Layer i's data in the approximated network ``current``, and the tensors the
        network after layer i reads from before it (the next layer's part starts there;
        None past ``FRONTIER_BYTES``). ``known``: such tensors of an earlier layer."""
        layer = self.layers[i]
        out = layer.node.outputs[0].name
        after = cut.upstream_inputs(current, out)
        seen = Sampler(layer, self.samples, self.seed + i)
        carried: list[dict] | None = []
        names = list(dict.fromkeys([out, layer.source, *after]))
        for values in tensors(current, names, self.fit, known):
            seen.add(values[out], values[layer.source])
            if carried is not None:
                carried.append({n: values[n] for n in after})
                if sum(v.nbytes for c in carried for v in c.values()) > FRONTIER_BYTES:
                    carried = None
        return LayerData(self.data[i].target, seen.responses(), seen.inputs()), carried


def layer_errors(model: onnx.ModelProto, layers: list[Layer], data: list[LayerData],
                 fit: list[Feeds], samples: int, seed: int) -> list[float]:
    """Each layer's relative response error in ``model`` against the original's responses."""
    errors = []
    for i, seen in enumerate(sample(model, layers, fit, samples, seed, inputs=False)):
        now, target = seen.responses(), data[i].target
        errors.append(float(np.linalg.norm(now - target) / max(np.linalg.norm(target), 1e-30)))
    return errors


def outputs(model: onnx.ModelProto, held: list[Feeds], level: str = "disable"
            ) -> dict[str, np.ndarray]:
    """Every output of ``model`` on the batches, samples first in calibration order
    (``samples_first``)."""
    sess = runtime.session(model, level=level)
    names = [o.name for o in sess.get_outputs()]
    collected: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for feeds in held:
        for name, value in zip(names, sess.run(names, dict(feeds)), strict=True):
            collected[name].append(value)
    sizes = [len(next(iter(feeds.values()))) for feeds in held]
    return {n: samples_first(v, sizes) for n, v in collected.items()}


def samples_first(values: list[np.ndarray], sizes: list[int]) -> np.ndarray:
    """One output's per-batch arrays joined along its sample axis, moved to the front.

    The sample axis is the first axis whose size is the batch's sample count in every batch
    (axis 0 for most models; axis 1 for a sequence-first output, ``(T, N, C)``); with
    single-sample batches and no such axis, the arrays are stacked on a new first axis; with
    none at all, joined along axis 0 as they are."""
    for axis in range(values[0].ndim):
        if all(v.ndim > axis and v.shape[axis] == n for v, n in zip(values, sizes,
                                                                  strict=True)):
            return np.moveaxis(np.concatenate(values, axis=axis), axis, 0)
    if all(n == 1 for n in sizes) or values[0].ndim == 0:
        return np.stack(values)
    return np.concatenate(values)


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

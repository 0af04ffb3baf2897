"""Build the compressed model layer by layer from calibration data, and check it end to end
on the held-out samples."""

from __future__ import annotations

import dataclasses
from typing import TypeVar

import numpy as np
import onnx
import onnx_graphsurgeon as gs

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
M = TypeVar("M", onnx.ModelProto, onnx.TensorProto)


class Builder:
    """Builds the compressed model for a choice of options, layer by layer in network order,
    each layer fitted to its inputs in the network approximated so far (``forms``).

    One copy of the model is edited in place: rewriting a layer splices its factor nodes
    and weights in where its node was (``Edit``), and a new choice undoes the edits from
    its first changed layer on, so a choice on the guard's ladder that changes layer i does
    not refit layers 0 .. i-1. Fitting layer i runs only the part of the network up to it
    (``cut.prefix``), from the tensors the previous rewritten layer's run left for the
    network after it (so a build runs the fitting samples through the network about once,
    not once per layer); before the first rewrite, the original's data (``data``) are used.
    ``build`` returns the edited model itself: ``kept`` copies a model the caller keeps.
    """

    label = "low-rank"  # the progress line's

    def __init__(self, model: onnx.ModelProto, layers: list[Layer], data: list[LayerData],
                 fit: list[Feeds], samples: int, seed: int, reconstruction: str) -> None:
        self.model, self.layers, self.data, self.fit = model, layers, data, fit
        self.samples, self.seed, self.reconstruction = samples, seed, reconstruction
        self.work = kept(model)
        self._edits: list[tuple[tuple, Edit | None]] = []  # (choice key, edit) per layer
        self.energies: dict[int, float] = {}
        self.refits = 0  # layers fitted so far, over every build

    def build(self, chosen: list[Option | None]) -> onnx.ModelProto:
        keys = [o.key if o else None for o in chosen]
        same = 0
        while same < len(self._edits) and self._edits[same][0] == keys[same]:
            same += 1
        while len(self._edits) > same:
            edit = self._edits.pop()[1]
            if edit is not None:
                edit.undo(self.work)
        frontier = None
        for i in range(same, len(chosen)):
            edit = None
            if chosen[i] is not None:
                edit, frontier = self._rewrite(i, chosen[i], frontier)
            self._edits.append((keys[i], edit))
        return self.work

    def kept(self, model: onnx.ModelProto) -> onnx.ModelProto:
        """A copy of a built model that later builds do not change."""
        return kept(model)

    def _rewrite(self, i: int, option: Option, frontier: list[dict] | None
                 ) -> tuple[Edit, list[dict] | None]:
        layer = self.layers[i]
        if not any(edit for _, edit in self._edits):
            data, frontier = self.data[i], None
        else:
            data, frontier = self._data(i, frontier)
        shape = form(option.method)
        factors = shape.fit(layer, option.rank, data, self.reconstruction)
        self.energies[i] = factors.energy
        self.refits += 1
        return Edit.splice(self.work, factor_model(layer, option.method, factors,
                                                   taken(self.work))), frontier

    def _data(self, i: int, known: list[dict] | None) -> tuple[LayerData, list[dict] | None]:
        """Layer i's data in the approximated network, and the tensors the network after
        layer i reads from before it (the next layer's part starts there; None past
        ``FRONTIER_BYTES``). ``known``: such tensors of an earlier layer."""
        layer, current = self.layers[i], self.work
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


def kept(message: M) -> M:
    """A copy of a protobuf message (a model, a tensor) that later edits do not change."""
    copy = type(message)()
    copy.CopyFrom(message)
    return copy


def taken(model: onnx.ModelProto) -> set[str]:
    """Every node and tensor name of ``model`` (factor names must not collide with them)."""
    names = {n.name for n in model.graph.node}
    names.update(t for n in model.graph.node for t in [*n.input, *n.output])
    names.update(t.name for t in model.graph.initializer)
    return names


def factor_model(layer: Layer, method: str, factors, names: set[str] = frozenset()
                 ) -> onnx.ModelProto:
    """The layer alone as form ``method``'s factor nodes, from its input tensor to its
    output tensor (same names as in the network), with new names outside ``names``."""
    node = layer.node
    dtype = np.dtype(node.inputs[1].dtype)
    x = gs.Variable(layer.source, dtype)
    y = gs.Variable(node.outputs[0].name, dtype)
    copy = gs.Node(node.op, node.name, attrs=dict(node.attrs),
                   inputs=[x if t.name == layer.source else t for t in node.inputs],
                   outputs=[y])
    graph = gs.Graph(nodes=[copy], inputs=[x], outputs=[y], opset=17)
    fresh = Names(graph)
    fresh.taken.update(names)
    form(method).replace(graph, dataclasses.replace(layer, node=copy), factors, fresh)
    graph.cleanup().toposort()
    model = graph_io.to_model(graph)
    model.ir_version = 8
    return model


@dataclasses.dataclass
class Edit:
    """One layer's node replaced in place by factor nodes, and how to undo it."""

    index: int  # where the layer's node was, and the factor nodes are
    node: onnx.NodeProto  # the layer's node
    count: int  # factor nodes
    added: list[str]  # their weights' names
    removed: list[onnx.TensorProto]  # the layer's weights no other node reads

    @classmethod
    def splice(cls, model: onnx.ModelProto, factors: onnx.ModelProto) -> Edit:
        graph, out = model.graph, factors.graph.output[0].name
        index = next(k for k, n in enumerate(graph.node) if out in n.output)
        node = onnx.NodeProto()
        node.CopyFrom(graph.node[index])
        del graph.node[index]
        for offset, factor in enumerate(factors.graph.node):
            graph.node.insert(index + offset, factor)
        read = {t for n in graph.node for t in cut.reads(n)} | {i.name for i in graph.input}
        removed = [kept(t) for t in graph.initializer
                   if t.name in node.input and t.name not in read]
        names = {t.name for t in removed}
        keep = [t for t in graph.initializer if t.name not in names]
        del graph.initializer[:]
        graph.initializer.extend(keep)
        graph.initializer.extend(factors.graph.initializer)
        return cls(index, node, len(factors.graph.node),
                   [t.name for t in factors.graph.initializer], removed)

    def undo(self, model: onnx.ModelProto) -> None:
        graph = model.graph
        for _ in range(self.count):
            del graph.node[self.index]
        graph.node.insert(self.index, self.node)
        added = set(self.added)
        keep = [t for t in graph.initializer if t.name not in added]
        del graph.initializer[:]
        graph.initializer.extend(keep + self.removed)


def layer_errors(model: onnx.ModelProto, layers: list[Layer], data: list[LayerData],
                 fit: list[Feeds], samples: int, seed: int) -> list[float]:
    """Each layer's relative response error in ``model`` against the original's responses."""
    errors = []
    for i, seen in enumerate(sample(model, layers, fit, samples, seed, inputs=False)):
        now, target = seen.responses(), data[i].target
        errors.append(float(np.linalg.norm(now - target) / max(np.linalg.norm(target), 1e-30)))
    return errors


def outputs(model: onnx.ModelProto, held: list[Feeds], level: str = "disable",
            session: object | None = None) -> dict[str, np.ndarray]:
    """Every output of ``model`` on the batches, samples first in calibration order
    (``samples_first``); ``session``: one already made for ``model`` at ``level``."""
    sess = session or runtime.session(model, level=level)
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

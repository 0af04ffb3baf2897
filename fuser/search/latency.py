"""Per-layer latency table: what a rewrite really costs on onnxruntime.

Each candidate (a layer, dense or factorized at a rank) is timed alone: a one-layer model
with the layer's real input shape, at the batch size, threads and ORT_ENABLE_ALL users run,
on the provider they deploy to: ``fuser.runtime.bench`` with CUDA and IO binding when CUDA
really loads (``provider="auto"``), the CPU otherwise. Weights are seeded random: the time
does not depend on their values. Each timing stops after ``seconds`` of timed rounds (at
least ``bench.MIN_ROUNDS``), and results are cached on disk (``~/.cache/fuser/latency.json``,
or ``$FUSER_CACHE``) by a signature of everything that matters, so a second search is fast.

A time measured while the machine was busy (a test run, another benchmark) would mislead
every later search, so each cached time is stored with the time of a fixed reference
convolution measured in the same session. A later table times the reference once and
trusts a cached entry only if the reference runs within ``TRUST`` of the stored one; other
entries (and those of older caches, which have no reference) are measured again.

A ``deadline`` (``time.perf_counter()`` value, from ``--search-time``) bounds the table: past
it, a form not yet measured is estimated from the dense layer's measured time scaled by the
MACs ratio, and counted in ``estimated`` (the report says how many).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from fuser import ir as graph_io
from fuser.passes.lowrank.forms import form
from fuser.passes.lowrank.layers import Layer
from fuser.passes.match import Names
from fuser.runtime import bench, machine
from fuser.runtime import sessions as runtime
from fuser.runtime.providers import ProviderChoice, select_provider
from fuser.runtime.runners import Progress

logger = logging.getLogger(__name__)

#: A cached time is trusted when the reference convolution runs within this ratio (either
#: way) of its speed when the time was stored.
TRUST = 1.25


def cache_path() -> Path:
    root = os.environ.get("FUSER_CACHE") or Path.home() / ".cache" / "fuser"
    return Path(root) / "latency.json"


class LatencyTable:
    """Measured milliseconds per (layer signature, method, rank), with a disk cache."""

    def __init__(self, *, batch: int = 1, threads: int = 1, rounds: int = 30,
                 seconds: float = 0.3, provider: str | ProviderChoice = "auto",
                 path: Path | None = None) -> None:
        self.batch, self.threads, self.rounds, self.seconds = batch, threads, rounds, seconds
        self.provider = provider  # resolved by the first measurement (a probe session)
        self.path = path or cache_path()
        self.measured = self.estimated = 0
        self.deadline: float | None = None
        self.progress: Progress | None = None  # a line on stderr while measuring
        self._cache: dict[str, float] = {}  # times this table uses
        self._new: set[str] = set()  # the keys it measured itself
        self._reference: float | None = None  # ms of the reference conv, timed once
        try:
            stored = json.loads(self.path.read_text())
        except (OSError, ValueError):
            stored = {}
        # signature -> [ms, reference ms when measured]; older caches stored bare floats
        self._stored = {k: v for k, v in stored.items() if isinstance(v, list) and len(v) == 2}

    def signature(self, layer: Layer, method: str, rank: int) -> str:
        geometry = layer.geometry.__dict__ if layer.geometry else None
        provider = self.provider.used if isinstance(self.provider, ProviderChoice) else \
            self.provider
        return json.dumps([layer.node.op, list(layer.weight.shape), geometry, method, rank,
                           self.batch, self.threads, layer.positions, layer.weight_on_left,
                           runtime.onnxruntime_version()]
                          + ([provider] if provider not in ("auto", "cpu") else []),
                          sort_keys=True, default=str)

    def ms(self, layer: Layer, method: str = "dense", rank: int | tuple[int, int] = 0) -> float:
        """Median milliseconds of the layer (dense) or of its factorized form (estimated from
        the MACs past the deadline)."""
        self.reference_ms()  # first: it resolves the provider the signature names
        key = self.signature(layer, method, rank)
        if key not in self._cache and self._trusted(key):
            self._cache[key] = self._stored[key][0]
        if key not in self._cache:
            if method != "dense" and self.deadline is not None and \
                    time.perf_counter() > self.deadline:
                self.estimated += 1
                return self.ms(layer) * form(method).macs(layer, rank) / max(layer.macs(), 1)
            if self.progress is not None:
                self.progress.show(f"low-rank: timing {layer.name} {method}"
                                   + (f" rank {rank}" if rank else "")
                                   + f" ({self.measured + 1} measured)")
            self._cache[key] = self._time(_isolated(layer, method, rank, self.batch))
            self._new.add(key)
            self.measured += 1
        return self._cache[key]

    def compare(self, original: onnx.ModelProto, compressed: onnx.ModelProto,
                feeds: Mapping[str, np.ndarray]) -> tuple[float, float]:
        """Median milliseconds of the two whole models, timed interleaved at ORT_ENABLE_ALL
        on the table's provider, threads and batch (``feeds`` are tiled to the batch)."""
        ms = self._whole({"original": original, "compressed": compressed}, feeds)
        return ms["original"], ms["compressed"]

    def model_ms(self, model: onnx.ModelProto, feeds: Mapping[str, np.ndarray]) -> float:
        """Median milliseconds of the whole model, as ``compare`` times it."""
        return self._whole({"model": model}, feeds)["model"]

    def _whole(self, models: dict[str, onnx.ModelProto],
               feeds: Mapping[str, np.ndarray]) -> dict[str, float]:
        count = len(next(iter(feeds.values())))
        tiled = {k: np.concatenate([v] * -(-self.batch // count))[:self.batch]
                 for k, v in feeds.items()}
        timed = bench.benchmark(models, {self.batch: tiled}, levels=("all",),
                                provider=self._provider(next(iter(models.values()))),
                                threads=self.threads, time_budget=2.0, progress=False)
        return {t.model: t.stats.median_ms for t in timed.timings}

    def reference_ms(self) -> float:
        """Median milliseconds of the reference convolution (timed once per table)."""
        if self._reference is None:
            self._reference = self._time(machine.reference_model())
        return self._reference

    def _trusted(self, key: str) -> bool:
        """Whether the stored time of ``key`` was measured on a machine as fast as now."""
        if key not in self._stored:
            return False
        ratio = self.reference_ms() / max(self._stored[key][1], 1e-9)
        return 1 / TRUST <= ratio <= TRUST

    def save(self) -> None:
        """Write the times measured here, with the reference time, over the stored ones."""
        if not self._new:
            return
        stored = dict(self._stored)
        stored.update({k: [self._cache[k], self.reference_ms()] for k in self._new})
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(stored, sort_keys=True))
            os.replace(tmp, self.path)
        except OSError as exc:  # a cache that cannot be written only costs time
            logger.warning("latency cache not saved: %s", exc)

    def _provider(self, model: onnx.ModelProto) -> ProviderChoice:
        """The provider choice, made by a probe session on the first model timed."""
        if not isinstance(self.provider, ProviderChoice):
            self.provider = select_provider(model, self.provider)
        return self.provider

    def _time(self, model: onnx.ModelProto) -> float:
        feeds = runtime.random_feeds(model, np.random.default_rng(0))
        result = bench.benchmark({"layer": model}, {self.batch: feeds}, levels=("all",),
                                 provider=self._provider(model), threads=self.threads, warmup=3,
                                 rounds=self.rounds, time_budget=self.seconds, progress=False)
        return result.timings[0].stats.median_ms


def _isolated(layer: Layer, method: str, rank: int, batch: int) -> onnx.ModelProto:
    """A one-layer model: the layer's input shape (batch ``batch``) -> dense or factorized."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal(layer.weight.shape).astype(np.float32)
    if layer.is_conv:
        g = layer.geometry
        graph, node = _one_node("Conv", [batch, w.shape[1], *g.in_hw], w, {
            "kernel_shape": list(g.kernel), "strides": list(g.strides),
            "dilations": list(g.dilations), "pads": list(g.pads)})
    else:
        rows = max(layer.positions, 1)
        graph, node = _one_node("Gemm", [batch * rows, w.shape[1]], w, {"transB": 1})
    if method != "dense":
        shape = form(method)
        factors = [rng.standard_normal(s) for s in shape.shapes(layer, rank)]  # any values
        shape.emit(graph, dataclasses.replace(layer, node=node), factors, None, Names(graph))
        graph.cleanup().toposort()
    return _to_model(graph)


def _one_node(op: str, x_shape: list[int], w: np.ndarray, attrs: dict
              ) -> tuple[gs.Graph, gs.Node]:
    """A graph of one ``op`` from input ``x`` (``x_shape``) and weight ``w`` to ``y``."""
    x = gs.Variable("x", np.float32, x_shape)
    y = gs.Variable("y", np.float32)
    node = gs.Node(op, "layer", attrs=attrs, inputs=[x, gs.Constant("W", w)], outputs=[y])
    return gs.Graph(nodes=[node], inputs=[x], outputs=[y], opset=17), node


def _to_model(graph: gs.Graph) -> onnx.ModelProto:
    model = graph_io.to_model(graph)
    model.ir_version = 8
    return model

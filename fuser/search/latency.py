"""Per-layer latency table: what a rewrite really costs on onnxruntime.

Each candidate (a layer, dense or factorized at a rank) is timed alone: a one-layer model
with the layer's real input shape, on the target provider, threads and batch size, at
ORT_ENABLE_ALL (what users run). Weights are seeded random: the time does not depend on
their values. Results are cached on disk (``~/.cache/fuser/latency.json``, or
``$FUSER_CACHE``) by a signature of everything that matters, so a second search is fast.
Latency between two measured ranks is interpolated linearly.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from fuser import ir as graph_io
from fuser.passes.lowrank.layers import Layer
from fuser.passes.lowrank.rewrite import replace_conv, replace_matmul
from fuser.passes.match import Names
from fuser.runtime import sessions as runtime
from fuser.runtime.runners import Progress

logger = logging.getLogger(__name__)


def cache_path() -> Path:
    root = os.environ.get("FUSER_CACHE") or Path.home() / ".cache" / "fuser"
    return Path(root) / "latency.json"


class LatencyTable:
    """Measured milliseconds per (layer signature, method, rank), with a disk cache."""

    def __init__(self, *, batch: int = 1, threads: int = 1, rounds: int = 30,
                 path: Path | None = None) -> None:
        self.batch, self.threads, self.rounds = batch, threads, rounds
        self.path = path or cache_path()
        self.measured = 0
        self.progress: Progress | None = None  # a line on stderr while measuring
        try:
            self._cache = json.loads(self.path.read_text())
        except (OSError, ValueError):
            self._cache = {}

    def signature(self, layer: Layer, method: str, rank: int) -> str:
        geometry = layer.geometry.__dict__ if layer.geometry else None
        return json.dumps([layer.node.op, list(layer.weight.shape), geometry, method, rank,
                           self.batch, self.threads, layer.positions, layer.weight_on_left,
                           runtime.onnxruntime_version()], sort_keys=True, default=str)

    def ms(self, layer: Layer, method: str = "dense", rank: int = 0) -> float:
        """Median milliseconds of the layer (dense) or of its factorized form."""
        key = self.signature(layer, method, rank)
        if key not in self._cache:
            if self.progress is not None:
                self.progress.show(f"low-rank: timing {layer.name} {method}"
                                   + (f" rank {rank}" if rank else "")
                                   + f" ({self.measured + 1} measured)")
            self._cache[key] = self._time(_isolated(layer, method, rank, self.batch))
            self.measured += 1
        return self._cache[key]

    def interpolate(self, layer: Layer, method: str, rank: int, grid: list[int]) -> float:
        """Latency at ``rank`` from the measured ``grid`` ranks (linear in between)."""
        points = sorted(set(grid))
        if rank in points:
            return self.ms(layer, method, rank)
        below = max((p for p in points if p < rank), default=points[0])
        above = min((p for p in points if p > rank), default=points[-1])
        low, high = self.ms(layer, method, below), self.ms(layer, method, above)
        if above == below:
            return low
        return low + (high - low) * (rank - below) / (above - below)

    def save(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self._cache, sort_keys=True))
            os.replace(tmp, self.path)
        except OSError as exc:  # a cache that cannot be written only costs time
            logger.warning("latency cache not saved: %s", exc)

    def _time(self, model: onnx.ModelProto) -> float:
        feeds = runtime.random_feeds(model, np.random.default_rng(0))
        return runtime.median_ms(model, feeds, threads=self.threads, rounds=self.rounds)


def factor_shapes(method: str, shape: tuple[int, ...],
                  rank: int | tuple[int, int]) -> list[tuple[int, ...]]:
    """Weight shapes of a factorized form (see ``rewrite``)."""
    if len(shape) == 2:
        n, k = shape
        return [(rank, k), (n, rank)]
    n, c, kh, kw = shape
    if method == "channel":
        return [(rank, c, kh, kw), (n, rank, 1, 1)]
    if method == "spatial":
        return [(rank, c, kh, 1), (n, rank, 1, kw)]
    if method == "tucker2":
        r_in, r_out = rank
        return [(r_in, c, 1, 1), (r_out, r_in, kh, kw), (n, r_out, 1, 1)]
    return [(rank, c, 1, 1), (rank, 1, kh, 1), (rank, 1, 1, kw), (n, rank, 1, 1)]  # cp


def _isolated(layer: Layer, method: str, rank: int, batch: int) -> onnx.ModelProto:
    """A one-layer model: the layer's input shape (batch ``batch``) -> dense or factorized."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal(layer.weight.shape).astype(np.float32)
    if layer.is_conv:
        c = w.shape[1]
        h, width = layer.geometry.in_hw
        x = gs.Variable("x", np.float32, [batch, c, h, width])
        y = gs.Variable("y", np.float32)
        g = layer.geometry
        node = gs.Node("Conv", "layer", attrs={
            "kernel_shape": list(g.kernel), "strides": list(g.strides),
            "dilations": list(g.dilations), "pads": list(g.pads)},
            inputs=[x, gs.Constant("W", w)], outputs=[y])
    else:
        n, k = w.shape
        rows = max(layer.positions, 1)
        x = gs.Variable("x", np.float32, [batch * rows, k])
        y = gs.Variable("y", np.float32)
        node = gs.Node("Gemm", "layer", attrs={"transB": 1},
                       inputs=[x, gs.Constant("W", w)], outputs=[y])
    graph = gs.Graph(nodes=[node], inputs=[x], outputs=[y], opset=17)
    if method != "dense":
        names = Names(graph)
        shapes = factor_shapes(method, w.shape, rank)
        factors = [rng.standard_normal(shape) for shape in shapes]  # values do not matter
        if layer.is_conv:
            replace_conv(graph, node, method, factors, None, layer.geometry, names)
        else:
            replace_matmul(graph, node, *factors, None, names)
        graph.cleanup().toposort()
    model = graph_io.to_model(graph)
    model.ir_version = 8
    return model

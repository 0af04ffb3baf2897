"""Is the machine busy? A fixed reference convolution timed now against the fastest it has
run here before (cached per CPU, onnxruntime version and thread count), and the load average
against the cores.

A timing taken while another job runs can read a 1 ms model at 0.25x of itself: every timing
says when the machine looked busy (``BenchResult.busy``), so that a figure is never taken for
more than it is.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import numpy as np
import onnx

from fuser.runtime import sessions as runtime
from fuser.runtime.providers import cpu_model

logger = logging.getLogger(__name__)

#: The reference is busy-slow when it runs this much slower than its best here.
SLOWER = 1.25
ROUNDS = 15
#: The busy check's reference: channels and spatial size.
BUSY_REFERENCE = (64, 56)
#: The label of the reference's session.
LABEL = "reference convolution"


def cache_path() -> Path:
    root = os.environ.get("FUSER_CACHE") or Path.home() / ".cache" / "fuser"
    return Path(root) / "machine.json"


def reference_model(channels: int = 32, size: int = 32) -> onnx.ModelProto:
    """A seeded 3x3 convolution, ``channels`` -> ``channels`` on ``size`` x ``size`` (the
    latency table's: 32 on 32 x 32, 9.4 M MACs; the busy check's: 64 on 56 x 56, 116 M MACs,
    a few milliseconds, long enough that thread wake-ups do not decide its time)."""
    w = np.random.default_rng(0).standard_normal((channels, channels, 3, 3)).astype(np.float32)
    node = onnx.helper.make_node("Conv", ["x", "W"], ["y"], kernel_shape=[3, 3],
                                 pads=[1, 1, 1, 1])
    shape = [1, channels, size, size]
    graph = onnx.helper.make_graph(
        [node], "reference", [onnx.helper.make_tensor_value_info("x", 1, shape)],
        [onnx.helper.make_tensor_value_info("y", 1, None)],
        [onnx.numpy_helper.from_array(w, "W")])
    return onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)],
                                  ir_version=8)


def reference_ms(threads: int) -> float:
    """Median milliseconds of the reference at ORT_ENABLE_ALL on the CPU."""
    sess = runtime.session(reference_model(*BUSY_REFERENCE), level="all", threads=threads,
                           providers=["CPUExecutionProvider"],
                           config=runtime.NO_SPINNING if threads > 1 else None, label=LABEL)
    channels, size = BUSY_REFERENCE
    feeds = {"x": np.random.default_rng(0).standard_normal(
        (1, channels, size, size)).astype(np.float32)}
    sess.run(None, feeds)
    times = []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        sess.run(None, feeds)
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1e3)


def busy(threads: int, measured: float | None = None) -> str | None:
    """A note when the machine looks busy, else None: the reference runs ``SLOWER`` than its
    best here (which it then records when faster), or the 1-minute load average exceeds the
    cores. ``measured``: the reference's milliseconds now (timed when not given)."""
    now = reference_ms(threads) if measured is None else measured
    key = json.dumps([cpu_model(), runtime.onnxruntime_version(), threads, BUSY_REFERENCE])
    path = cache_path()
    try:
        stored = json.loads(path.read_text())
    except (OSError, ValueError):
        stored = {}
    best = stored.get(key)
    if not isinstance(best, (int, float)) or now < best:
        stored[key] = now
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(stored, sort_keys=True))
            os.replace(tmp, path)
        except OSError as exc:  # the check only loses its memory
            logger.debug("machine cache not saved: %s", exc)
    notes = []
    if isinstance(best, (int, float)) and now > SLOWER * best:
        notes.append(f"a reference convolution ran {now / best:.2f}x slower than its best on "
                     f"this machine ({now:.3f} ms against {best:.3f} ms)")
    load, cores = _load()
    if load is not None and load > cores:
        notes.append(f"the load average ({load:.1f}) exceeds the {cores} cores")
    if not notes:
        return None
    return "machine busy: " + "; ".join(notes) + ": the timings may be noisy"


def _load() -> tuple[float | None, int]:
    try:
        return os.getloadavg()[0], os.cpu_count() or 1
    except (OSError, AttributeError):  # not on every platform
        return None, os.cpu_count() or 1

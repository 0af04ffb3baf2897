"""onnxruntime sessions and inputs: the one place that creates inference sessions.

The reference for every numeric comparison runs with ``ORT_DISABLE_ALL``: at higher levels
onnxruntime folds Conv+BatchNormalization itself when the session is created, which would hide
a wrong fold in fuser.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
from collections.abc import Iterator, Mapping

import numpy as np
import onnx

from fuser import ir as graph_io
from fuser.errors import BadModelError
from fuser.ir.materialize import require_bounded
from fuser.ortlog import expected_errors_silenced, set_log_severity  # noqa: F401 (API)
from fuser.runtime import inputs


def onnxruntime_version() -> str:
    """The installed onnxruntime's version (the latency cache is keyed by it)."""
    import onnxruntime

    return onnxruntime.__version__


#: Idle sessions' worker threads spin after a run and steal the CPU from the session being
#: timed: with 2 threads, an A/A comparison of one model against itself gave "speed-ups" from
#: 0.60 to 1.65; without spinning, 0.98 to 1.01.
NO_SPINNING = {"session.intra_op.allow_spinning": "0"}

LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC",
          "extended": "ORT_ENABLE_EXTENDED", "all": "ORT_ENABLE_ALL"}


class RuntimeRefusedError(BadModelError):
    """onnxruntime cannot load a model the user gave (unknown op, unsupported type or opset).

    ``reason`` is onnxruntime's first line.
    """

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def release_free_memory() -> None:
    """Hand memory that Python and protobuf have freed back to the operating system.

    glibc keeps freed heap memory in the process (a dropped ModelProto's hundreds of MB stay
    resident) until ``malloc_trim``; a no-op where that function does not exist.
    """
    try:
        trim = ctypes.CDLL(None).malloc_trim  # the C library the process already uses
    except (OSError, AttributeError, TypeError):  # not glibc, or Windows
        return
    gc.collect()
    trim(0)


#: Models with at least this many bytes of weights reach onnxruntime as a file with external
#: data (written one tensor at a time), which it memory-maps, instead of as serialized bytes,
#: which it parses into a copy of its own: a session from bytes held ~2.6x the weights
#: (anonymous memory), one from a file ~1.1x (file-backed pages, touched on the first run).
MAPPED_WEIGHTS_BYTES = 2**25


def session(model: onnx.ModelProto, *, level: str = "disable", threads: int | None = None,
            providers: list[str] | None = None, provider_options: list[dict] | None = None,
            config: Mapping[str, str] | None = None, label: str | None = None,
            profile: str | None = None):
    """An ``onnxruntime.InferenceSession`` for ``model`` at the given optimization level.

    ``providers`` defaults to the CPU; ``provider_options`` (one dict per provider) is passed
    through; ``config`` entries go to ``SessionOptions.add_session_config_entry``. Which
    providers really loaded: ``session.get_providers()``.

    ``label`` marks a model the user gave (not one fuser made): when onnxruntime cannot load
    it, that is bad input, raised as :class:`RuntimeRefusedError` naming ``label``. Without a
    label onnxruntime's exception propagates (for fuser's own output it is a bug).

    A model in which a node would create more than ``ir.materialize.MAX_MATERIALIZED_BYTES``
    from constants alone is refused (``BadModelError``) before onnxruntime sees it.

    ``profile`` turns onnxruntime's profiling on, writing to files with that prefix
    (``session.end_profiling()`` returns the file's path).
    """
    # a node making gigabytes from constants (a user's model: through its shape arithmetic too)
    require_bounded(model, label or "the model", graph_io.infer_shapes(model) if label else None)
    args = (model, level, threads, providers, provider_options, config, profile)
    if label is None:
        return _session(*args)
    try:
        return _session(*args)
    except Exception as exc:
        if not type(exc).__module__.startswith("onnxruntime"):
            raise
        lines = [line for line in str(exc).strip().splitlines() if line.strip()]
        reason = lines[0] if lines else type(exc).__name__
        reason = reason.split(" : ", 3)[-1]  # drop "[ONNXRuntimeError] : 1 : FAIL : "
        raise RuntimeRefusedError(f"{label}: onnxruntime cannot run it ({reason})",
                                  reason) from exc


def _session(model, level, threads, providers, provider_options, config, profile):
    import onnxruntime as ort

    providers = providers or ["CPUExecutionProvider"]
    options = ort.SessionOptions()
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, LEVELS[level])
    options.log_severity_level = 3
    if profile is not None:
        options.enable_profiling = True
        options.profile_file_prefix = profile
    if threads is not None:
        options.intra_op_num_threads = threads
    for key, value in (config or {}).items():
        options.add_session_config_entry(key, value)
    with unique_node_names(model):
        serialized = model.SerializeToString() if graph_io.weights_nbytes(model) < \
            MAPPED_WEIGHTS_BYTES else None
        if serialized is None:  # weights in a file that onnxruntime maps: no copy of its own
            import tempfile

            with tempfile.TemporaryDirectory(prefix="fuser-ort-") as folder:
                path = f"{folder}/model.onnx"
                graph_io.save(model, path, external_data=True)
                return ort.InferenceSession(path, options, providers=providers,
                                            provider_options=provider_options)
    return ort.InferenceSession(serialized, options, providers=providers,
                                provider_options=provider_options)


@contextlib.contextmanager
def unique_node_names(model: onnx.ModelProto) -> Iterator[dict[str, int]]:
    """Give repeated node names a suffix for the duration of the block, then restore them.

    ONNX allows repeated node names; onnxruntime refuses such a model ("two nodes with same
    node name"). Names do not change what a model computes, so sessions see unique ones.
    Yields ``{repeated name: how many nodes had it}``.
    """
    seen: dict[str, int] = {}
    for node in model.graph.node:
        if node.name:
            seen[node.name] = seen.get(node.name, 0) + 1
    repeated = {name: count for name, count in seen.items() if count > 1}
    if not repeated:
        yield repeated
        return
    taken, renamed = set(seen), []
    counts: dict[str, int] = {}
    for node in model.graph.node:
        if node.name in repeated:
            counts[node.name] = counts.get(node.name, 0) + 1
            if counts[node.name] > 1:
                new, i = node.name, counts[node.name]
                while new in taken:
                    new, i = f"{node.name}__{i}", i + 1
                taken.add(new)
                renamed.append((node, node.name))
                node.name = new
    try:
        yield repeated
    finally:
        for node, name in renamed:
            node.name = name


def run(model: onnx.ModelProto, feeds: Mapping[str, np.ndarray], *,
        level: str = "disable") -> dict[str, np.ndarray]:
    """Outputs of ``model`` on ``feeds`` by name, on the CPU."""
    sess = session(model, level=level)
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, dict(feeds)), strict=True))


def random_feeds(model: onnx.ModelProto, rng: np.random.Generator,
                 shapes: Mapping[str, tuple[int, ...]] | None = None,
                 dynamic: int = 1) -> dict[str, np.ndarray]:
    """Seeded inputs for every graph input (values as ``inputs.random_array``).

    Dynamic dimensions take ``shapes[name]`` when given, else ``dynamic``.
    """
    shapes = dict(shapes or {})
    return {spec.name: inputs.random_array(spec.dtype, shapes.get(spec.name) or tuple(
        d if isinstance(d, int) and d > 0 else dynamic for d in spec.dims), rng)
        for spec in inputs.input_specs(model)}

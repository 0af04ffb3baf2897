"""Which onnxruntime execution provider to time on, and facts about the host CPU.

onnxruntime-gpu lists ``CUDAExecutionProvider`` in ``get_available_providers()`` even on a
machine where the CUDA libraries cannot load; a session asked for CUDA then falls back to the
CPU with an error log line and no exception. So the choice is made from the providers a real
probe session reports (``session.get_providers()``), never from the available list alone, and
a CUDA failure never raises: :attr:`ProviderChoice.reason` says what happened. Without a CUDA
device (the NVIDIA driver sees none, or there is no driver) no probe is made at all.

CUDA graphs: onnxruntime refuses a session with ``enable_cuda_graph`` when any node of the
model falls back to the CPU. The probe therefore runs without graphs; graphs are then tried
in a second probe and, when refused, left off with a note. ``get_providers()[0]`` cannot see
such a partial fallback: :func:`node_placement` counts where the nodes really run, from the
session's own profile (onnxruntime's documented profiling output).

Unverified on a GPU: no GPU was available to this project; the CUDA paths follow
onnxruntime's documented API and are tested with fakes.
"""

from __future__ import annotations

import collections
import ctypes
import json
import logging
import os
import platform
import tempfile
from collections.abc import Callable, Mapping
from typing import Any

import onnx

from fuser.errors import FuserError
from fuser.report.text import placement_text as placement_text  # re-exported
from fuser.report.timing import ProviderChoice
from fuser.runtime import sessions as runtime

log = logging.getLogger(__name__)

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
REQUESTS = ("auto", "cpu", "cuda")

Probe = Callable[[onnx.ModelProto, list[str], list[dict]], Any]


def _read_cpuinfo() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError:
        return ""


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def physical_cores(cpuinfo: str | None = None) -> int:
    """Physical cores: unique (physical id, core id) pairs in /proc/cpuinfo.

    Falls back to ``os.cpu_count()`` when /proc/cpuinfo has no such pairs; never more than
    the CPUs this process may run on (its affinity mask). ``cpuinfo`` overrides the file.
    """
    text = _read_cpuinfo() if cpuinfo is None else cpuinfo
    pairs = set()
    for block in text.split("\n\n"):
        fields = {}
        for line in block.splitlines():
            key, sep, value = line.partition(":")
            if sep:
                fields[key.strip()] = value.strip()
        if "core id" in fields:
            pairs.add((fields.get("physical id", "0"), fields["core id"]))
    usable = _usable_cpus()
    cores = len(pairs) if pairs else (os.cpu_count() or 1)
    return max(1, min(cores, usable))


def cpu_model(cpuinfo: str | None = None) -> str:
    """The CPU's name ("model name" in /proc/cpuinfo, else what ``platform`` knows)."""
    text = _read_cpuinfo() if cpuinfo is None else cpuinfo
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == "model name" and value.strip():
            return value.strip()
    return platform.processor() or platform.machine() or "unknown"


def _cpu(requested: str, reason: str) -> ProviderChoice:
    return ProviderChoice(requested, "cpu", [CPU], [{}], reason)


def _default_probe(model: onnx.ModelProto, providers: list[str], provider_options: list[dict]):
    with runtime.expected_errors_silenced():
        return runtime.session(model, level="disable", threads=1, providers=providers,
                               provider_options=provider_options)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


#: cuInit's CUDA_ERROR_NO_DEVICE.
_NO_DEVICE = 100


def cuda_devices() -> int | None:
    """CUDA devices the NVIDIA driver reports (``cuInit`` + ``cuDeviceGetCount`` of the
    driver API): 0 without a driver library or a device, None when the driver fails
    otherwise (then only a probe session can tell)."""
    names = ["nvcuda.dll"] if platform.system() == "Windows" else ["libcuda.so.1", "libcuda.so"]
    for name in names:
        try:
            driver = ctypes.CDLL(name)
        except OSError:
            continue
        try:
            status = driver.cuInit(0)
            if status:
                return 0 if status == _NO_DEVICE else None
            count = ctypes.c_int(0)
            return count.value if driver.cuDeviceGetCount(ctypes.byref(count)) == 0 else None
        except AttributeError:
            return None
    return 0


def select_provider(model: onnx.ModelProto, requested: str = "auto", *, cuda_graph: bool = False,
                    available: list[str] | None = None,
                    probe: Probe | None = None) -> ProviderChoice:
    """Choose CPU or CUDA for ``model``; CUDA only when a probe session really loaded it.

    ``available`` replaces ``onnxruntime.get_available_providers()`` and ``probe`` replaces
    the probe session (a callable ``(model, providers, provider_options)`` returning an object
    with ``get_providers()``), both for tests. The first probe never asks for CUDA graphs;
    with ``cuda_graph`` a second one does, and graphs stay off (said in ``reason``) when it
    fails. Raises :class:`FuserError` only for an unknown ``requested``; a CUDA that cannot be
    used gives the CPU and says why in ``reason``.
    """
    if requested not in REQUESTS:
        raise FuserError(f"unknown provider {requested!r}: use one of {', '.join(REQUESTS)}")
    if requested == "cpu":
        return _cpu(requested, "CPU requested")
    if available is None:
        import onnxruntime as ort

        available = list(ort.get_available_providers())
    if CUDA not in available:
        return _cpu(requested, "CUDA not in this onnxruntime build: CPU used")
    if cuda_devices() == 0:
        return _cpu(requested, "CUDA requested, no CUDA device: CPU used"
                    if requested == "cuda" else "no CUDA device")
    providers = [CUDA, CPU]
    probe = probe or _default_probe
    failed = ("CUDA requested, library failed to load: CPU used" if requested == "cuda"
              else "CUDA available but did not load: CPU used")
    try:
        loaded = list(probe(model, providers, [{}, {}]).get_providers())
    except Exception as exc:  # noqa: BLE001 - any probe failure means "no CUDA", never a crash
        log.warning("CUDA probe session failed: %s", _first_line(exc))
        return _cpu(requested, f"{failed} ({_first_line(exc)})")
    if not loaded or loaded[0] != CUDA:
        log.info("CUDA probe session runs on %s", loaded)
        return _cpu(requested, failed)
    reason = "CUDA requested and loaded" if requested == "cuda" else "CUDA available and loaded"
    if not cuda_graph:
        return ProviderChoice(requested, "cuda", providers, [{}, {}], reason)
    graphs = [dict(GRAPHS), {}]
    try:
        probe(model, providers, graphs)
    except Exception as exc:  # noqa: BLE001 - e.g. nodes on the CPU: onnxruntime refuses graphs
        log.warning("CUDA graphs refused: %s", _first_line(exc))
        return ProviderChoice(requested, "cuda", providers, [{}, {}],
                              f"{reason}; {graphs_refused(exc)}")
    return ProviderChoice(requested, "cuda", providers, graphs, f"{reason}, CUDA graphs on",
                          cuda_graph=True)


#: The CUDA provider option that captures and replays a CUDA graph.
GRAPHS = {"enable_cuda_graph": "1"}


def graphs_refused(exc: BaseException) -> str:
    """The note for a session onnxruntime refused with CUDA graphs on."""
    return f"CUDA graphs refused by onnxruntime ({_first_line(exc)}): timed without them"


def without_graphs(provider_options: list[dict]) -> list[dict]:
    return [{k: v for k, v in o.items() if k not in GRAPHS} for o in provider_options]


def placement_from_profile(events: list[dict]) -> dict[str, int]:
    """Nodes per execution provider in an onnxruntime profile (Chrome trace events; a node's
    kernel event has ``cat`` "Node" and ``args.provider``)."""
    where = {}
    for event in events:
        args = event.get("args") or {}
        if event.get("cat") == "Node" and args.get("provider"):
            where[str(event.get("name", "")).removesuffix("_kernel_time")] = args["provider"]
    return dict(sorted(collections.Counter(where.values()).items()))


def node_placement(model: onnx.ModelProto, feeds: Mapping[str, object], providers: list[str],
                   provider_options: list[dict], level: str = "disable") -> dict[str, int]:
    """Where the nodes of ``model`` really run: a profiling session (without CUDA graphs)
    runs once on ``feeds``; ``{provider: nodes}`` from its profile."""
    with tempfile.TemporaryDirectory(prefix="fuser-profile-") as folder:
        sess = runtime.session(model, level=level, threads=1, providers=list(providers),
                               provider_options=without_graphs(provider_options),
                               profile=os.path.join(folder, "profile"))
        sess.run(None, dict(feeds))
        with open(sess.end_profiling(), encoding="utf-8") as handle:
            return placement_from_profile(json.load(handle))

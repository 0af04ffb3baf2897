"""Which onnxruntime execution provider to time on, and facts about the host CPU.

onnxruntime-gpu lists ``CUDAExecutionProvider`` in ``get_available_providers()`` even on a
machine where the CUDA libraries cannot load; a session asked for CUDA then falls back to the
CPU with an error log line and no exception. So the choice is made from the providers a real
probe session reports (``session.get_providers()``), never from the available list alone, and
a CUDA failure never raises: :attr:`ProviderChoice.reason` says what happened.
"""

from __future__ import annotations

import logging
import os
import platform
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import onnx

from fuser.errors import FuserError

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


@dataclass
class ProviderChoice:
    """The provider a timing runs on and why.

    ``requested`` is what the user asked for ("auto", "cpu", "cuda"); ``used`` is "cpu" or
    "cuda"; ``providers`` and ``provider_options`` go to ``runtime.session`` unchanged.
    """

    requested: str
    used: str
    providers: list[str]
    provider_options: list[dict] = field(default_factory=list)
    reason: str = ""

    @property
    def device(self) -> str:
        """The OrtValue device name inputs and outputs are bound to ("cpu" or "cuda")."""
        return self.used


def _cpu(requested: str, reason: str) -> ProviderChoice:
    return ProviderChoice(requested, "cpu", [CPU], [{}], reason)


def _default_probe(model: onnx.ModelProto, providers: list[str], provider_options: list[dict]):
    from fuser import runtime

    with runtime.expected_errors_silenced():
        return runtime.session(model, level="disable", threads=1, providers=providers,
                               provider_options=provider_options)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def select_provider(model: onnx.ModelProto, requested: str = "auto", *, cuda_graph: bool = False,
                    available: list[str] | None = None,
                    probe: Probe | None = None) -> ProviderChoice:
    """Choose CPU or CUDA for ``model``; CUDA only when a probe session really loaded it.

    ``available`` replaces ``onnxruntime.get_available_providers()`` and ``probe`` replaces
    the probe session (a callable ``(model, providers, provider_options)`` returning an object
    with ``get_providers()``), both for tests. Raises :class:`FuserError` only for an unknown
    ``requested``; a CUDA that cannot be used gives the CPU and says why in ``reason``.
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
    providers = [CUDA, CPU]
    options: list[dict] = [{"enable_cuda_graph": "1"} if cuda_graph else {}, {}]
    probe = probe or _default_probe
    failed = ("CUDA requested, library failed to load: CPU used" if requested == "cuda"
              else "CUDA available but did not load: CPU used")
    try:
        loaded = list(probe(model, providers, options).get_providers())
    except Exception as exc:  # noqa: BLE001 - any probe failure means "no CUDA", never a crash
        log.warning("CUDA probe session failed: %s", _first_line(exc))
        return _cpu(requested, f"{failed} ({_first_line(exc)})")
    if not loaded or loaded[0] != CUDA:
        log.info("CUDA probe session runs on %s", loaded)
        return _cpu(requested, failed)
    reason = "CUDA requested and loaded" if requested == "cuda" else "CUDA available and loaded"
    if cuda_graph:
        reason += ", CUDA graphs on"
    return ProviderChoice(requested, "cuda", providers, options, reason)

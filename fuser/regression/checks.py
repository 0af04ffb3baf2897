"""The checks of ``onnx-fuser check``: a model against its baseline, one ``Check`` each."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx

from fuser.regression.baseline import Check, Subject, model_stats
from fuser.runtime import inputs as inputs_io
from fuser.runtime import sessions as runtime
from fuser.runtime.validate import compare as compare_output


def compare(subject: Subject, baseline: dict[str, Any], golden: dict[str, np.ndarray],
            latency: float | None = None) -> list[Check]:
    """Every check of the baseline against the subject."""
    spec = baseline["checks"]
    model = subject.model
    stats = model_stats(model)
    checks = [_inputs(model, spec["inputs"]), *_outputs(model, spec["outputs"], golden),
              _ops(stats["ops"], spec["ops"])]
    bn = stats["ops"].get("BatchNormalization", 0)
    checks.append(Check("batchnorm", bn <= spec["batchnorm"]["max"],
                        f"BatchNormalization nodes {spec['batchnorm']['value']} -> {bn}"))
    for key in ("params", "macs"):
        want, got, rtol = spec[key]["value"], stats[key], spec[key]["rtol"]
        ok = want == got if not want or not got else abs(got - want) <= rtol * abs(want)
        checks.append(Check(key, ok, f"{key} {want:,} -> {got:,}" if want and got
                            else f"{key} {want} -> {got}"))
    if "rewrites" in spec:
        got = subject.rewrites or {}
        changed = [f"{name} rewrites {count} -> {got.get(name, 0)}"
                   for name, count in spec["rewrites"]["value"].items()
                   if got.get(name, 0) != count]
        checks.append(Check("rewrites", not changed, "; ".join(changed) or "unchanged"))
    if "export" in spec and subject.export_diff is not None:
        limit = spec["export"]["max_abs_diff"]
        checks.append(Check("export", subject.export_diff <= limit,
                            f"framework vs ONNX max abs diff {subject.export_diff:.2e} "
                            f"({'<=' if subject.export_diff <= limit else '>'} {limit:g})"))
    if "latency" in spec and latency is not None:
        limit = spec["latency"]["max_ratio"]
        checks.append(Check("latency", latency <= limit,
                            f"latency ratio to {spec['latency']['reference']} "
                            f"{spec['latency']['ratio']:.3f} -> {latency:.3f} (max {limit:g})"))
    return checks


def _inputs(model: onnx.ModelProto, want: dict[str, Any]) -> Check:
    got = {s.name: {"shape": [d if isinstance(d, int) else str(d) for d in s.dims],
                    "dtype": s.dtype.name} for s in inputs_io.input_specs(model)}
    changes = [f"input '{n}' removed" for n in want if n not in got]
    changes += [f"input '{n}' added" for n in got if n not in want]
    for name in set(want) & set(got):
        for key in ("shape", "dtype"):
            if want[name][key] != got[name][key]:
                changes.append(f"input '{name}' {key} {want[name][key]} -> {got[name][key]}")
    return Check("inputs", not changes, "; ".join(sorted(changes)) or "unchanged")


def _outputs(model: onnx.ModelProto, spec: dict[str, Any],
             golden: dict[str, np.ndarray]) -> list[Check]:
    names = [o.name for o in model.graph.output]
    want = list(spec["shapes"])
    if sorted(names) != sorted(want):
        missing = [n for n in want if n not in names]
        extra = [n for n in names if n not in want]
        return [Check("outputs", False, f"outputs {missing} -> {extra} (renamed or changed)")]
    batches = sorted({int(k.split("/")[-1]) for k in golden if k.startswith("input/")})
    got: dict[str, list[np.ndarray]] = {name: [] for name in want}
    try:
        for i in batches:
            feeds = {k.split("/")[1]: v for k, v in golden.items()
                     if k.startswith("input/") and k.endswith(f"/{i}")}
            for name, value in runtime.run(model, feeds).items():
                got[name].append(value)
    except Exception as exc:  # onnxruntime refuses the stored inputs: the interface changed
        return [Check("outputs", False, f"cannot run on the stored inputs: "
                      f"{str(exc).splitlines()[0]}")]
    checks = []
    for name in sorted(got):
        result = compare_output(name, [golden[f"output/{name}/{i}"] for i in batches],
                                got[name], spec["atol"], spec["rtol"])
        message = result.message if not result.passed else (
            f"output '{name}' max abs diff {result.max_abs:.2g} within atol {spec['atol']:g} "
            f"+ rtol {spec['rtol']:g} x max|golden|")
        checks.append(Check(f"output {name}", result.passed, message))
    return checks


def _ops(got: dict[str, int], spec: dict[str, Any]) -> Check:
    want = spec["histogram"]
    ops = sorted(set(want) | set(got))
    changes = [f"{op} {want.get(op, 0)} -> {got.get(op, 0)}" for op in ops
               if want.get(op, 0) != got.get(op, 0)]
    changed = sum(abs(want.get(op, 0) - got.get(op, 0)) for op in ops)
    return Check("ops", changed <= spec.get("max_changed", 0),
                 "; ".join(changes) or "unchanged")



"""``onnx-fuser check``: a regression check of an exported model against a stored baseline.

The baseline is a JSON file (stable, sorted, human-readable: its diff is what a reviewer
reads) plus a ``.npz`` beside it with the stored inputs and golden outputs. Each check has
its tolerance in the JSON, for a team to edit:

- ``inputs``: names, shapes and dtypes of the model's inputs;
- ``outputs``: names and shapes, and values on the stored inputs within ``atol + rtol *
  max|golden|``;
- ``ops``: the op histogram (``max_changed`` nodes may differ in all, default 0);
- ``batchnorm``: BatchNormalization nodes left (at most ``max``);
- ``params``, ``macs``: within ``rtol``;
- ``rewrites``: per-pass rewrite counts (``--optimize`` only);
- ``latency``: the model's median latency as a ratio to a reference model measured in the
  same run (never absolute times), at most ``max_ratio``;
- ``export``: framework-vs-ONNX max abs difference (``--torch`` / ``--keras``).

With ``--optimize`` the checked model is fuser's exact pipeline applied to MODEL.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from fuser import ir as graph_io
from fuser.errors import FuserError
from fuser.runtime import inputs as inputs_io
from fuser.runtime import sessions as runtime

SCHEMA = 1


@dataclasses.dataclass
class Check:
    """One check: its name, verdict and what changed."""

    name: str
    passed: bool
    message: str


@dataclasses.dataclass
class CheckResult:
    """All checks of one model."""

    model: str
    checks: list[Check]
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "passed": self.passed, "seconds": self.seconds,
                "checks": [dataclasses.asdict(c) for c in self.checks]}

    def to_text(self) -> str:
        lines = [f"{self.model}: {'PASSED' if self.passed else 'FAILED'}"]
        lines += [f"  {'ok  ' if c.passed else 'FAIL'} {c.name}: {c.message}"
                  for c in self.checks]
        return "\n".join(lines)


@dataclasses.dataclass
class Subject:
    """The model under check and what produced it."""

    model: onnx.ModelProto
    rewrites: dict[str, int] | None = None  # with --optimize
    export_diff: float | None = None  # framework vs ONNX
    export_scale: float | None = None


# ---------------------------------------------------------------------------- baseline


def make_baseline(subject: Subject, *, seed: int = 0, batches: int = 2,
                  input_shapes: dict | None = None, reference: str | None = None,
                  latency: float | None = None) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The baseline JSON and the golden arrays for ``subject``."""
    model = subject.model
    shapes = inputs_io.resolve_shapes(model, input_shapes)
    feeds = inputs_io.random_batches(model, shapes, batches, seed)
    golden: dict[str, np.ndarray] = {}
    outputs: dict[str, list[int]] = {}
    for i, batch in enumerate(feeds):
        for name, value in batch.items():
            golden[f"input/{name}/{i}"] = value
        for name, value in runtime.run(model, batch).items():
            golden[f"output/{name}/{i}"] = value
            outputs[name] = list(value.shape)
    stats = _stats(model)
    checks: dict[str, Any] = {
        "inputs": {s.name: {"shape": [d if isinstance(d, int) else str(d) for d in s.dims],
                            "dtype": s.dtype.name} for s in inputs_io.input_specs(model)},
        "outputs": {"shapes": outputs, "atol": 1e-5, "rtol": 1e-4},
        "ops": {"histogram": stats["ops"], "max_changed": 0},
        "batchnorm": {"value": stats["ops"].get("BatchNormalization", 0),
                      "max": stats["ops"].get("BatchNormalization", 0)},
        "params": {"value": stats["params"], "rtol": 0.0},
        "macs": {"value": stats["macs"], "rtol": 0.0},
    }
    if subject.rewrites is not None:
        checks["rewrites"] = {"value": dict(sorted(subject.rewrites.items()))}
    if subject.export_diff is not None:
        checks["export"] = {"max_abs_diff": 1e-4 * max(subject.export_scale or 1.0, 1.0)}
    if reference is not None and latency is not None:
        checks["latency"] = {"reference": reference, "ratio": round(latency, 3),
                             "max_ratio": round(latency * 1.25, 3)}
    baseline = {"schema": SCHEMA, "batches": batches, "seed": seed, "checks": checks}
    return baseline, golden


def write_baseline(path: Path, baseline: dict[str, Any], golden: dict[str, np.ndarray]) -> None:
    """Write the JSON (sorted, stable) and the golden ``.npz`` beside it, atomically."""
    from fuser.ir.io import write_text_atomic

    write_text_atomic(path, json.dumps(baseline, indent=2, sort_keys=True) + "\n")
    arrays = path.with_suffix(".npz")
    tmp = arrays.with_name(f".{arrays.name}.tmp.npz")
    np.savez(tmp, **golden)
    tmp.replace(arrays)


def read_baseline(path: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    if not path.exists():
        raise FuserError(f"{path}: no baseline (write one with --update)")
    try:
        baseline = json.loads(path.read_text())
        with np.load(path.with_suffix(".npz")) as data:
            golden = {k: data[k] for k in data.files}
    except (OSError, ValueError) as exc:
        raise FuserError(f"{path}: unreadable baseline ({exc})") from exc
    if baseline.get("schema") != SCHEMA:
        raise FuserError(f"{path}: baseline schema {baseline.get('schema')}, expected {SCHEMA}")
    return baseline, golden


# ---------------------------------------------------------------------------- checks


def compare(subject: Subject, baseline: dict[str, Any], golden: dict[str, np.ndarray],
            latency: float | None = None) -> list[Check]:
    """Every check of the baseline against the subject."""
    spec = baseline["checks"]
    model = subject.model
    stats = _stats(model)
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
    from fuser.runtime.validate import compare as compare_output

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


def _stats(model: onnx.ModelProto) -> dict[str, Any]:
    shapes = graph_io.infer_shapes(model)
    return {"ops": graph_io.op_histogram(model), "params": graph_io.param_count(model),
            "macs": graph_io.mac_count(model, shapes) or 0}


# ---------------------------------------------------------------------------- running


def subject_for(path: str | None = None, *, optimize: bool = False, torch: str | None = None,
                keras: str | None = None, input_shapes: dict | None = None) -> Subject:
    """The model to check: an ONNX file, or a framework model exported first; with
    ``optimize``, fuser's exact pipeline applied to it."""
    diff = scale = None
    if torch or keras:
        from fuser.frontends import load_spec

        framework, spec = ("torch", torch) if torch else ("keras", keras)
        module, example = load_spec(framework, spec)
        if framework == "torch":
            from fuser.frontends.torch import export

            if example is None:
                if not input_shapes or len(input_shapes) != 1:
                    raise FuserError("--torch needs the example input's shape: "
                                     "--input-shape input:1x3x224x224")
                example = next(iter(input_shapes.values()))
            exported = export(module, example)
        else:
            from fuser.frontends.keras import export

            given = next(iter(input_shapes.values()))[1:] if input_shapes and \
                len(input_shapes) == 1 else None
            exported = export(module, input_shape=given)
        model, diff, scale = exported.model, exported.max_abs_diff, exported.output_scale
    elif path is not None:
        model = graph_io.load(path)
    else:
        raise FuserError("nothing to check: give MODEL, --torch or --keras")
    rewrites = None
    if optimize:
        from fuser import api

        model, report = api.optimize(model, validate=False)
        rewrites = {name: report.rewrites(name) for name in report.pipeline}
    return Subject(model, rewrites, diff, scale)


def latency_ratio(model: onnx.ModelProto, reference: str, *, seed: int = 0) -> float:
    """Median latency of ``model`` over ``reference`` (ORT_ENABLE_ALL, interleaved)."""
    from fuser.runtime import bench

    ref = graph_io.load(reference)
    shapes = inputs_io.resolve_shapes(model)
    feeds = {next(iter(shapes.values()))[0]: inputs_io.random_batches(model, shapes, 1, seed)[0]}
    result = bench.benchmark({"reference": ref, "model": model}, feeds, levels=("all",),
                             provider="cpu", warmup=3, rounds=100, time_budget=2.0,
                             progress=False)
    medians = {t.model: t.stats.median_ms for t in result.timings}
    return medians["model"] / medians["reference"]


def run(subject: Subject, baseline_path: Path, *, name: str, update: bool = False,
        reference: str | None = None, input_shapes: dict | None = None) -> CheckResult:
    """Check ``subject`` against its baseline, or (``update``) rewrite the baseline."""
    import time

    started = time.perf_counter()
    latency = latency_ratio(subject.model, reference) if reference else None
    if update:
        previous = json.loads(baseline_path.read_text()) if baseline_path.exists() else None
        baseline, golden = make_baseline(subject, input_shapes=input_shapes,
                                         reference=reference, latency=latency)
        if previous is not None:
            _keep_tolerances(baseline, previous)
        baseline_path.parent.mkdir(parents=True, exist_ok=True)  # baselines/ on a first run
        write_baseline(baseline_path, baseline, golden)
        checks = [Check("baseline", True, f"written to {baseline_path}")]
    else:
        baseline, golden = read_baseline(baseline_path)
        if reference is None and "latency" in baseline["checks"]:
            reference = baseline["checks"]["latency"]["reference"]
            latency = latency_ratio(subject.model, reference)
        checks = compare(subject, baseline, golden, latency)
    return CheckResult(name, checks, time.perf_counter() - started)


def _keep_tolerances(baseline: dict[str, Any], previous: dict[str, Any]) -> None:
    """An update keeps the tolerances a team edited; only the measured values change."""
    for check, fields in previous.get("checks", {}).items():
        new = baseline["checks"].get(check)
        if not isinstance(new, dict):
            continue
        for key in ("atol", "rtol", "max", "max_changed", "max_abs_diff"):
            if key in fields and key in new:
                new[key] = fields[key]


def junit(results: list[CheckResult]) -> str:
    """One JUnit XML document: a testsuite, one testcase per check, failures with messages."""
    import xml.etree.ElementTree as ET

    checks = [(r, c) for r in results for c in r.checks]
    suites = ET.Element("testsuites")
    suite = ET.SubElement(suites, "testsuite", name="onnx-fuser check", tests=str(len(checks)),
                          failures=str(sum(not c.passed for _, c in checks)), errors="0",
                          time=f"{sum(r.seconds for r in results):.3f}")
    for result, check in checks:
        case = ET.SubElement(suite, "testcase", classname=result.model, name=check.name,
                             time="0")
        if not check.passed:
            failure = ET.SubElement(case, "failure", message=check.message,
                                    type="regression")
            failure.text = check.message
    ET.indent(suites)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"

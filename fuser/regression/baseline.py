"""Baselines of ``onnx-fuser check``: the records of a check, the baseline JSON and its golden
arrays (written, read, updated with the tolerances a team edited), and the JUnit form."""

from __future__ import annotations

import dataclasses
import json
import math
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from fuser import ir as graph_io
from fuser.errors import FuserError
from fuser.ir.io import write_text_atomic
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
    stats = model_stats(model)
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
    require_well_formed(path, baseline, golden)
    return baseline, golden


NUMBER, TABLE, TEXT = "a finite number of at least 0", "an object", "a string"
#: The fields each check reads, and what they must hold; the optional checks when present.
FIELDS: dict[str, dict[str, str]] = {
    "inputs": {}, "outputs": {"shapes": TABLE, "atol": NUMBER, "rtol": NUMBER},
    "ops": {"histogram": TABLE}, "batchnorm": {"value": NUMBER, "max": NUMBER},
    "params": {"value": NUMBER, "rtol": NUMBER}, "macs": {"value": NUMBER, "rtol": NUMBER}}
OPTIONAL: dict[str, dict[str, str]] = {
    "rewrites": {"value": TABLE}, "export": {"max_abs_diff": NUMBER},
    "latency": {"reference": TEXT, "ratio": NUMBER, "max_ratio": NUMBER}}


def require_well_formed(path: Path, baseline: dict[str, Any],
                        golden: dict[str, np.ndarray]) -> None:
    """Refuse, naming the field, a baseline a check would trip over (a missing key, a
    tolerance that is NaN, negative or not a number: NaN compares false and would pass any
    regression) or golden arrays that lack a batch's inputs or outputs."""
    checks = baseline.get("checks")
    batches = baseline.get("batches")
    if not isinstance(checks, dict):
        raise FuserError(f"{path}: 'checks' is missing or not {TABLE}")
    if not isinstance(batches, int) or isinstance(batches, bool) or batches < 1:
        raise FuserError(f"{path}: 'batches' is {batches!r}: expected an integer of at least 1")
    wanted = {**FIELDS, **{k: v for k, v in OPTIONAL.items() if k in checks}}
    for check, fields in wanted.items():
        entry = checks.get(check)
        if not isinstance(entry, dict):
            raise FuserError(f"{path}: checks.{check} is missing or not {TABLE}")
        for key, kind in fields.items():
            value = entry.get(key)
            if not _is(kind, value):
                raise FuserError(f"{path}: checks.{check}.{key} is {value!r}: expected {kind}")
        if "max_changed" in entry and not _is(NUMBER, entry["max_changed"]):
            raise FuserError(f"{path}: checks.{check}.max_changed is {entry['max_changed']!r}: "
                             f"expected {NUMBER}")
    arrays = path.with_suffix(".npz")
    for i in range(batches):
        needed = [f"output/{name}/{i}" for name in checks["outputs"]["shapes"]]
        missing = [key for key in needed if key not in golden]
        if missing or not any(k.startswith("input/") and k.endswith(f"/{i}") for k in golden):
            raise FuserError(f"{arrays}: the golden arrays of batch {i} are missing "
                             f"({', '.join(missing) or 'inputs'}); write the baseline again "
                             "with --update")


def _is(kind: str, value: Any) -> bool:
    if kind == TABLE:
        return isinstance(value, dict)
    if kind == TEXT:
        return isinstance(value, str)
    return isinstance(value, (int, float)) and not isinstance(value, bool) and \
        math.isfinite(value) and value >= 0


def model_stats(model: onnx.ModelProto) -> dict[str, Any]:
    shapes = graph_io.infer_shapes(model)
    return {"ops": graph_io.op_histogram(model), "params": graph_io.param_count(model),
            "macs": graph_io.mac_count(model, shapes) or 0}



def keep_tolerances(baseline: dict[str, Any], previous: dict[str, Any]) -> None:
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

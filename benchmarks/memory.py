"""Peak memory of loading and optimizing a ResNet-152-sized model, as a multiple of its size.

    python -m benchmarks.memory [--arch resnet152] [--phases load optimize validate]

Each phase runs in a fresh Python process (``--child``), which imports fuser and onnxruntime,
records its resident set size (RSS), then runs the phase and reads the peak RSS
(``VmHWM`` in ``/proc/self/status``; Linux only) and the peak of Python-level allocations
(``tracemalloc``, which sees numpy arrays but not protobuf's C++ memory). The figure that
matters is the peak RSS *above* the process after imports, divided by the model file's size:

- ``load``: ``fuser.load`` (``onnx.load``) alone;
- ``optimize``: ``fuser.optimize(path, validate=False)`` (load, shape inference, import,
  passes, export, checker);
- ``validate``: ``fuser.optimize(path)`` with its default validation (two onnxruntime
  sessions on top).

The model is ``fuser.zoo.synthetic.resnet`` (BatchNormalization kept, random weights).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

PHASES = ("load", "optimize", "validate")


def _status_mb(field: str) -> float:
    """``VmRSS`` (resident now) or ``VmHWM`` (peak) of this process, in MB. Not ``ru_maxrss``:
    Linux keeps that across ``execve``, so a child would inherit its parent's peak."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def child(phase: str, path: str) -> dict:
    """Run one phase in this process; return its memory figures (MB)."""
    import onnxruntime  # noqa: F401  (imported before the baseline, like fuser's own imports)

    import fuser

    base = _status_mb("VmRSS")
    tracemalloc.start()
    start = time.perf_counter()
    if phase == "load":
        model = fuser.load(path)
        nodes = len(model.graph.node)
    else:
        model, report = fuser.optimize(path, validate=phase == "validate")
        nodes = len(model.graph.node)
        assert report.passed
    seconds = time.perf_counter() - start
    _, traced_peak = tracemalloc.get_traced_memory()
    peak = _status_mb("VmHWM")
    return {"phase": phase, "base_mb": base, "peak_mb": peak, "increase_mb": peak - base,
            "traced_peak_mb": traced_peak / 2**20, "seconds": seconds, "nodes": nodes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="resnet152")
    parser.add_argument("--phases", nargs="+", default=list(PHASES), choices=PHASES)
    parser.add_argument("--child", nargs=2, metavar=("PHASE", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child)))
        return

    import onnx

    import fuser
    from fuser import ir as graph_io
    from fuser.zoo.synthetic import resnet

    print(f"fuser {fuser.__version__}, onnx {onnx.__version__}, Python "
          f"{platform.python_version()}, {platform.machine()}; {time.strftime('%Y-%m-%d')}")
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder, f"{args.arch}.onnx")
        graph_io.save(resnet(args.arch), source)
        size = source.stat().st_size / 2**20
        print(f"{args.arch}: {size:.1f} MB file")
        print("| phase | RSS after imports MB | peak RSS MB | increase MB | increase / model "
              "| tracemalloc peak MB | seconds |")
        print("|---|---|---|---|---|---|---|")
        for phase in args.phases:
            done = subprocess.run([sys.executable, "-m", "benchmarks.memory", "--child", phase,
                                   str(source)], capture_output=True, text=True, check=True)
            row = json.loads(done.stdout.strip().splitlines()[-1])
            print(f"| {phase} | {row['base_mb']:.0f} | {row['peak_mb']:.0f} | "
                  f"{row['increase_mb']:.0f} | {row['increase_mb'] / size:.2f}x | "
                  f"{row['traced_peak_mb']:.0f} | {row['seconds']:.2f} |")


if __name__ == "__main__":
    main()

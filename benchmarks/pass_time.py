"""Time the default exact pipeline on ResNet-sized models with BatchNormalization kept.

    python -m benchmarks.pass_time [--runs 5] [--arch resnet50 resnet152]

Prints, per model, the median over runs of each phase of ``fuser.optimize`` (load, import +
shape inference, passes, export, check) and of saving, in seconds. The models are
``fuser.models.synthetic.resnet`` graphs (the structure of a torch export with
TrainingMode.PRESERVE, random weights).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

import fuser
from fuser import graph as graph_io
from fuser.models.synthetic import resnet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--arch", nargs="+", default=["resnet50", "resnet152"])
    args = parser.parse_args()
    print(f"fuser {fuser.__version__}, {platform.processor() or platform.machine()}, "
          f"median of {args.runs} runs, seconds")
    print("| model | nodes before -> after | BN folded | load | import | passes | export "
          "| check | save |")
    print("|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        for arch in args.arch:
            source = Path(folder, f"{arch}.onnx")
            graph_io.save(resnet(arch), source)
            phases: dict[str, list[float]] = {}
            for _ in range(args.runs):
                model, report = fuser.optimize(source)
                start = time.perf_counter()
                graph_io.save(model, Path(folder, f"{arch}.opt.onnx"))
                report.seconds["save"] = time.perf_counter() - start
                for key, value in report.seconds.items():
                    phases.setdefault(key, []).append(value)
            med = {k: statistics.median(v) for k, v in phases.items()}
            print(f"| {arch} | {report.before.nodes} -> {report.after.nodes} | "
                  f"{report.rewrites('fold-batchnorm')} | " + " | ".join(
                      f"{med[k]:.3f}" for k in ("load", "import", "passes", "export", "check",
                                                "save")) + " |")


if __name__ == "__main__":
    main()

"""Time the default exact pipeline on ResNet-sized models with BatchNormalization kept.

    python -m benchmarks.pass_time [--runs 5] [--arch resnet50 resnet152]

Prints, per model, the median over runs of each phase of ``fuser.optimize(path,
validate=False)`` (load; analyze = the checker and shape inference on the input + statistics;
passes, gs import included; export, which computes the folded weights; check of the
result), of the whole call less the load (``in memory``: what ``benchmarks.run`` times
against the peers, on an already-loaded model) and of saving, in seconds. The models
are ``fuser.zoo.synthetic.resnet`` graphs (the structure of a torch export with
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
from fuser import ir as graph_io
from fuser.zoo.synthetic import resnet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--arch", nargs="+", default=["resnet50", "resnet152"])
    args = parser.parse_args()
    print(f"fuser {fuser.__version__}, {platform.processor() or platform.machine()}, "
          f"median of {args.runs} runs, seconds")
    print("| model | nodes before -> after | BN folded | load | analyze | passes | export "
          "| check | in memory | save |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    keys = ("load", "analyze", "passes", "export", "check", "in memory", "save")
    with tempfile.TemporaryDirectory() as folder:
        for arch in args.arch:
            source = Path(folder, f"{arch}.onnx")
            graph_io.save(resnet(arch), source)
            phases: dict[str, list[float]] = {}
            for _ in range(args.runs):
                start = time.perf_counter()
                model, report = fuser.optimize(source, validate=False)
                seconds = dict(report.seconds)  # the report is frozen: its times, and more
                seconds["in memory"] = time.perf_counter() - start - seconds["load"]
                start = time.perf_counter()
                graph_io.save(model, Path(folder, f"{arch}.opt.onnx"))
                seconds["save"] = time.perf_counter() - start
                for key, value in seconds.items():
                    phases.setdefault(key, []).append(value)
                del model
            med = {k: statistics.median(v) for k, v in phases.items()}
            print(f"| {arch} | {report.before.nodes} -> {report.after.nodes} | "
                  f"{report.rewrites('fold-batchnorm')} | " + " | ".join(
                      f"{med[k]:.3f}" for k in keys) + " |")


if __name__ == "__main__":
    main()

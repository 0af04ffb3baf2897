"""``onnx-fuser demo``: the zoo in PyTorch and Keras: export, fold, validate, time, and a
table (the job itself is ``fuser.cli.demo_job``)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from fuser.cli import demo_job, options
from fuser.errors import FuserError

RUNS_MODELS = True


def add_arguments(demo: argparse.ArgumentParser) -> None:
    """The arguments of ``onnx-fuser demo``."""
    demo.add_argument("-o", "--output-dir", default="fuser-demo",
                      help="folder for the models and the report (default: fuser-demo)")
    size = demo.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="three tiny models (CI)")
    size.add_argument("--full", action="store_true", help="full-size ImageNet models (slow)")
    demo.add_argument("--frameworks", default="torch,keras", help="default: torch,keras")
    demo.add_argument("--time-budget", type=float, default=1.0,
                      help="seconds of timing per model and level (default 1)")
    options.add_output(demo, what="the table's rows", report=False)
    demo.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    setting = "quick" if args.quick else "full" if args.full else "default"
    started = time.perf_counter()
    folder = Path(args.output_dir)
    say = options.progress(args)
    say(f"onnx-fuser demo ({setting}): export, fold, validate and time the zoo; "
        f"writing to {folder}/")
    rows = demo_job.run(folder, setting, tuple(options.split([args.frameworks])),
                        args.time_budget, say)
    if not rows:
        raise FuserError("no model could be built: install 'onnx-fuser[torch]' or '[keras]'")
    out = options.human(args)
    print(demo_job.table(rows), file=out)
    print(f"wrote {folder / 'demo.md'} and {folder / 'demo.json'}", file=out)
    if args.json:
        options.print_json({"rows": rows})
    failed = [f"{r['model']} ({r['framework']})" for r in rows if not r["passed"]]
    if failed:
        print(f"FAILED | {time.perf_counter() - started:.0f}s | validation failed: "
              f"{', '.join(failed)}", file=out)
        return 1
    layers = sum(int(r["BN"].split(" -> ")[0]) for r in rows)
    left = sum(int(r["BN"].split(" -> ")[1]) for r in rows)
    if left:
        print("BatchNorms left, with the reasons the passes gave:", file=out)
        print("\n".join(demo_job.explain_left(rows)), file=out)
    speeds = [r["speed"]["speedup"] for r in rows]
    slower = [f"{r['model']} ({r['framework']})" for r in rows if r["speed"]["slower"]]
    print(f"PASSED | {time.perf_counter() - started:.0f}s | {len(rows)} models, "
          f"{min(speeds):.2f}x-{max(speeds):.2f}x against their originals at ORT_ENABLE_ALL, "
          f"{'none slower' if not slower else 'slower: ' + ', '.join(slower)}, "
          f"{layers - left} of {layers} BatchNorms folded"
          + (f" ({left} left: the passes' reasons above)" if left else ""), file=out)
    return 0

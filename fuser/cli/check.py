"""``onnx-fuser check`` (the CLI side of ``fuser.regression``): jobs from the arguments, a
process pool for folder mode, text / JSON / JUnit out, exit code."""

from __future__ import annotations

import argparse
import contextlib
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from fuser import regression as checking
from fuser.cli import options
from fuser.errors import FuserError
from fuser.ir.io import write_text_atomic

RUNS_MODELS = True


def add_arguments(chk: argparse.ArgumentParser) -> None:
    """The arguments of ``onnx-fuser check``."""
    chk.add_argument("model", nargs="?", help="an .onnx file, or a folder of them")
    chk.add_argument("--baseline", help="baseline JSON (golden outputs in the .npz beside it)")
    chk.add_argument("--baseline-dir", help="folder mode: one BASELINE_DIR/<model>.json each")
    chk.add_argument("--update", action="store_true", help="(re)write the baseline(s)")
    chk.add_argument("--optimize", action="store_true",
                     help="check fuser's exact pipeline applied to the model")
    chk.add_argument("--torch", metavar="SPEC", help="export module:factory first")
    chk.add_argument("--keras", metavar="SPEC", help="export a .keras/.h5 or module:factory")
    chk.add_argument("--reference", help="a model to time against (latency ratio check)")
    options.add_input_shape(chk)
    chk.add_argument("--junit", metavar="FILE", help="write a JUnit XML report")
    chk.add_argument("-j", "--jobs", type=int, default=1, help="models checked in parallel")
    options.add_output(chk, what="the results", report=False)
    chk.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    jobs = _check_jobs(args)
    say, results = options.progress(args), []
    with contextlib.ExitStack() as stack:
        pool = stack.enter_context(ProcessPoolExecutor(args.jobs)) \
            if args.jobs > 1 and len(jobs) > 1 else None
        for result in pool.map(_check_one, jobs) if pool else map(_check_one, jobs):
            results.append(result)
            say(f"check: {result.model} {'passed' if result.passed else 'REGRESSED'} "
                f"({len(results)} of {len(jobs)}, {time.perf_counter() - started:.1f}s)")
    out = options.human(args)
    for result in results:
        print(result.to_text(), file=out)
    if args.json:
        options.print_json([r.to_dict() for r in results])
    if args.junit:
        write_text_atomic(Path(args.junit), checking.junit(results))
    failed = [c for r in results for c in r.checks if not c.passed]
    elapsed = time.perf_counter() - started
    if failed:
        print(f"FAILED | {elapsed:.2f}s | {len(failed)} check(s) regressed: "
              f"{'; '.join(c.message for c in failed[:3])}", file=out)
        return 1
    verb = "baseline(s) written" if args.update else "all checks passed"
    print(f"PASSED | {elapsed:.2f}s | {len(results)} model(s), {verb}", file=out)
    return 0


def _check_jobs(args: argparse.Namespace) -> list[dict]:
    """One job per model: single mode (MODEL or --torch/--keras, --baseline) or folder mode."""
    common = {"update": args.update, "optimize": args.optimize, "reference": args.reference,
              "input_shapes": options.input_shapes(args)}
    if args.model and Path(args.model).is_dir():
        if not args.baseline_dir:
            raise FuserError(f"{args.model} is a folder: give --baseline-dir")
        models = sorted(Path(args.model).glob("*.onnx"))
        if not models:
            raise FuserError(f"{args.model}: no .onnx files")
        folder = Path(args.baseline_dir)
        if not folder.is_dir():
            if not args.update:
                raise FuserError(f"{folder}: no such folder (write baselines with --update)")
            folder.mkdir(parents=True)
        return [{**common, "path": str(m), "baseline": str(folder / f"{m.stem}.json"),
                 "name": m.name} for m in models]
    if not args.baseline:
        raise FuserError("give --baseline FILE (or a folder and --baseline-dir)")
    if not (args.model or args.torch or args.keras):
        raise FuserError("give MODEL, --torch SPEC or --keras SPEC")
    name = args.model or args.torch or args.keras
    return [{**common, "path": args.model, "torch": args.torch, "keras": args.keras,
             "baseline": args.baseline, "name": Path(name).name if args.model else name}]


def _check_one(job: dict) -> checking.CheckResult:
    subject = checking.subject_for(job["path"], optimize=job["optimize"],
                                   torch=job.get("torch"), keras=job.get("keras"),
                                   input_shapes=job["input_shapes"])
    return checking.run(subject, Path(job["baseline"]), name=job["name"],
                        update=job["update"], reference=job["reference"],
                        input_shapes=job["input_shapes"])

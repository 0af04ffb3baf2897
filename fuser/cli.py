"""The ``onnx-fuser`` command: parse arguments, call the API, render the result.

Exit codes: 0 success, 1 failure (a pass broke the model, validation failed), 2 bad input or
usage. A user error prints one line without a traceback (``-v`` shows it); a bug keeps its
traceback. Human text goes to stdout, logs to stderr; the last line is PASSED or FAILED.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from fuser.errors import FuserError, PassError

logger = logging.getLogger("fuser")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 on --help
        return int(exc.code or 0)
    _configure_logging(args.verbose - args.quiet)
    try:
        return int(args.handler(args))
    except FuserError as exc:
        if args.verbose:
            logger.exception("error")
        print(f"onnx-fuser: error: {exc}", file=sys.stderr)
        return 2
    except PassError as exc:
        if args.verbose:
            logger.exception("pass failure")
        print(f"onnx-fuser: {exc}", file=sys.stderr)
        print("FAILED | a pass broke the model")
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="onnx-fuser", description="Make trained CNNs faster by rewriting their ONNX graphs.")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    parser.add_argument("-q", "--quiet", action="count", default=0, help="less logging")
    sub = parser.add_subparsers(dest="command", required=True)

    opt = sub.add_parser("optimize", help="run the exact pipeline (or chosen passes) on a model")
    opt.add_argument("model", help="input .onnx file (never modified)")
    opt.add_argument("-o", "--output", required=True, help="where to write the optimized model")
    opt.add_argument("--passes", help="comma-separated pass names, in order (default: the "
                                      "exact pipeline; see 'onnx-fuser passes')")
    opt.add_argument("--skip", action="append", default=[],
                     help="leave this pass out (repeatable, or comma-separated)")
    opt.add_argument("--no-clone-shared", action="store_true",
                     help="skip folds into weights shared with other nodes instead of cloning")
    opt.add_argument("--max-steps", type=int, default=4, help="sweeps of the pipeline at most")
    opt.add_argument("--check-each", action="store_true",
                     help="run the ONNX checker after every pass")
    opt.add_argument("--dump-dir", help="write the model after every pass that changed it")
    opt.add_argument("--report", help="write the report as JSON to this file")
    opt.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    opt.add_argument("--external-data", action="store_true",
                     help="write weights to OUTPUT.data (automatic past 2 GB)")
    opt.set_defaults(handler=_optimize)

    lst = sub.add_parser("passes", help="list the passes")
    lst.add_argument("--json", action="store_true", help="print the list as JSON")
    lst.set_defaults(handler=_passes)

    demo = sub.add_parser("demo", help="build a ResNet-style model with BatchNorm and optimize it")
    demo.add_argument("-o", "--output-dir", default="fuser-demo",
                      help="folder for the models and the report (default: fuser-demo)")
    demo.set_defaults(handler=_demo)
    return parser


def _configure_logging(level: int) -> None:
    logging.basicConfig(
        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr,
        level={-1: logging.ERROR, 0: logging.WARNING, 1: logging.INFO}.get(
            max(-1, min(level, 2)), logging.DEBUG))


def _split(values: Sequence[str]) -> list[str]:
    return [v.strip() for value in values for v in value.split(",") if v.strip()]


def _optimize(args: argparse.Namespace) -> int:
    from fuser import api, graph

    source, target = Path(args.model), Path(args.output)
    if target.exists() and source.exists() and target.resolve() == source.resolve():
        raise FuserError(f"{target}: output path is the input path; the input is never "
                         "overwritten")
    if not target.parent.is_dir():
        raise FuserError(f"{target}: folder {target.parent} does not exist")
    started = time.perf_counter()
    options = {"fold-batchnorm": {"clone_shared": False}} if args.no_clone_shared else None
    passes = _split([args.passes]) if args.passes else None
    model, report = api.optimize(source, passes, skip=_split(args.skip), options=options,
                                 max_steps=args.max_steps, check_each=args.check_each,
                                 dump_dir=args.dump_dir)
    save_start = time.perf_counter()
    graph.save(model, target, external_data=True if args.external_data else None)
    report.seconds["save"] = time.perf_counter() - save_start
    if args.report:
        write_text_atomic(Path(args.report), report.to_json() + "\n")
    out = sys.stderr if args.json else sys.stdout
    if args.json:
        print(report.to_json())
    print(report.to_text(), file=out)
    print(f"wrote {target}", file=out)
    bn_left = report.after.ops.get("BatchNormalization", 0)
    print(f"PASSED | {time.perf_counter() - started:.2f}s | {report.rewrites()} rewrites, "
          f"nodes {report.before.nodes} -> {report.after.nodes}, "
          f"BatchNormalization left {bn_left}", file=out)
    return 0


def _passes(args: argparse.Namespace) -> int:
    from fuser.passes import DEFAULT_PIPELINE, REGISTRY

    rows = [{"name": name, "lossy": cls.lossy, "default": name in DEFAULT_PIPELINE,
             "summary": cls.summary()} for name, cls in sorted(REGISTRY.items())]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        flags = "default" if r["default"] else ("lossy" if r["lossy"] else "opt-in")
        print(f"{r['name']:<{width}}  {flags:<7}  {r['summary']}")
    print(f"default pipeline: {', '.join(DEFAULT_PIPELINE)}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    import numpy as np

    from fuser import api, graph, runtime
    from fuser.models.synthetic import resnet

    folder = Path(args.output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    source = folder / "resnet18-bn.onnx"
    graph.save(resnet("resnet18", image_size=64, num_classes=10), source)
    model, report = api.optimize(source)
    graph.save(model, folder / "resnet18-bn.opt.onnx")
    write_text_atomic(folder / "report.json", report.to_json() + "\n")
    print(report.to_text())
    original = graph.load(source)
    feeds = runtime.random_feeds(original, np.random.default_rng(0), dynamic=4)
    want, got = runtime.run(original, feeds)["logits"], runtime.run(model, feeds)["logits"]
    diff, scale = float(np.abs(want - got).max()), float(np.abs(want).max())
    print(f"  logits max abs diff vs original (onnxruntime, optimizations off, batch 4): "
          f"{diff:.2e} (max |logit| {scale:.1f})")
    print(f"wrote {folder / 'resnet18-bn.opt.onnx'} and {folder / 'report.json'}")
    verdict = "PASSED" if diff <= 1e-4 * scale else "FAILED"
    print(f"{verdict} | {time.perf_counter() - started:.2f}s | BatchNormalization "
          f"{report.before.ops.get('BatchNormalization', 0)} -> "
          f"{report.after.ops.get('BatchNormalization', 0)} | relative diff {diff / scale:.1e}")
    return 0 if verdict == "PASSED" else 1


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder and a rename."""
    if not path.parent.is_dir():
        raise FuserError(f"{path}: folder {path.parent} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise

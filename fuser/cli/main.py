"""The ``onnx-fuser`` command: parse arguments, call the API, render the result.

Exit codes: 0 success, 1 failure (validation failed, a pass broke the model), 2 bad input or
usage. A user error prints one line without a traceback (``-v`` shows it); a bug keeps its
traceback. Human text goes to stdout, logs to stderr; the last line is PASSED or FAILED.
Subcommand handlers live in ``fuser.cli.commands``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import NoReturn

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
        if args.command in ("optimize", "validate", "bench", "demo", "export", "check"):
            from fuser.cli.commands import quiet_onnxruntime

            quiet_onnxruntime(args.verbose - args.quiet)
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


class _Parser(argparse.ArgumentParser):
    """argparse with usage errors on one line, pointing at ``-h`` (not the whole usage)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} ({self.prog} -h for more)\n")


def _parser() -> argparse.ArgumentParser:
    from fuser import __version__
    from fuser.cli import check as cli_check
    from fuser.cli import commands

    parser = _Parser(
        prog="onnx-fuser", description="Make trained CNNs faster by rewriting their ONNX graphs.")
    parser.add_argument("--version", action="version", version=f"onnx-fuser {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    parser.add_argument("-q", "--quiet", action="count", default=0, help="less logging")
    sub = parser.add_subparsers(dest="command", required=True)

    opt = sub.add_parser("optimize", help="run the exact pipeline (or chosen passes), validate "
                                          "and time the result")
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
    opt.add_argument("--no-validate", action="store_true", help="skip the numeric validation")
    opt.add_argument("--force", action="store_true",
                     help="write the output even when validation fails (exit code stays 1)")
    opt.add_argument("--rollback", action="store_true",
                     help="when validation fails, drop the culprit pass(es) and keep the rest")
    opt.add_argument("--no-bench", action="store_true", help="skip the timing")
    opt.add_argument("--static-shapes", action="store_true",
                     help="write the fixed input shapes (--input-shape; a symbolic first dim "
                          "is --batch) into the output, so that everything computed from them "
                          "folds; the output then runs at those shapes only (default: the "
                          "output keeps its symbolic dims)")
    lossy = opt.add_argument_group("lossy low-rank stage (after the exact pipeline)")
    lossy.add_argument("--lossy", choices=("lowrank",), help="run the low-rank search")
    lossy.add_argument("--calibration", metavar="DATA",
                       help="inputs: a .npz (an optional 'labels' array turns the agreement "
                            "check into an accuracy check), NAME=file.npy, or an image folder")
    lossy.add_argument("--calibration-batch", type=int, default=16,
                       help="samples per calibration batch (default 16)")
    lossy.add_argument("--calibration-samples", type=int, default=256,
                       help="calibration samples used at most (default 256)")
    lossy.add_argument("--budget", default="latency=0.5",
                       help="latency=F or macs=F (the whole model's cost as a fraction), or "
                            "accuracy=D (as fast as a top-1 drop of at most D allows)")
    lossy.add_argument("--max-accuracy-drop", type=float,
                       help="back off layers until the held-out top-1 agreement drops by at "
                            "most this (default 0.01 with --lossy; 1 turns the check off)")
    lossy.add_argument("--reconstruction", choices=("asymmetric", "pca", "whitened"),
                       default="asymmetric",
                       help="asymmetric (default), pca, or whitened (whitened SVD for "
                            "Gemm/MatMul)")
    opt.add_argument("--external-data", action="store_true",
                     help="write weights to OUTPUT.data (automatic past 2 GB)")
    _input_options(opt)
    _tolerance_options(opt)
    _bench_options(opt, batch=False)
    _report_options(opt)
    opt.set_defaults(handler=commands.optimize)

    val = sub.add_parser("validate", help="compare two models' outputs on onnxruntime")
    val.add_argument("reference", help="the original model")
    val.add_argument("candidate", help="the model to check against it")
    _input_options(val)
    _tolerance_options(val)
    _report_options(val)
    val.set_defaults(handler=commands.validate)

    bench = sub.add_parser("bench", help="time one model, or two interleaved, on onnxruntime")
    bench.add_argument("models", nargs="+", metavar="MODEL",
                       help="one or two .onnx files (the first is the reference)")
    _input_options(bench, batch=False)
    _bench_options(bench, batch=True)
    _report_options(bench)
    bench.set_defaults(handler=commands.bench)

    chk = sub.add_parser("check", help="regression check against a stored baseline (for CI)")
    chk.add_argument("model", nargs="?", help="an .onnx file, or a folder of them")
    chk.add_argument("--baseline", help="baseline JSON (golden outputs in the .npz beside it)")
    chk.add_argument("--baseline-dir", help="folder mode: one BASELINE_DIR/<model>.json each")
    chk.add_argument("--update", action="store_true", help="(re)write the baseline(s)")
    chk.add_argument("--optimize", action="store_true",
                     help="check fuser's exact pipeline applied to the model")
    chk.add_argument("--torch", metavar="SPEC", help="export module:factory first")
    chk.add_argument("--keras", metavar="SPEC", help="export a .keras/.h5 or module:factory")
    chk.add_argument("--reference", help="a model to time against (latency ratio check)")
    chk.add_argument("--input-shape", action="append", default=[], metavar="NAME:DxD")
    chk.add_argument("--junit", metavar="FILE", help="write a JUnit XML report")
    chk.add_argument("--json", action="store_true", help="print the results as JSON")
    chk.add_argument("-j", "--jobs", type=int, default=1, help="models checked in parallel")
    chk.set_defaults(handler=cli_check.check)

    lst = sub.add_parser("passes", help="list the passes")
    lst.add_argument("--json", action="store_true", help="print the list as JSON")
    lst.set_defaults(handler=commands.passes)

    export = sub.add_parser("export", help="export a PyTorch or Keras model to ONNX with "
                                           "BatchNorm left for fuser")
    export.add_argument("framework", choices=("torch", "keras"))
    export.add_argument("spec", help="module:factory (a function returning the model, or "
                                     "(model, example input) for torch), zoo:NAME (see "
                                     "fuser.zoo.TINY), or for keras a .keras/.h5 file")
    export.add_argument("-o", "--output", required=True, help="the .onnx file to write")
    export.add_argument("--input-shape", action="append", default=[], metavar="NAME:DxD",
                        help="the example input's shape, e.g. input:1x3x224x224 (torch; "
                             "keras: the check's shape where the model leaves dimensions "
                             "besides the batch dynamic, which the ONNX file keeps, or the "
                             "input of a subclassed model never called)")
    export.add_argument("--opset", type=int, default=17)
    export.add_argument("--fold-in-exporter", action="store_true",
                        help="let the exporter fold BatchNorm (fuser's folding is the default)")
    export.add_argument("--nchw", action="store_true", help="keras: NCHW inputs")
    export.add_argument("--static-batch", action="store_true",
                        help="torch: keep the example's batch size fixed")
    export.set_defaults(handler=commands.export)

    demo = sub.add_parser("demo", help="the zoo in PyTorch and Keras: export, fold, validate, "
                                       "time, and a table")
    demo.add_argument("-o", "--output-dir", default="fuser-demo",
                      help="folder for the models and the report (default: fuser-demo)")
    size = demo.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="three tiny models (CI)")
    size.add_argument("--full", action="store_true", help="full-size ImageNet models (slow)")
    demo.add_argument("--frameworks", default="torch,keras", help="default: torch,keras")
    demo.add_argument("--time-budget", type=float, default=1.0,
                      help="seconds of timing per model and level (default 1)")
    demo.set_defaults(handler=commands.demo)
    return parser


def _input_options(parser: argparse.ArgumentParser, batch: bool = True) -> None:
    group = parser.add_argument_group("inputs")
    group.add_argument("--input-shape", action="append", default=[], metavar="NAME:DxD",
                       help="shape of an input with dynamic dims, e.g. x:1x3x224x224 "
                            "(repeatable)")
    group.add_argument("--inputs", metavar="DATA",
                       help="real inputs: a .npz, NAME=file.npy[,NAME=file.npy], or a folder "
                            "of images")
    if batch:
        group.add_argument("--batch", type=int, default=1,
                           help="size of a dynamic first dimension (default 1)")
    group.add_argument("--batches", type=int, default=3,
                       help="random batches to compare (default 3)")
    group.add_argument("--seed", type=int, default=0, help="seed of the random inputs")


def _tolerance_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("tolerances (|diff| <= atol + rtol * max|reference|)")
    group.add_argument("--atol", action="append", default=[], metavar="[OUTPUT:]X",
                       help="absolute tolerance, for all outputs or one (repeatable)")
    group.add_argument("--rtol", action="append", default=[], metavar="[OUTPUT:]X",
                       help="relative tolerance, for all outputs or one (repeatable)")


def _bench_options(parser: argparse.ArgumentParser, batch: bool) -> None:
    group = parser.add_argument_group("timing")
    group.add_argument("--provider", choices=("auto", "cpu", "cuda"), default="auto",
                       help="auto uses CUDA only when it really loads (default)")
    group.add_argument("--level", choices=("disable", "basic", "all", "both"), default="both",
                       help="onnxruntime graph optimization level; both = disable and all")
    group.add_argument("--threads", type=int, help="intra-op threads (default: physical cores)")
    group.add_argument("--warmup", type=int, default=5, help="warm-up runs per model")
    group.add_argument("--rounds", type=int, default=50, help="interleaved rounds at most")
    group.add_argument("--time-budget", type=float, default=5.0,
                       help="seconds per level and batch size (default 5)")
    group.add_argument("--cuda-graph", action="store_true",
                       help="capture a CUDA graph (CUDA, static shapes)")
    if batch:
        group.add_argument("--batch", default="1",
                           help="batch sizes for a dynamic first dimension, e.g. 1,8,64")


def _report_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--report", metavar="FILE",
                        help="write the report: .json, or .md for markdown")
    parser.add_argument("--json", action="store_true", help="print the report as JSON on stdout")


def _configure_logging(level: int) -> None:
    logging.basicConfig(
        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr,
        level={-1: logging.ERROR, 0: logging.WARNING, 1: logging.INFO}.get(
            max(-1, min(level, 2)), logging.DEBUG))


if __name__ == "__main__":  # python -m fuser.cli (python -m fuser does the same)
    sys.exit(main())

"""The ``onnx-fuser`` command: parse arguments, call the API, render the result.

Exit codes: 0 success, 1 failure (validation failed, a pass broke the model), 2 bad input or
usage. A user error prints one line without a traceback (``-v`` shows it); a bug keeps its
traceback. Human text goes to stdout, logs to stderr; the last line is PASSED or FAILED.
Each subcommand is a module of ``fuser.cli`` with ``add_parser(subparsers)`` (its arguments;
the option groups they share are in ``fuser.cli.options``) and ``run(args)`` (its handler).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import NoReturn

from fuser.about import __version__
from fuser.cli import bench, check, demo, export, optimize, passes, validate
from fuser.errors import FuserError, PassError
from fuser.ortlog import set_log_severity

logger = logging.getLogger("fuser")

#: The subcommands, in the order ``onnx-fuser -h`` lists them.
COMMANDS = (optimize, validate, bench, check, passes, export, demo)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 on --help
        return int(exc.code or 0)
    _configure_logging(args.verbose - args.quiet)
    try:
        if args.runs_models:
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
    except KeyboardInterrupt:  # outputs are written atomically: nothing half-written stays
        print(f"onnx-fuser: interrupted (Ctrl-C) during {args.command}; nothing was written "
              "past the last complete file", file=sys.stderr)
        return 130


class _Parser(argparse.ArgumentParser):
    """argparse with usage errors on one line, pointing at ``-h`` (not the whole usage)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} ({self.prog} -h for more)\n")


def build_parser() -> argparse.ArgumentParser:
    """The parser: the global flags, then each command module's subparser."""
    parser = _Parser(
        prog="onnx-fuser", description="Make trained CNNs faster by rewriting their ONNX graphs.")
    parser.add_argument("--version", action="version", version=f"onnx-fuser {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    parser.add_argument("-q", "--quiet", action="count", default=0, help="less logging")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(subparsers).set_defaults(runs_models=command.RUNS_MODELS)
    return parser


def quiet_onnxruntime(verbose: int) -> None:
    """Keep onnxruntime's own logger (process-wide) to errors unless ``-v`` asked for more."""
    if verbose < 1:
        set_log_severity(4 if verbose < 0 else 3)
    else:
        set_log_severity(1)


def _configure_logging(level: int) -> None:
    logging.basicConfig(
        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr,
        level={-1: logging.ERROR, 0: logging.WARNING, 1: logging.INFO}.get(
            max(-1, min(level, 2)), logging.DEBUG))


if __name__ == "__main__":  # python -m fuser.cli.main (python -m fuser does the same)
    sys.exit(main())

"""The ``onnx-fuser`` command: parse arguments, call the API, render the result.

Exit codes: 0 success, 1 failure (validation failed, a pass broke the model), 2 bad input or
usage. A user error prints one line without a traceback (``-v`` shows it); a bug keeps its
traceback. Human text goes to stdout, logs to stderr; the last line is PASSED or FAILED.
Each subcommand is a module of ``fuser.cli`` with ``add_arguments(parser)`` (its arguments;
the option groups they share are in ``fuser.cli.options``), ``run(args)`` (its handler) and
``RUNS_MODELS``. Only the module of the subcommand that runs is imported (``importlib``), so
that ``--version``, ``-h`` and a subcommand's ``-h`` import none of numpy, onnx or
onnxruntime that the others need.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from typing import NoReturn

from fuser.about import __version__
from fuser.errors import FuserError, PassError
from fuser.ortlog import set_log_severity

logger = logging.getLogger("fuser")

#: The subcommands and their one-line help, in the order ``onnx-fuser -h`` lists them; each
#: is the module ``fuser.cli.<name>``.
COMMANDS = {
    "optimize": "run the exact pipeline (or chosen passes), validate and time the result",
    "validate": "compare two models' outputs on onnxruntime",
    "bench": "time one model, or two interleaved, on onnxruntime",
    "check": "regression check against a stored baseline (for CI)",
    "passes": "list the passes",
    "export": "export a PyTorch or Keras model to ONNX with BatchNorm left for fuser",
    "demo": "the zoo in PyTorch and Keras: export, fold, validate, time, and a table",
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(_command(argv))
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


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser: the global flags and a subparser per command, with its arguments for
    ``command`` (every command's when None) and its help line for the others."""
    parser = _Parser(
        prog="onnx-fuser", description="Make trained CNNs faster by rewriting their ONNX graphs.")
    parser.add_argument("--version", action="version", version=f"onnx-fuser {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    parser.add_argument("-q", "--quiet", action="count", default=0, help="less logging")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name, help_line in COMMANDS.items():
        sub = subparsers.add_parser(name, help=help_line)
        if command in (None, name):
            module = importlib.import_module(f"fuser.cli.{name}")
            module.add_arguments(sub)
            sub.set_defaults(runs_models=module.RUNS_MODELS)
    return parser


def _command(argv: Sequence[str]) -> str | None:
    """The subcommand ``argv`` names (its first word that is not a global flag), or
    ``""`` when there is none (the global flags only: no module is imported)."""
    return next((word for word in argv if not word.startswith("-")), "")


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

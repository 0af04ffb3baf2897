"""Option groups shared by the commands, and their parsing into the API's settings.

Each group is declared once here (``add_*``) and parsed once here, straight into what the API
takes (``validation`` -> ``fuser.api.Validation``, ``lowrank`` -> ``fuser.api.LowRank``,
``timing`` -> ``fuser.settings.Timing``, the keyword arguments of ``benchmark``), so a
flag learned once works the same in every command. The output group gives every command the
same ``--json``: the human text on stderr (``human``), pure JSON on stdout (``print_json``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

import onnx

from fuser import api
from fuser.errors import FuserError
from fuser.ir.io import write_text_atomic
from fuser.runtime import inputs
from fuser.runtime import validate as validation
from fuser.settings import Timing

LEVELS = {"both": ("disable", "all"), "disable": ("disable",), "basic": ("basic",),
          "all": ("all",)}


def split(values: list[str]) -> list[str]:
    """``["a,b", "c"]`` -> ``["a", "b", "c"]``: repeatable and comma-separated flags."""
    return [v.strip() for value in values for v in value.split(",") if v.strip()]


# ---------------------------------------------------------------------------- inputs


def add_input_shape(parser: Any, help: str = "shape of an input with dynamic dims, e.g. "
                                              "x:1x3x224x224 (repeatable)") -> None:
    parser.add_argument("--input-shape", action="append", default=[], metavar="NAME:DxD",
                        help=help)


def positive(text: str) -> int:
    """An argparse type: an integer of at least 1 (a batch, a count, a number of steps)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def not_negative(text: str) -> int:
    """An argparse type: an integer of at least 0 (warm-up runs)."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be an integer of at least 0")
    return value


def add_inputs(parser: argparse.ArgumentParser, batch: bool = True) -> None:
    """The input group: --input-shape, --inputs, --batch (a size; ``batch=False`` leaves it
    to the timing group's list of sizes), --batches, --seed."""
    group = parser.add_argument_group("inputs")
    add_input_shape(group)
    group.add_argument("--inputs", metavar="DATA",
                       help="real inputs: a .npz, NAME=file.npy[,NAME=file.npy], or a folder "
                            "of images")
    if batch:
        group.add_argument("--batch", type=positive, default=1,
                           help="size of a dynamic first dimension (default 1)")
    group.add_argument("--batches", type=positive, default=3,
                       help="random batches to compare (default 3)")
    group.add_argument("--seed", type=int, default=0, help="seed of the random inputs")


def input_shapes(args: argparse.Namespace) -> dict[str, tuple[int, ...]]:
    """``--input-shape`` as ``{name: shape}``."""
    return parse_input_shapes(args.input_shape)


def parse_input_shapes(values: Sequence[str]) -> dict[str, tuple[int, ...]]:
    """``["x:1x3x224x224", ...]`` -> ``{"x": (1, 3, 224, 224)}``; FuserError on bad syntax."""
    shapes = {}
    for value in values:
        name, sep, dims = value.rpartition(":")
        try:
            shape = tuple(int(d) for d in dims.lower().split("x"))
        except ValueError:
            shape = ()
        if not sep or not name or not shape or any(d < 0 for d in shape):
            raise FuserError(f"--input-shape {value!r}: expected NAME:DxDxD, e.g. "
                             "input:1x3x224x224")
        if name in shapes and shapes[name] != shape:
            raise FuserError(f"--input-shape {name!r} given twice "
                             f"({'x'.join(map(str, shapes[name]))} and {dims}): give it once")
        shapes[name] = shape
    return shapes


def resolve_shapes(args: argparse.Namespace, model: onnx.ModelProto, batch: int) -> dict:
    """Every input's shape: ``--input-shape``, a symbolic first dimension at ``batch``."""
    return inputs.resolve_shapes(model, input_shapes(args), batch)


def random_feeds(model: onnx.ModelProto, shapes: Mapping, seed: int) -> dict:
    """One seeded random batch at ``shapes``."""
    return inputs.random_batches(model, shapes, 1, seed)[0]


# ---------------------------------------------------------------------------- validation


def add_tolerances(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("tolerances (|diff| <= atol + rtol * max|reference|)")
    group.add_argument("--atol", action="append", default=[], metavar="[OUTPUT:]X",
                       help="absolute tolerance, for all outputs or one (repeatable)")
    group.add_argument("--rtol", action="append", default=[], metavar="[OUTPUT:]X",
                       help="relative tolerance, for all outputs or one (repeatable)")


def validation_settings(args: argparse.Namespace) -> api.Validation:
    """The input and tolerance groups as ``fuser.api.Validation``."""
    return api.Validation(
        inputs=args.inputs, input_shapes=input_shapes(args), batch=args.batch,
        count=args.batches, seed=args.seed,
        atol=validation.parse_tolerances(args.atol, validation.EXACT_ATOL),
        rtol=validation.parse_tolerances(args.rtol, validation.EXACT_RTOL))


# ---------------------------------------------------------------------------- timing


def add_timing(parser: argparse.ArgumentParser, batch: bool) -> None:
    """The timing group; ``batch=True`` adds --batch as a list of sizes (``bench``)."""
    group = parser.add_argument_group("timing")
    group.add_argument("--provider", choices=("auto", "cpu", "cuda"), default="auto",
                       help="auto uses CUDA only when it really loads (default)")
    group.add_argument("--level", choices=("disable", "basic", "all", "both"), default="both",
                       help="onnxruntime graph optimization level; both = disable and all")
    group.add_argument("--threads", type=positive, help="intra-op threads (default: physical cores)")
    group.add_argument("--warmup", type=not_negative, default=5, help="warm-up runs per model")
    group.add_argument("--rounds", type=positive, default=500,
                       help="interleaved rounds at most (default 500; the timing stops "
                            "earlier once every speed-up's 95 %% interval is 5 %% wide)")
    group.add_argument("--time-budget", type=float, default=5.0,
                       help="seconds per level and batch size (default 5)")
    group.add_argument("--cuda-graph", action="store_true",
                       help="capture a CUDA graph (CUDA, static shapes)")
    if batch:
        group.add_argument("--batch", default="1",
                           help="batch sizes for a dynamic first dimension, e.g. 1,8,64")


def timing(args: argparse.Namespace) -> Timing:
    """The timing group as ``Timing``."""
    return Timing(levels=LEVELS[args.level], provider=args.provider, threads=args.threads,
                  warmup=args.warmup, rounds=args.rounds, time_budget=args.time_budget,
                  cuda_graph=args.cuda_graph)


# ---------------------------------------------------------------------------- low-rank


def add_output(parser: argparse.ArgumentParser, what: str = "the report",
               report: bool = True) -> None:
    """--json (``what`` as JSON on stdout, the human text on stderr) and, with ``report``,
    --report FILE."""
    group = parser.add_argument_group("output")
    if report:
        group.add_argument("--report", metavar="FILE",
                           help="write the report; its extension names the format: .json, "
                                ".md (markdown), or .html for optimize")
    group.add_argument("--json", action="store_true", help=f"print {what} as JSON on stdout")


def progress(args: argparse.Namespace) -> Callable[[str], None]:
    """Progress lines on stderr, a log's or a terminal's alike (each a finished step, so
    they come at the steps' pace); ``-q`` silences them."""
    if getattr(args, "quiet", 0):
        return lambda text: None
    return lambda text: print(text, file=sys.stderr, flush=True)


def human(args: argparse.Namespace) -> TextIO:
    """Where the human text goes: stdout, or stderr with ``--json`` (stdout is the JSON)."""
    return sys.stderr if args.json else sys.stdout


def print_json(data: Any, sort_keys: bool = True) -> None:
    """``data`` as indented JSON on stdout."""
    print(json.dumps(data, indent=2, sort_keys=sort_keys, default=str))


def emit(args: argparse.Namespace, data: dict, out: TextIO,
         report_file: str | None) -> None:
    """``--json`` prints ``data``; ``--report FILE`` writes ``report_file``
    (``report_file(...)``: its content, rendered before anything is written)."""
    if args.json:
        print_json(data)
    if report_file is not None:
        write_text_atomic(Path(args.report), report_file)
        print(f"report: {args.report}", file=out)


def report_file(args: argparse.Namespace, data: dict, markdown: Callable[[], str] | str,
                page: Callable[[], str] | None = None) -> str | None:
    """What ``--report FILE`` writes (None without it), in the format its extension names:
    ``data`` as JSON, the ``markdown``, or the HTML ``page`` (commands that make one)."""
    kind = report_kind(args, html=page is not None)
    if kind is None:
        return None
    if kind == "markdown":
        return markdown() if callable(markdown) else markdown
    if kind == "html":
        return page()
    return json.dumps(data, indent=2, sort_keys=True, default=str) + "\n"


def report_kind(args: argparse.Namespace, html: bool = False) -> str | None:
    """The format ``--report FILE`` names by its extension (None without it); FuserError for
    another extension (``html``: the command writes an HTML page too) or a folder that does
    not exist (checked before the work starts)."""
    if not getattr(args, "report", None):
        return None
    path = Path(args.report)
    kinds = {**REPORT_KINDS, **(HTML_KINDS if html else {})}
    kind = kinds.get(path.suffix.lower())
    if kind is None:
        raise FuserError(f"--report {path}: the extension names the format: "
                         f"{', '.join(kinds)}")
    if not path.parent.is_dir():
        raise FuserError(f"{path}: folder {path.parent} does not exist")
    return kind


#: ``--report FILE``: the format each extension names.
REPORT_KINDS = {".json": "json", ".md": "markdown", ".markdown": "markdown"}
#: ``--report FILE`` of ``optimize``: the self-contained page (``fuser.report.html``) too.
HTML_KINDS = {".html": "html", ".htm": "html"}

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
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import onnx

from fuser import api
from fuser import ir as graph
from fuser.errors import FuserError
from fuser.ir.io import write_text_atomic
from fuser.runtime import inputs
from fuser.runtime import validate as validation
from fuser.runtime.providers import physical_cores
from fuser.search.metric import parse as parse_metric
from fuser.search.search import SEARCH_TIME, parse_budget
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
    return inputs.parse_input_shapes(args.input_shape)


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


def add_lossy(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("lossy low-rank stage (after the exact pipeline)")
    group.add_argument("--lossy", choices=("lowrank",), help="run the low-rank search")
    group.add_argument("--calibration", metavar="DATA",
                       help="inputs: a .npz (an optional 'labels' array turns the agreement "
                            "check into an accuracy check), NAME=file.npy, or an image folder")
    group.add_argument("--allow-degenerate-calibration", action="store_true",
                       help="go on when the calibration data is degenerate (constant "
                            "samples, near-copies, outputs that hardly vary), which is "
                            "refused by default; the last line says so, and the guard counts "
                            "distinct samples either way")
    group.add_argument("--calibration-batch", type=positive, default=16,
                       help="samples per calibration batch (default 16)")
    group.add_argument("--calibration-samples", type=positive, default=1024,
                       help="calibration samples used at most (default 1024: the first "
                            "128 fit the factors, the rest judge the result)")
    group.add_argument("--budget", default="latency=0.5",
                       help="latency=F or macs=F (the whole model's cost as a fraction), or "
                            "accuracy=D (as fast as a metric drop of at most D allows)")
    group.add_argument("--metric", metavar="SPEC",
                       help="what the guard judges: top1 (needs labels), agreement, snr:DB, "
                            "rel-error:X (share of samples within X relative error), or "
                            "FILE.py:FUNCTION / MODULE:FUNCTION, fn(outputs, labels) -> float, "
                            "higher is better (default: agreement, or top1 with labels, for "
                            "class scores; rel-error:0.05 otherwise)")
    group.add_argument("--max-accuracy-drop", type=float,
                       help="deliver the most layers rewritten for which the upper end "
                            "of the 95%% interval of the metric's drop on the held-out "
                            "samples is at most this (default 0.01 with --lossy; 1 turns "
                            "the check off)")
    group.add_argument("--search-time", type=float, default=SEARCH_TIME, metavar="SECONDS",
                       help="time for the whole search (default "
                            f"{SEARCH_TIME:g}): the latency table stops at 40%% of it (then "
                            "latencies are estimated from MACs), the sensitivity runs leave "
                            "three builds' time (fewer if that leaves them under a third), "
                            "and no build starts that would end after it")
    group.add_argument("--reconstruction", choices=("asymmetric", "pca", "whitened"),
                       default="asymmetric",
                       help="asymmetric (default), pca, or whitened (whitened SVD for "
                            "Gemm/MatMul)")


def lowrank(args: argparse.Namespace, source: Path) -> api.LowRank | None:
    """The low-rank group as ``fuser.api.LowRank`` (None without ``--lossy``), with the
    calibration batches loaded from ``--calibration``."""
    if args.lossy is None:
        for flag in ("calibration", "max_accuracy_drop", "metric",
                     "allow_degenerate_calibration"):
            if getattr(args, flag) not in (None, False):
                raise FuserError(f"--{flag.replace('_', '-')} needs --lossy lowrank")
        return None
    if not args.calibration:
        raise FuserError("--lossy lowrank needs --calibration DATA (unlabeled inputs)")
    parse_budget(args.budget)
    metric = parse_metric(args.metric)
    model = graph.load(source)
    shapes = resolve_shapes(args, model, args.calibration_batch)
    count = max(2, -(-args.calibration_samples // args.calibration_batch))
    batches = inputs.load_batches(args.calibration, model, shapes, max_batches=count,
                                  remainder=False)
    drop = 0.01 if args.max_accuracy_drop is None else args.max_accuracy_drop
    labels = _calibration_labels(args.calibration, sum(len(next(iter(b.values())))
                                                      for b in batches))
    return api.LowRank(batches, budget=args.budget, max_accuracy_drop=drop, labels=labels,
                       metric=metric, reconstruction=args.reconstruction,
                       search_time=args.search_time, provider=getattr(args, "provider", "auto"),
                       threads=args.threads or physical_cores(),
                       allow_degenerate_calibration=args.allow_degenerate_calibration,
                       progress=False if getattr(args, "quiet", 0) else None)


def _calibration_labels(path: str, count: int) -> np.ndarray | None:
    """A ``labels`` array stored in a calibration ``.npz`` (one per sample), if any."""
    if not str(path).endswith(".npz"):
        return None
    with np.load(path) as data:
        if "labels" not in data.files:
            return None
        labels = data["labels"]
    if labels.ndim != 1 or len(labels) < count:
        raise FuserError(f"{path}: 'labels' must hold one label per sample ({count} used)")
    return labels[:count]


# ---------------------------------------------------------------------------- output


def add_output(parser: argparse.ArgumentParser, what: str = "the report",
               report: bool = True) -> None:
    """--json (``what`` as JSON on stdout, the human text on stderr) and, with ``report``,
    --report FILE."""
    group = parser.add_argument_group("output")
    if report:
        group.add_argument("--report", metavar="FILE",
                           help="write the report: .json, or .md for markdown")
    group.add_argument("--json", action="store_true", help=f"print {what} as JSON on stdout")


def human(args: argparse.Namespace) -> TextIO:
    """Where the human text goes: stdout, or stderr with ``--json`` (stdout is the JSON)."""
    return sys.stderr if args.json else sys.stdout


def print_json(data: Any, sort_keys: bool = True) -> None:
    """``data`` as indented JSON on stdout."""
    print(json.dumps(data, indent=2, sort_keys=sort_keys, default=str))


def emit(args: argparse.Namespace, data: dict, markdown: str, out: TextIO) -> None:
    """``--json`` prints ``data``; ``--report FILE`` writes JSON, or markdown for ``.md``."""
    if args.json:
        print_json(data)
    text = report_text(args, data, markdown)
    if text is not None:
        write_text_atomic(Path(args.report), text)
        print(f"report: {args.report}", file=out)


def report_text(args: argparse.Namespace, data: dict, markdown: str) -> str | None:
    """What ``--report FILE`` writes (None without it); raises, before anything is written,
    when the report cannot be made or its folder does not exist."""
    if not args.report:
        return None
    path = Path(args.report)
    if not path.parent.is_dir():
        raise FuserError(f"{path}: folder {path.parent} does not exist")
    if path.suffix.lower() in (".md", ".markdown"):
        return markdown
    return json.dumps(data, indent=2, sort_keys=True, default=str) + "\n"

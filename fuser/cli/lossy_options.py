"""The options of the lossy stage (``--lossy lowrank``): the search's settings, and the
calibration data (``runtime.inputs.CalibrationData``: inputs, and labels from the ``.npz``),
as ``fuser.api.LowRank``."""

from __future__ import annotations

import argparse

from fuser import api
from fuser.cli.options import positive
from fuser.errors import FuserError
from fuser.runtime import inputs
from fuser.runtime.providers import physical_cores
from fuser.search.config import CALIBRATIONS, SEARCH_TIME, parse_budget
from fuser.search.metric import parse as parse_metric

#: What ``--lossy`` takes: the methods, in the order they run.
LOSSY = ("lowrank", "int8", "lowrank,int8")


def add_lossy(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("lossy stage: low-rank and int8 (after the exact "
                                      "pipeline)")
    group.add_argument("--lossy", choices=LOSSY, metavar="|".join(LOSSY),
                       help="lowrank: the low-rank search; int8: INT8 (QDQ) layers where "
                            "onnxruntime runs them faster, sensitive ones kept float; "
                            "lowrank,int8: both, int8 on the low-rank result; every choice "
                            "judged by the same guard and metric")
    group.add_argument("--int8-calibration", choices=("auto", *CALIBRATIONS), default="auto",
                       help="int8's activation ranges: onnxruntime's minmax, entropy or "
                            "percentile calibrator; auto (default): each of them, keeping the "
                            "one whose all-int8 model is closest to the float one")
    group.add_argument("--int8-bias-correction", action="store_true",
                       help="correct each int8 layer's bias by its mean output shift on the "
                            "calibration samples (off by default: it did not help on the "
                            "real zoo's detectors)")
    group.add_argument("--int8-equalize", action="store_true",
                       help="equalize the weight ranges of Conv -> Relu -> Conv pairs before "
                            "int8 (cross-layer equalization; exact in float; off by default: "
                            "it did not help on the real zoo)")
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
    group.add_argument("--budget",
                       help="default: the fastest model whose drop stays within "
                            "--max-accuracy-drop; latency=F or macs=F stops the search at "
                            "that share of the whole model's cost (within the same drop); "
                            "accuracy=D as fast as a drop of at most D allows")
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


def lowrank(args: argparse.Namespace) -> api.LowRank | None:
    """The low-rank group as ``fuser.api.LowRank`` (None without ``--lossy``); its
    calibration data is ``--calibration``, read when the run has parsed the model."""
    if args.lossy is None:
        for flag in ("calibration", "max_accuracy_drop", "metric",
                     "allow_degenerate_calibration"):
            if getattr(args, flag) not in (None, False):
                raise FuserError(f"--{flag.replace('_', '-')} needs --lossy")
        return None
    if not args.calibration:
        raise FuserError(f"--lossy {args.lossy} needs --calibration DATA (unlabeled inputs)")
    if args.budget is not None:
        parse_budget(args.budget)
    metric = parse_metric(args.metric)
    drop = 0.01 if args.max_accuracy_drop is None else args.max_accuracy_drop
    # read against the model when the run has parsed it (once), before any pass runs
    data = inputs.CalibrationData(args.calibration, args.calibration_batch,
                                  args.calibration_samples)
    return api.LowRank(data, budget=args.budget, max_accuracy_drop=drop,
                       metric=metric, reconstruction=args.reconstruction,
                       search_time=args.search_time, provider=getattr(args, "provider", "auto"),
                       threads=args.threads or physical_cores(),
                       allow_degenerate_calibration=args.allow_degenerate_calibration,
                       progress=False if getattr(args, "quiet", 0) else None,
                       methods=tuple(args.lossy.split(",")),
                       calibration_method=args.int8_calibration,
                       int8_bias_correction=args.int8_bias_correction,
                       int8_equalize=args.int8_equalize)


# ---------------------------------------------------------------------------- output

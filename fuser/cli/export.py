"""``onnx-fuser export torch|keras SPEC``: export a PyTorch or Keras model to ONNX with
BatchNorm left for fuser, checked against the framework's own output."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from fuser.cli import options
from fuser.errors import FuserError
from fuser.frontends import ExportResult
from fuser.frontends.keras import export as export_keras
from fuser.frontends.torch import export as export_torch
from fuser.zoo.spec import load_spec

RUNS_MODELS = True


def add_arguments(export: argparse.ArgumentParser) -> None:
    """The arguments of ``onnx-fuser export``."""
    export.add_argument("framework", choices=("torch", "keras"))
    export.add_argument("spec", help="module:factory (a function returning the model, or "
                                     "(model, example input) for torch), zoo:NAME (see "
                                     "fuser.zoo.TINY), or for keras a .keras/.h5 file")
    export.add_argument("-o", "--output", required=True, help="the .onnx file to write")
    options.add_input_shape(export, help="the example input's shape, e.g. "
                                         "input:1x3x224x224 (torch; keras: the check's shape "
                                         "where the model leaves dimensions besides the batch "
                                         "dynamic, which the ONNX file keeps, or the input of "
                                         "a subclassed model never called)")
    export.add_argument("--opset", type=int, default=17)
    export.add_argument("--fold-in-exporter", action="store_true",
                        help="let the exporter fold BatchNorm (fuser's folding is the default)")
    export.add_argument("--nchw", action="store_true", help="keras: NCHW inputs")
    export.add_argument("--static-batch", action="store_true",
                        help="torch: keep the example's batch size fixed")
    options.add_output(export, what="the export's summary", report=False)
    export.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    target = Path(args.output)
    if not target.parent.is_dir():
        raise FuserError(f"{target}: folder {target.parent} does not exist")
    started = time.perf_counter()
    result = _export(args, target)
    ok = result.max_abs_diff is None or result.max_abs_diff <= 1e-4 * max(result.output_scale,
                                                                           1.0)
    out = options.human(args)
    print(result.summary(), file=out)
    print(f"wrote {target}", file=out)
    if args.json:
        options.print_json(_as_dict(result, target, ok))
    print(f"{'PASSED' if ok else 'FAILED'} | {time.perf_counter() - started:.2f}s | "
          f"{len(result.model.graph.node)} nodes, max abs diff vs {args.framework} "
          f"{result.max_abs_diff:.1e}", file=out)
    return 0 if ok else 1


def _export(args: argparse.Namespace, target: Path) -> ExportResult:
    """Load the model SPEC names and export it to ``target``."""
    model, example = load_spec(args.framework, args.spec)
    shapes = options.input_shapes(args)
    if args.framework == "keras":
        shape = next(iter(shapes.values()))[1:] if len(shapes) == 1 else None
        return export_keras(model, target, opset=args.opset,
                            keep_batchnorm=not args.fold_in_exporter, nchw=args.nchw,
                            input_shape=shape)
    if example is None:
        if len(shapes) != 1:
            raise FuserError("torch export needs the example input's shape: "
                             "--input-shape input:1x3x224x224")
        example = next(iter(shapes.values()))
    return export_torch(model, example, target, opset=args.opset,
                        dynamic_batch=not args.static_batch,
                        keep_batchnorm=not args.fold_in_exporter)


def _as_dict(result: ExportResult, target: Path, passed: bool) -> dict[str, Any]:
    """What ``--json`` prints: the export's figures (the model itself is in the file)."""
    return {"output": str(target), "framework": result.framework, "exporter": result.exporter,
            "nodes": len(result.model.graph.node), "batchnorm_layers": result.batchnorm_layers,
            "batchnorm_nodes": result.batchnorm_nodes, "max_abs_diff": result.max_abs_diff,
            "output_scale": result.output_scale, "notes": list(result.notes),
            "passed": passed}

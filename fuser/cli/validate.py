"""``onnx-fuser validate A B``: compare two models' outputs on onnxruntime."""

from __future__ import annotations

import argparse
import time

from fuser import ir as graph_io
from fuser.cli import options
from fuser.runtime import validate as validation

RUNS_MODELS = True


def add_arguments(val: argparse.ArgumentParser) -> None:
    """The arguments of ``onnx-fuser validate``."""
    val.add_argument("reference", help="the original model")
    val.add_argument("candidate", help="the model to check against it")
    options.add_inputs(val)
    options.add_tolerances(val)
    options.add_output(val)
    val.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    options.report_kind(args)  # a bad --report fails before the work
    reference, candidate = graph_io.load(args.reference), graph_io.load(args.candidate)
    started = time.perf_counter()
    shapes = options.resolve_shapes(args, reference, args.batch)
    settings = options.validation_settings(args)
    result = validation.validate(reference, candidate, inputs=settings.inputs,
                                 input_shapes=shapes, batch=settings.batch,
                                 count=settings.count, seed=settings.seed, atol=settings.atol,
                                 rtol=settings.rtol, labels=(args.reference, args.candidate))
    out = options.human(args)
    print(result.to_text(), file=out)
    options.emit(args, result.to_dict(), out,
                 options.report_file(args, result.to_dict(), result.to_markdown()))
    elapsed = time.perf_counter() - started
    if result.passed:
        worst = max((o.max_abs for o in result.outputs), default=0.0)
        print(f"PASSED | {elapsed:.2f}s | {len(result.outputs)} output(s), max abs diff "
              f"{worst:.2e}", file=out)
        return 0
    print(f"FAILED | {elapsed:.2f}s | {'; '.join(result.failures)}", file=out)
    return 1

"""The Python API: ``optimize`` a model with a pipeline of passes, validate the result, and
find the culprit when it does not validate.

The phases live in ``fuser.pipeline``; ``validate`` and ``benchmark`` are
``fuser.runtime.validate.validate`` and ``fuser.runtime.bench.benchmark``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import onnx

from fuser import ir as graph_io
from fuser import pipeline as phases
from fuser.about import library_versions, version
from fuser.errors import FuserError
from fuser.passes.base import Pass
from fuser.report import Report
from fuser.runtime.bench import benchmark
from fuser.runtime.validate import validate
from fuser.settings import LowRank, Timing, Validation

#: The lossy stage's settings under the name that covers int8 too.
Lossy = LowRank

__all__ = ["ON_FAILURE", "Lossy", "LowRank", "Timing", "Validation", "benchmark",
           "library_versions", "optimize", "validate", "version"]

ON_FAILURE = ("bisect", "rollback", "none")


def optimize(  # noqa: PLR0913  (the public API: keyword settings)
        model: graph_io.ModelLike, passes: Sequence[str | Pass] | None = None, *,
             skip: Sequence[str] = (), options: Mapping[str, Mapping[str, object]] | None = None,
             max_steps: int = 4, check: bool = True, check_each: bool = False,
             dump_dir: str | Path | None = None, validate: bool | Validation = True,
             on_failure: str = "bisect", lossy: LowRank | None = None,
             input_shapes: Mapping[str, Sequence[int]] | None = None,
             static_shapes: bool = False,
             timing: Timing | None = None) -> tuple[onnx.ModelProto, Report]:
    """Run a pipeline of passes on a model; return the optimized model and a report.

    Args:
        model: an ``onnx.ModelProto`` or a path (it is never modified).
        passes: pass names or instances, in order; default: the exact pipeline.
        skip: names to leave out of the pipeline.
        options: per-pass keyword options, e.g. ``{"fold-batchnorm": {"clone_shared": False}}``.
        max_steps: sweeps of the pipeline at most (it stops at the fixed point).
        check: run the ONNX checker on the result.
        check_each: run it after every pass (slower; names the pass that broke the graph).
        dump_dir: write the model after every pass that changed it.
        validate: compare the result with the original on onnxruntime (``True`` uses the
            defaults of ``Validation``; ``False`` skips it). When onnxruntime cannot run the
            original itself (a custom-domain op, a type its CPU lacks), validation is skipped
            and ``report.notes`` says so: ``report.validation`` is then ``None``.
        on_failure: when validation fails, ``"bisect"`` names the culprit pass in the report,
            ``"rollback"`` also re-runs without it (and any further culprit) and returns that
            model, ``"none"`` does neither. Check ``report.passed``.
        lossy: after the exact pipeline (validated with exact tolerances), compress with
            low-rank rewrites chosen from calibration data; the report's ``lowrank`` holds
            the per-layer table and the task-level check (top-1 agreement), never exact
            tolerances.
        input_shapes: fixed shapes of (some of) the inputs, ``{"x": (1, 1024)}``: the shapes
            that statistics (MACs), low-rank and validation see. The output keeps the input's
            interface (its symbolic dims stay symbolic; constant folding folds no value that
            depends on them, and the report names what only fixed shapes would fold).
        static_shapes: write the fixed shapes into the output (every input's symbolic first
            dim is the validation batch unless ``input_shapes`` says otherwise), so that
            folding sees through everything that depends on them, as onnxsim's
            ``--overwrite-input-shape`` does; the output then runs at those shapes only.
        timing: time the result against the original on onnxruntime (``Timing``: levels,
            batch sizes, provider; ``report.timings``) and check it: when the result is
            slower at the deploy level (``all``), the passes that cost the time are found by
            bisection and rolled back unless ``Timing.allow_slower`` (``report.speed``).
            None (the default here; the CLI times unless ``--no-bench``): not timed, and
            ``report.notes`` says so.

    Raises:
        FuserError: bad input (unreadable model, unknown pass name, dynamic input dims, ...).
        PassError: a pass failed or produced an invalid graph.
    """
    if on_failure not in ON_FAILURE:
        raise FuserError(f"on_failure must be one of {', '.join(ON_FAILURE)}")
    settings = validate if isinstance(validate, Validation) else Validation()
    return phases.run(model, phases.Config(
        passes, skip, options or {}, max_steps, check, check_each, dump_dir,
        settings if validate else None, on_failure, lossy, input_shapes, static_shapes,
        timing))

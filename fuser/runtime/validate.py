"""Numeric validation: does the candidate model compute what the reference computes?

Both models run on onnxruntime's CPU provider with ``ORT_DISABLE_ALL`` (at higher levels
onnxruntime folds BatchNormalization itself and would hide a wrong fold; a model of many
thousand nodes in consecutive pieces, ``fuser.runtime.pieces``), on several seeded
random batches or on real inputs. Per output it reports max abs, max rel, mean abs, relative
L2 error, cosine similarity and NaN/inf counts, and, for class scores (last axis > 1), top-1
and top-5 agreement.

An output passes when shapes match, the candidate has no NaN/inf where the reference has
none, and ``max |candidate - reference| <= atol + rtol * max |reference|`` (finite elements;
positions that are NaN in both are ignored). The tolerance scales with the output's range,
not element by element: folding re-associates float sums, so an element near zero may move
by a few ulps of the output's scale. For models computing in float16 or bfloat16 the
relative tolerance is at least ``FLOOR_ULPS`` ulps of that type (see ``rtol_floor``). The
per-output figures and verdict are computed in ``fuser.runtime.comparison``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence

import numpy as np
import onnx

from fuser import ir as graph_io
from fuser.errors import FuserError
from fuser.report.validation import ValidationResult
from fuser.runtime import inputs as inputs_io
from fuser.runtime import pieces
from fuser.runtime import sessions as runtime
from fuser.runtime.comparison import OutputComparison, compare

#: Defaults for exact pipelines (float32): relative to the output's largest magnitude.
EXACT_RTOL = 1e-4
EXACT_ATOL = 1e-5


Tolerance = float | Mapping[str, float]


def parse_tolerances(values: Sequence[str], default: float) -> dict[str, float]:
    """``["1e-3", "logits:1e-2"]`` -> ``{"": 1e-3, "logits": 1e-2}`` ("" is every output)."""
    result = {"": default}
    for value in values:
        name, _, number = value.rpartition(":")
        try:
            result[name] = float(number)
        except ValueError:
            raise FuserError(f"tolerance {value!r}: expected a number or NAME:number") from None
        _require_usable(result[name], f"tolerance {value!r}")
    return result


def _require_usable(value: float, what: str) -> None:
    """A tolerance is a finite number of at least 0: NaN compares false and would pass any
    difference; a negative one fails every output."""
    if not math.isfinite(value) or value < 0:
        raise FuserError(f"{what}: a tolerance must be a finite number of at least 0, "
                         f"got {value}")


def check_tolerance_names(atol: Tolerance, rtol: Tolerance, outputs: Sequence[str]) -> None:
    """Refuse a tolerance that is not a finite number of at least 0, and a per-output
    tolerance for an output the model does not have."""
    for flag, tolerance in (("atol", atol), ("rtol", rtol)):
        values = tolerance.items() if isinstance(tolerance, Mapping) else [("", tolerance)]
        for name, value in values:
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise FuserError(f"{flag} {name + ':' if name else ''}{value!r}: expected a "
                                 "number") from None
            _require_usable(number, f"{flag} {name + ':' if name else ''}{value}")
        for name in tolerance if isinstance(tolerance, Mapping) else ():
            if name and name not in outputs:
                raise FuserError(f"--{flag} {name}:{tolerance[name]:g}: the model has no output "
                                 f"'{name}' (its outputs: {', '.join(outputs)})")


def _tolerance(tolerance: Tolerance, name: str) -> float:
    if isinstance(tolerance, Mapping):
        return float(tolerance.get(name, tolerance.get("", 0.0)))
    return float(tolerance)


@dataclasses.dataclass
class ReferenceOutputs:
    """What the reference computed on a list of batches (see ``reference_outputs``)."""

    names: list[str]
    values: dict[str, list[np.ndarray]]  # one array per batch
    rtol_floor: float


def reference_outputs(reference: graph_io.ModelLike, batches: Sequence[Mapping[str, np.ndarray]],
                      label: str | None = None) -> ReferenceOutputs:
    """Run the reference on ``batches`` (onnxruntime CPU, optimizations off) and keep its
    outputs, so that its session and, if the caller likes, the model itself can go before
    a candidate is run. onnxruntime refusing the model raises ``RuntimeRefusedError``
    naming ``label`` (default: the path, or "the reference model")."""
    model = graph_io.load(reference)
    names = [o.name for o in model.graph.output]
    values = pieces.run(model, names, batches,
                        label=label or _label(reference) or "the reference model")
    return ReferenceOutputs(names, values, rtol_floor(model))


def validate(  # noqa: PLR0913  (the public API: keyword settings)
        reference: graph_io.ModelLike | ReferenceOutputs,
             candidate: graph_io.ModelLike, *,
             batches: Sequence[Mapping[str, np.ndarray]] | None = None,
             inputs: str | None = None, input_shapes: Mapping[str, Sequence[int]] | None = None,
             batch: int = 1, count: int = 3, seed: int = 0,
             atol: Tolerance = EXACT_ATOL, rtol: Tolerance = EXACT_RTOL,
             labels: tuple[str | None, str | None] = (None, None)) -> ValidationResult:
    """Compare two models output by output on onnxruntime (CPU, optimizations off).

    Inputs, in order of precedence: ``batches`` (feed dicts), ``inputs`` (a ``.npz``,
    ``name=file.npy`` list or image folder), else ``count`` seeded random batches with
    shapes from ``input_shapes`` (a symbolic first dimension takes ``batch``). A
    ``reference`` already run (``ReferenceOutputs``) needs the same ``batches``.

    ``labels`` name the two models in messages (paths name themselves): onnxruntime refusing
    a labelled (user-given) model raises ``RuntimeRefusedError``.
    """
    cand_model = graph_io.load(candidate)  # a bad file fails before any session is made
    ref_label = labels[0] or (None if isinstance(reference, ReferenceOutputs) else
                              _label(reference)) or "the reference model"
    cand_label = labels[1] or _label(candidate)
    if isinstance(reference, ReferenceOutputs):
        if batches is None:
            raise ValueError("a reference already run needs the batches it ran on")
        source = "given inputs"
    else:
        # onnxruntime refusing a model the user gave is bad input (labels); one session at a
        # time: a session holds about twice the model's weights.
        ref_model = graph_io.load(reference)
        batches, source = _inputs(ref_model, batches, inputs, input_shapes, batch, count, seed)
        check_tolerance_names(atol, rtol, [o.name for o in ref_model.graph.output])
        for feeds in batches:  # one line naming the input, not onnxruntime's traceback
            inputs_io.require_matching_inputs(ref_model, feeds, ref_label)
            inputs_io.require_matching_inputs(cand_model, feeds, cand_label or "the candidate",
                                              ref_model, ref_label)
        reference = reference_outputs(ref_model, batches, ref_label)
    check_tolerance_names(atol, rtol, reference.names)
    samples = sum(next(iter(b.values())).shape[0] if b and next(iter(b.values())).ndim else 1
                  for b in batches)
    try:
        cand_names, got = _run_candidate(cand_model, cand_label, reference.names, batches)
    except Exception as exc:
        # A model fuser made that onnxruntime cannot run is a failed validation (the culprit
        # search then names the pass), not a crash; a user's model keeps its own error.
        if cand_label is not None or not type(exc).__module__.startswith("onnxruntime"):
            raise
        reason = next((ln for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)
        return ValidationResult(False, [], len(batches), samples, source,
                                error=f"onnxruntime cannot run the result ({reason.strip()})")
    outputs = []
    for name in reference.names:
        if name not in cand_names:
            outputs.append(_missing(name, atol, rtol))
            continue
        outputs.append(compare(name, reference.values[name], got[name],
                               _tolerance(atol, name),
                               max(_tolerance(rtol, name), reference.rtol_floor)))
    return ValidationResult(passed=all(o.passed for o in outputs), outputs=outputs,
                            batches=len(batches), samples=samples, inputs=source)


def _inputs(model: onnx.ModelProto, batches: Sequence[Mapping[str, np.ndarray]] | None,
            inputs: str | None, input_shapes: Mapping[str, Sequence[int]] | None, batch: int,
            count: int, seed: int) -> tuple[Sequence[Mapping[str, np.ndarray]], str]:
    """The batches to compare on and where they came from (see ``validate``)."""
    if batches is not None:
        return batches, "given inputs"
    shapes = inputs_io.resolve_shapes(model, input_shapes, batch)
    if inputs is not None:
        return inputs_io.load_batches(inputs, model, shapes), str(inputs)
    return (inputs_io.random_batches(model, shapes, count, seed),
            f"random inputs (seed {seed}, {inputs_io.describe_shapes(shapes)})")


def _run_candidate(model: onnx.ModelProto, label: str | None, names: list[str],
                   batches: Sequence[Mapping[str, np.ndarray]]
                   ) -> tuple[set[str], dict[str, list[np.ndarray]]]:
    """The candidate's output names and its values of ``names`` on ``batches``."""
    declared = {o.name for o in model.graph.output}
    present = [n for n in names if n in declared]
    if not present:  # still loaded: a model onnxruntime refuses fails validation
        runtime.session(model, label=label)
        return declared, {}
    return declared, pieces.run(model, present, batches, label=label)


#: The relative tolerance is never below this many ulps of the least precise float type the
#: reference computes in: rounding folded float16 weights moves outputs by ~0.5 ulp per layer.
FLOOR_ULPS = 8
_COARSE_FLOATS = {onnx.TensorProto.FLOAT16: 2.0**-10, onnx.TensorProto.BFLOAT16: 2.0**-7}


def rtol_floor(model: onnx.ModelProto) -> float:
    """``FLOOR_ULPS`` ulps (machine epsilons) of the coarsest float16/bfloat16 type the model
    holds (inputs, outputs, value infos, initializers, Cast targets); 0 for float32 models."""
    graph = model.graph
    types = {v.type.tensor_type.elem_type for v in [*graph.input, *graph.output,
                                                    *graph.value_info]}
    types.update(t.data_type for t in graph.initializer)
    types.update(a.i for n in graph.node if n.op_type == "Cast" for a in n.attribute
                 if a.name == "to")
    return FLOOR_ULPS * max((_COARSE_FLOATS[t] for t in types if t in _COARSE_FLOATS),
                            default=0.0)


def _label(model: graph_io.ModelLike) -> str | None:
    return None if isinstance(model, onnx.ModelProto) else str(model)


def _missing(name: str, atol: Tolerance, rtol: Tolerance) -> OutputComparison:
    nan = float("nan")
    return OutputComparison(name, [], nan, nan, nan, nan, nan, 0, 0, 0, 0,
                            _tolerance(atol, name), _tolerance(rtol, name), False,
                            f"output '{name}' is missing from the candidate")

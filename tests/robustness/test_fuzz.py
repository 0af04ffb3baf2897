"""Fuzzing: the default pipeline on random graphs (strategy: ``tests/robustness/graphs.py``).

For every drawn model, ``fuser.optimize`` with ``check_each=True`` must not raise, must pass
its own validation (one seeded batch), must leave its input unchanged, and must return a model
that passes ``onnx.checker`` with strict shape inference, keeps the graph outputs (names and
order), has no more nodes than the original, has folded every BatchNormalization that directly
follows a Conv/ConvTranspose/Gemm read by it alone, every zero spatial Pad read only by a Conv,
every Constant node and every Identity/Dropout that is not a graph output, and is a fixed
point (a second run rewrites nothing). Independently of fuser's validation, on seeded inputs
both models give the same outputs on onnxruntime with graph optimizations off (one thread)
within the exact pipeline's default tolerance: ``max |got - want| <= 1e-5 + 1e-4 * max |want|``
per output (float32, relative to the output's scale; ``fuser.runtime.validate.compare``).

Profiles (hypothesis settings): ``ci`` (the default) runs 300 derandomized examples of graphs
of up to 10 steps, the same examples on every run; ``slow`` runs 5,000 fresh random examples
of up to 16 steps. Run the slow one locally with either of

    .venv/bin/python -m pytest -q -p no:cacheprovider tests/robustness/test_fuzz.py --slow
    FUSER_FUZZ_PROFILE=slow .venv/bin/python -m pytest -q tests/robustness/test_fuzz.py

and ``FUSER_FUZZ_EXAMPLES=20000`` to change the example count of either profile. A failure
prints the drawn ``Case`` (seed and steps) and a ``@reproduce_failure`` blob; every failure
found so far is a named test in ``test_fuzz_regressions.py``.

A second property (strategy: ``graphs.unusable``): a call on a drawn model with a 0 in an
input's shape, a batch of 0, or a NaN, infinite or negative tolerance is refused before any
work. The API raises a ``FuserError`` saying what is wrong and leaves the model unchanged; the
CLI (optimize, validate, bench) exits 2 with one line on stderr saying it, no traceback, and
no file written. Each kind of argument through each interface: ``ci`` 50 derandomized
examples of models of up to 3 steps, ``slow`` 200 fresh ones.
"""

from __future__ import annotations

import collections
import hashlib
import os
import pathlib
import tempfile

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings

import fuser
from fuser.cli import main
from fuser.errors import FuserError
from fuser.runtime import sessions as runtime
from fuser.runtime import validate as validation
from tests.helpers import check
from tests.robustness.graphs import INTERFACES, KINDS, Case, Request, models, unusable

_COMMON = {"deadline": None, "database": None, "print_blob": True,
           "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.filter_too_much]}
settings.register_profile("fuzz-ci", max_examples=300, derandomize=True, **_COMMON)
settings.register_profile("fuzz-slow", max_examples=5000, **_COMMON)

PROFILE = os.environ.get("FUSER_FUZZ_PROFILE", "ci")
if PROFILE not in ("ci", "slow"):
    raise ValueError(f"FUSER_FUZZ_PROFILE must be ci or slow, not {PROFILE!r}")
SETTINGS = settings(settings.get_profile(f"fuzz-{PROFILE}"),
                    **({"max_examples": int(os.environ["FUSER_FUZZ_EXAMPLES"])}
                       if os.environ.get("FUSER_FUZZ_EXAMPLES") else {}))
MAX_STEPS = 16 if PROFILE == "slow" else 10
#: Refusals come before any work: many examples cost little (a model drawn and saved each).
REFUSALS = settings(settings.get_profile(f"fuzz-{PROFILE}"),
                    max_examples=200 if PROFILE == "slow" else 50)

FOLDED_INTO = ("Conv", "ConvTranspose", "Gemm")
AFFINE = ("Mul", "Add", "Sub", "Div")


def _constants(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    values = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant":
            value = onnx.helper.get_attribute_value(node.attribute[0])
            values[node.output[0]] = onnx.numpy_helper.to_array(value) \
                if isinstance(value, onnx.TensorProto) else np.array(value)
    return values


def must_vanish(model: onnx.ModelProto) -> dict[str, str]:
    """Output tensor -> reason, for the nodes the pipeline must remove: a BatchNormalization or
    a per-channel Mul/Add/Sub/Div by a constant right after a Conv/ConvTranspose/Gemm whose
    output only it reads (not a graph output), all parameters constant; a zero Pad of spatial
    axes whose output only a Conv's data input reads."""
    graph = model.graph
    producer = {o: n for n in graph.node for o in n.output}
    readers = collections.defaultdict(list)
    for node in graph.node:
        for i in node.input:
            readers[i].append(node)
    outputs = {o.name for o in graph.output}
    constants = _constants(model)
    expected = {}
    for node in graph.node:
        if node.op_type == "Pad" and _zero_spatial_pad(node, constants):
            reader = readers[node.output[0]][0] if len(readers[node.output[0]]) == 1 else None
            if reader is not None and reader.op_type == "Conv" and \
                    reader.input[0] == node.output[0] and node.output[0] not in outputs \
                    and _attr(reader, "auto_pad", b"NOTSET") in (b"NOTSET", b"VALID"):
                expected[node.output[0]] = "zero Pad before Conv"
        variable = [t for t in node.input if t not in constants]
        if node.op_type not in ("BatchNormalization", *AFFINE) or len(variable) != 1:
            continue
        x = variable[0]
        source = producer.get(x)
        if source is None or source.op_type not in FOLDED_INTO or len(readers[x]) != 1 \
                or x in outputs or not all(t in constants for t in source.input[1:] if t):
            continue
        if node.op_type == "BatchNormalization" and node.input[0] == x:
            expected[node.output[0]] = f"BatchNormalization after {source.op_type}"
        elif node.op_type in AFFINE and (node.op_type != "Div" or node.input[0] == x) \
                and _per_channel(constants[node.input[node.input[0] == x]], source, constants):
            expected[node.output[0]] = f"per-channel {node.op_type} after {source.op_type}"
    return expected


def _per_channel(c: np.ndarray, linear: onnx.NodeProto, constants: dict) -> bool:
    """``c`` broadcasts along the output channels of ``linear`` only, without adding dims."""
    w = constants[linear.input[1]]
    if linear.op_type == "Gemm":
        rank, channels = 2, w.shape[0] if _attr(linear, "transB", 0) else w.shape[1]
    else:
        rank = w.ndim
        channels = w.shape[0] if linear.op_type == "Conv" else w.shape[1] * _attr(
            linear, "group", 1)
    if c.ndim > rank:
        return False
    trailing = c.shape[max(c.ndim - rank + 1, 0):]  # from the channel axis on
    return c.size == 1 or (all(d == 1 for d in c.shape[:c.ndim - len(trailing)])
                           and tuple(trailing) == (channels,) + (1,) * (rank - 2))


def _attr(node: onnx.NodeProto, name: str, default: object) -> object:
    for attr in node.attribute:
        if attr.name == name:
            return onnx.helper.get_attribute_value(attr)
    return default


def _zero_spatial_pad(pad: onnx.NodeProto, constants: dict[str, np.ndarray]) -> bool:
    if _attr(pad, "mode", b"constant") != b"constant":
        return False
    if len(pad.input) > 1:
        pads = constants[pad.input[1]]
        value = constants[pad.input[2]] if len(pad.input) > 2 and pad.input[2] else 0.0
    else:  # opset < 11: attributes
        pads, value = np.array(_attr(pad, "pads", [])), _attr(pad, "value", 0.0)
    rank = len(pads) // 2
    return bool(np.all(pads >= 0) and not np.any(pads[[0, 1, rank, rank + 1]])
                and float(value) == 0.0)


def _outputs(model: onnx.ModelProto, feeds: dict) -> dict[str, np.ndarray]:
    sess = runtime.session(model, threads=1)
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, feeds), strict=True))


def assert_pipeline_keeps(case: Case) -> None:
    """Every property of the module docstring, for one model."""
    model = case.model
    before = model.SerializeToString()
    optimized, report = fuser.optimize(
        model, check_each=True, validate=fuser.Validation(count=1, batch=2, seed=case.seed))
    notes = "\n".join(note for r in report.passes for note in r.notes)
    assert report.passed and not report.culprits, report.validation.failures
    assert model.SerializeToString() == before, "optimize modified its input"
    check(optimized)
    assert [o.name for o in optimized.graph.output] == [o.name for o in model.graph.output]

    assert len(optimized.graph.node) <= len(model.graph.node), notes
    left = {n.output[0] for n in optimized.graph.node
            if n.op_type in ("BatchNormalization", "Pad", *AFFINE)}
    missed = {name: why for name, why in must_vanish(model).items() if name in left}
    assert not missed, f"not folded: {missed}\n{notes}"
    ops = collections.Counter(n.op_type for n in optimized.graph.node)
    outputs = {o.name for o in model.graph.output}
    copies = sum(n.op_type in ("Identity", "Dropout") and n.output[0] in outputs
                 for n in model.graph.node)
    assert ops["Constant"] == 0 and ops["Identity"] + ops["Dropout"] <= copies, ops
    _, again = fuser.optimize(optimized, validate=False, check=False)
    assert again.rewrites() == 0, [n for r in again.passes for n in r.notes]

    rng = np.random.default_rng(case.seed)
    feeds = runtime.random_feeds(model, rng, dynamic=2)
    want, got = _outputs(model, feeds), _outputs(optimized, feeds)
    for name, reference in want.items():
        verdict = validation.compare(name, [reference], [got[name]], validation.EXACT_ATOL,
                                     validation.EXACT_RTOL)
        assert verdict.passed, f"{verdict.message}\n{notes}"


@given(case=models(max_steps=MAX_STEPS))
@SETTINGS
def test_default_pipeline_on_random_graphs(case: Case) -> None:
    assert_pipeline_keeps(case)


def _digests(folder: pathlib.Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}


def assert_refused(request: Request, capsys) -> None:
    """The second property of the module docstring, for one call."""
    model = request.case.model
    before = model.SerializeToString()
    if request.interface == "api":
        kwargs = dict(request.kwargs)
        if "validation" in kwargs:
            kwargs["validate"] = fuser.Validation(**kwargs.pop("validation"))
        with pytest.raises(FuserError) as refusal:
            if request.command == "optimize":
                fuser.optimize(model, **kwargs)
            else:
                fuser.validate(model, model, **kwargs)
        assert request.message in str(refusal.value)
        assert "\n" not in str(refusal.value)
        assert model.SerializeToString() == before, "the refused call modified its input"
        return
    with tempfile.TemporaryDirectory() as name:
        folder = pathlib.Path(name)
        path = str(folder / "a.onnx")
        onnx.save(model, path)
        files = _digests(folder)
        models = {"optimize": [path, "-o", str(folder / "o.onnx")], "validate": [path, path],
                  "bench": [path]}[request.command]
        capsys.readouterr()  # what an earlier example left
        code = main([request.command, *models, *request.args])
        err = capsys.readouterr().err.strip()
        assert code == 2, err
        assert len(err.splitlines()) == 1 and "Traceback" not in err, err
        assert request.message in err, err
        assert _digests(folder) == files, "a refused command wrote or changed a file"


@pytest.mark.parametrize("interface", INTERFACES)
@pytest.mark.parametrize("kind", KINDS)
def test_zero_dims_and_unusable_tolerances_are_refused(kind: str, interface: str, capsys) -> None:
    @given(request=unusable(kind, interface))
    @REFUSALS
    def refused(request: Request) -> None:
        assert_refused(request, capsys)

    refused()

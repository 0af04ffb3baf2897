"""Hypothesis strategy: random ONNX graphs made of the ops the default pipeline rewrites.

``models()`` draws a ``Case``: a float32 model built with ``onnx.helper`` from a chain of steps
(Conv, ConvTranspose, Gemm, MatMul[+Add], BatchNormalization, Relu, Mul/Add/Sub/Div by
constants of any broadcastable shape, one that broadcasts a size-1 dimension of the value
included, Add/Mul of two values, Concat, Transpose, Reshape, Flatten, Identity, Dropout,
Pad), each step reading the last value or, sometimes, an earlier
one (a value consumed twice). Every value nothing reads is a graph output, and a few
intermediate values are too. Geometry (channels, groups, kernels, strides, pads, dilations,
``auto_pad``, bias on/off, shared weights, weights in Constant nodes, opset, symbolic batch) is
drawn by hypothesis, so failures shrink to small graphs; weight values come from
``np.random.default_rng(seed)`` with a drawn seed, scaled to keep activations near 1.

The pieces: ``builder.py`` (constants, nodes, choices), ``steps.py`` (one method per op
pattern), this module (which step when, and the model). Shapes are tracked by the steps and
declared on the graph outputs (and, in half the models, on every intermediate value), so the
checker's strict shape inference on the built model also checks them. Every choice shrinks
towards the simpler option (choice 0, ``maybe`` false).

``unusable()`` draws a ``Request``: such a model with one argument that must be refused, as
the API or the CLI takes it: a 0 (the API: or a negative size) in one input's shape, a batch
of 0, or a NaN, infinite or negative atol/rtol (for every output or one, in any spelling
Python's ``float`` reads, beside usable ones).
"""

from __future__ import annotations

import dataclasses
import math

import onnx
from hypothesis import strategies as st
from onnx import TensorProto, helper

from tests.robustness.builder import BATCH, IR_VERSIONS, MAX_ELEMENTS, Value, numel
from tests.robustness.steps import Steps


@dataclasses.dataclass
class Case:
    """A drawn model and the steps that built it (shown when an example fails)."""

    model: onnx.ModelProto
    seed: int
    steps: list[str]

    def __repr__(self) -> str:
        opset = self.model.opset_import[0].version
        inputs = [(i.name, [d.dim_value or d.dim_param for d in i.type.tensor_type.shape.dim])
                  for i in self.model.graph.input]
        outputs = [o.name for o in self.model.graph.output]
        lines = "\n    ".join(self.steps)
        return (f"Case(seed={self.seed}, opset={opset}, inputs={inputs}, outputs={outputs},\n"
                f"    {lines})")




#: Steps by input rank, the ones the passes rewrite listed twice (drawn twice as often).
SPATIAL_STEPS = ("conv", "batchnorm", "conv", "batchnorm", "relu", "affine", "affine",
                 "conv_transpose", "pad", "binary", "identity", "dropout", "concat", "transpose",
                 "reshape", "flatten", "matmul")
DENSE_STEPS = ("gemm", "batchnorm", "gemm", "batchnorm", "matmul", "relu", "affine", "affine",
               "binary", "identity", "dropout", "concat", "reshape", "transpose")
GROWING = {"conv_transpose", "concat", "pad"}


def _step(builder: Steps, x: Value) -> Value:
    rank = len(x.shape)
    options = SPATIAL_STEPS if rank >= 3 else DENSE_STEPS
    if numel(x.shape) > MAX_ELEMENTS:
        options = tuple(o for o in options if o not in GROWING)
    name = builder.choice(options)
    y = getattr(builder, name)(x)
    # the patterns the pipeline exists for, drawn more often: BN or a per-channel affine op
    # after a linear node, and before a Conv
    if name in ("conv", "conv_transpose", "gemm", "matmul"):
        if builder.maybe(35):
            y = builder.batchnorm(y)
        elif builder.maybe(25):
            y = builder.affine(y, "last" if name == "matmul" else "channel")
    elif name in ("batchnorm", "affine") and len(y.shape) >= 3 and builder.maybe(25):
        y = builder.conv(y)
    return y


@st.composite
def models(draw, max_steps: int = 8) -> Case:
    """A random valid float32 model (see the module docstring)."""
    seed = draw(st.integers(0, 2**32 - 1))
    opset = draw(st.sampled_from(list(IR_VERSIONS)))
    builder = Steps(draw, seed, opset)
    spatial_rank = draw(st.sampled_from([2, 1, 0, 3]))
    batch = BATCH if builder.maybe(30) else builder.integer(1, 2)
    channels = builder.integer(1, 6) if spatial_rank else builder.integer(1, 12)
    size = 4 if spatial_rank == 3 else 7
    shape = (batch, channels, *(builder.integer(3, size) for _ in range(spatial_rank)))
    x = Value("x", shape)
    builder.values.append(x)
    for _ in range(draw(st.sampled_from(range(1, max_steps + 1)))):  # uniform, not small-biased
        back = builder.integer(1, len(builder.values)) if builder.maybe(30) else 1
        x = _step(builder, builder.values[-back])
    outputs = [v for v in builder.values[1:] if v.name not in builder.consumed]
    for _ in range(builder.integer(0, 2)):
        extra = builder.values[builder.integer(1, len(builder.values) - 1)]
        if extra not in outputs and builder.maybe(50):
            outputs.append(extra)
    graph = helper.make_graph(
        builder.nodes, "fuzz", [_info(v) for v in [builder.values[0], *builder.inputs]],
        [_info(v) for v in outputs],
        initializer=builder.initializers)
    if builder.maybe(50):  # exporters declare the intermediate shapes too; rewrites must
        graph.value_info.extend(  # keep them true
            _info(v) for v in builder.values[1:] if v not in outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              ir_version=IR_VERSIONS[opset], producer_name="fuzz")
    onnx.checker.check_model(model, full_check=True)  # also checks the shapes tracked here
    return Case(model, seed, builder.steps)


def _info(value: Value) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(value.name, TensorProto.FLOAT, list(value.shape))


#: Tolerances no comparison can use, as the CLI reads them (NaN compares false and passes any
#: difference, an infinite one passes any, a negative one fails all): ``float`` of each is NaN
#: or infinite ("1e400" overflows).
UNUSABLE_TEXT = ("nan", "NaN", "-nan", "inf", "+inf", "-inf", "Infinity", "-INFINITY", "1e400")
TOLERANCE = "a tolerance must be a finite number of at least 0"
NEGATIVE = st.floats(max_value=-math.ulp(0.0), allow_nan=False)  # -0.0 is a usable 0
EMPTY = "must be at least 1 in every dimension"


@dataclasses.dataclass
class Request:
    """A call on ``case.model`` with one unusable argument: ``kwargs`` for the API's
    ``command`` (optimize, validate), ``args`` after the model path(s) for the CLI's (also
    bench), and what the one-line refusal says."""

    case: Case
    interface: str  # "api" or "cli"
    command: str
    kwargs: dict
    args: list[str]
    message: str


#: What ``unusable`` makes wrong, and how ("declared": a 0 in the model's own input shape).
KINDS, INTERFACES = ("shape", "tolerance", "batch", "declared"), ("api", "cli")


@st.composite
def unusable(draw, kind: str, interface: str, max_steps: int = 3) -> Request:
    """A drawn model and a call on it through ``interface`` with an unusable ``kind`` of
    argument, which must be refused (see the module docstring)."""
    case = draw(models(max_steps=max_steps))
    commands = ["optimize", "validate"] + (["bench"] if interface == "cli" and kind != "tolerance"
                                           else [])
    command = draw(st.sampled_from(commands))
    request = Request(case, interface, command, {}, [], "")
    {"shape": _empty_shape, "tolerance": _unusable_tolerance, "batch": _no_batch,
     "declared": _declared_empty}[kind](draw, request)
    return request


def _declared_empty(draw, request: Request) -> None:
    """The model itself declares a 0 in some dimensions of one input (a symbolic batch
    included); the call has no other argument. The refusal's wording is not prescribed: the
    checker may see a contradiction first (an intermediate shape declared with 1 there),
    else the input's 0 is named (``runtime.inputs.resolve_shapes``)."""
    model = onnx.ModelProto()
    model.CopyFrom(request.case.model)
    inputs = list(model.graph.input)
    dims = (draw(st.sampled_from(inputs)) if draw(st.booleans()) else inputs[0]) \
        .type.tensor_type.shape.dim
    for axis in draw(st.lists(st.integers(0, len(dims) - 1), min_size=1, unique=True)):
        dims[axis].ClearField("dim_param")
        dims[axis].dim_value = 0
    request.case = dataclasses.replace(request.case, model=model)


def _empty_shape(draw, request: Request) -> None:
    """One input's shape with a 0 in some dimensions (the API: or a negative size)."""
    inputs = list(request.case.model.graph.input)
    chosen = draw(st.sampled_from(inputs)) if draw(st.booleans()) else inputs[0]
    shapes = {}
    for spec in [i for i in inputs if i is not chosen and draw(st.booleans())] + [chosen]:
        shapes[spec.name] = [d.dim_value if d.HasField("dim_value") else
                             draw(st.integers(1, 3)) for d in spec.type.tensor_type.shape.dim]
    shape = shapes[chosen.name]
    bad = draw(st.lists(st.integers(0, len(shape) - 1), min_size=1, unique=True))
    sizes = [0, -1, -7] if request.interface == "api" else [0]
    for axis in bad:
        shape[axis] = draw(st.sampled_from(sizes))
    request.message = f"input shape of '{chosen.name}' {tuple(shape)}: {EMPTY}"
    if request.interface == "cli":
        request.args = [a for name, dims in shapes.items() for a in (
            "--input-shape", f"{name}:{'x'.join(map(str, dims))}")]
    elif request.command == "optimize" and draw(st.booleans()):
        request.kwargs["validation"] = {"input_shapes": shapes}  # fuser.Validation(...)
    else:
        request.kwargs["input_shapes"] = shapes


def _unusable_tolerance(draw, request: Request) -> None:
    """atol or rtol NaN, infinite or negative: for every output or one, beside usable ones."""
    flag = draw(st.sampled_from(["atol", "rtol"]))
    outputs = [o.name for o in request.case.model.graph.output]
    named = draw(st.sampled_from(["", *outputs]))
    usable = {name: draw(st.sampled_from([0.0, -0.0, 1e-3, 5.0]))
              for name in draw(st.lists(st.sampled_from(["", *outputs]), unique=True))
              if name != named}
    request.message = TOLERANCE
    if request.interface == "cli":
        text = draw(st.sampled_from(UNUSABLE_TEXT) | NEGATIVE.map(repr))
        values = [f"{n + ':' if n else ''}{v!r}" for n, v in usable.items()]
        values.insert(draw(st.integers(0, len(values))), f"{named + ':' if named else ''}{text}")
        for value in values:  # "--atol -1e-3": argparse takes "-1e-3" for an option
            spelled_apart = not value.startswith("-") and draw(st.booleans())
            request.args += [f"--{flag}", value] if spelled_apart else [f"--{flag}={value}"]
        return
    value = draw(st.sampled_from([math.nan, math.inf, -math.inf]) | NEGATIVE)
    tolerance = value if not named and not usable and draw(st.booleans()) else \
        {**usable, named: value}
    if request.command == "optimize":
        request.kwargs["validation"] = {flag: tolerance}
    else:
        request.kwargs[flag] = tolerance


def _no_batch(draw, request: Request) -> None:
    """A batch of 0 (the API: or negative); bench: 0 among its batch sizes."""
    if request.interface == "api":
        batch = draw(st.sampled_from([0, -1]))
        request.message = f"batch {batch}: {EMPTY}"
        if request.command == "optimize":
            request.kwargs["validation"] = {"batch": batch}
        else:
            request.kwargs["batch"] = batch
    elif request.command == "bench":
        sizes = draw(st.lists(st.integers(0, 2), min_size=1, max_size=3).filter(
            lambda b: 0 in b))
        request.args = ["--batch", ",".join(map(str, sizes))]
        request.message = "batch sizes must be at least 1"
    else:
        request.args = ["--batch", "0"]
        request.message = "argument --batch: 0 must be at least 1"

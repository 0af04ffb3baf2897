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
"""

from __future__ import annotations

import dataclasses

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

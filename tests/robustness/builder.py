"""The graph builder under the fuzz strategy: seeded constants, nodes, tracked shapes.

Every choice goes through ``draw`` (hypothesis), so failures shrink; ``maybe`` shrinks to
False and ``choice`` to the first option. Weight values come from a seeded numpy generator.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import onnx
from hypothesis import strategies as st
from onnx import helper, numpy_helper

#: IR version that goes with each opset drawn (10: Pad and Dropout take attributes, Gemm
#: needs C, Concat no negative axis).
IR_VERSIONS = {13: 7, 17: 8, 21: 10, 10: 5}
BATCH = "N"
MAX_CHANNELS = 8
MAX_ELEMENTS = 1024  # per sample: above it, steps that grow a tensor are not drawn


def numel(shape: tuple) -> int:
    return math.prod(d for d in shape if isinstance(d, int))


def broadcast(a: tuple, b: tuple) -> tuple:
    """numpy broadcasting of two shapes whose dims are ints or the batch symbol."""
    rank = max(len(a), len(b))
    a, b = (1,) * (rank - len(a)) + a, (1,) * (rank - len(b)) + b
    return tuple(y if x == 1 else x for x, y in zip(a, b, strict=True))



@dataclasses.dataclass
class Value:
    name: str
    shape: tuple  # ints, and BATCH for a symbolic batch dimension



class Builder:
    """Appends nodes and weights to a graph under construction; ``draw`` makes each choice."""

    def __init__(self, draw, seed: int, opset: int) -> None:
        self.draw = draw
        self.rng = np.random.default_rng(seed)
        self.opset = opset
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.values: list[Value] = []
        self.consumed: set[str] = set()
        self.steps: list[str] = []
        self.weights: dict[tuple, object] = {}  # shape -> weight name(s), for sharing
        self.inputs: list[Value] = []  # graph inputs besides x (weights fed at run time)
        self.binary_muls = 0
        self._count = 0

    # ------------------------------------------------------------------ choices
    def maybe(self, percent: int) -> bool:
        """True with about ``percent`` % chance; shrinks to False."""
        return self.draw(st.integers(0, 99)) >= 100 - percent

    def choice(self, options):
        return self.draw(st.sampled_from(list(options)))

    def integer(self, low: int, high: int) -> int:
        return self.draw(st.integers(low, max(low, high)))

    # ------------------------------------------------------------------ graph pieces
    def fresh(self, prefix: str) -> str:
        self._count += 1
        return f"{prefix}{self._count}"

    def constant(self, prefix: str, values: np.ndarray, node_percent: int = 15) -> str:
        """A constant as an initializer or (sometimes) a Constant node; returns its name."""
        name = self.fresh(prefix)
        tensor = numpy_helper.from_array(np.array(values), name)  # keeps 0-d arrays 0-d
        if self.maybe(node_percent):
            attrs = {"value": tensor}
            values = np.array(values)
            if self.opset >= 12 and values.ndim <= 1 and values.dtype.kind in "fi" \
                    and self.maybe(50):  # the value_float(s) / value_int(s) spellings
                kind = "float" if values.dtype.kind == "f" else "int"
                attrs = {f"value_{kind}s": values.tolist()} if values.ndim else \
                    {f"value_{kind}": values.item()}
            self.nodes.append(helper.make_node("Constant", [], [name], name=f"{name}_const",
                                               **attrs))
        else:
            self.initializers.append(tensor)
        return name

    def emit(self, op: str, inputs: list[str], shape: tuple, description: str = "",
             extra_outputs: tuple[str, ...] = (), **attrs) -> Value:
        out = self.fresh(f"{op.lower()}_out")
        name = "" if self.maybe(5) else self.fresh(op)
        self.nodes.append(helper.make_node(op, inputs, [out, *extra_outputs], name=name,
                                           **attrs))
        self.consumed.update(inputs)
        value = Value(out, tuple(shape))
        self.values.append(value)
        self.steps.append(f"{out} = {op}{description}({', '.join(inputs)}) -> {list(shape)}")
        return value

    def weight(self, shape: tuple, fan_in: int, share: bool = True) -> str:
        """Seeded normal weights with variance 1 / fan_in; may reuse an earlier weight of the
        same shape (shared by two nodes, maybe of different ops), or be a graph input (not a
        constant: nothing may fold into it)."""
        key = ("W", shape)
        if share and key in self.weights and self.maybe(30):
            return self.weights[key]
        if self.maybe(4):
            return self.graph_input("w", shape)
        values = (self.rng.standard_normal(shape) / math.sqrt(max(fan_in, 1))).astype(np.float32)
        if self.maybe(5):  # a denormal weight (flush-denormals must zero it)
            values.reshape(-1)[0] = np.float32(1e-40)
        name = self.constant("W", values)
        if share:
            self.weights.setdefault(key, name)
        return name

    def graph_input(self, prefix: str, shape: tuple) -> str:
        value = Value(self.fresh(prefix), shape)
        self.inputs.append(value)
        return value.name

    def vector(self, prefix: str, shape: tuple, kind: str) -> str:
        """Seeded float32 constants: ``scale`` (|v| in [0.5, 2], random sign), ``shift``
        (normal, sd 0.5), ``positive`` (in [0.5, 1.5])."""
        if kind == "scale":
            v = self.rng.uniform(0.5, 2.0, shape) * self.rng.choice([-1.0, 1.0], shape)
        elif kind == "positive":
            v = self.rng.uniform(0.5, 1.5, shape)
        else:
            v = 0.5 * self.rng.standard_normal(shape)
        return self.constant(prefix, np.asarray(v, dtype=np.float32))

    def ints(self, prefix: str, values: list[int]) -> str:
        return self.constant(prefix, np.array(values, dtype=np.int64))

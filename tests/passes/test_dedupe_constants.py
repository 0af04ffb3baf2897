"""dedupe-constants: constants with the same dtype, shape and bytes become one tensor."""

from __future__ import annotations

import collections

import numpy as np
import onnx
import pytest

from fuser import ir as graph_io
from fuser.passes import get_pass
from fuser.passes.exact._scaled import ScaledWeight
from tests.helpers import (
    apply,
    assert_same_outputs,
    check,
    constant_names,
    make_model,
    ops,
    second_run_rewrites,
)

NAME = "dedupe-constants"


def two_users(rng, k1, k2, *, xtype="float[N,4]", ytype="float[N,4]", op1="Add", op2="Mul"):
    return make_model(f"""
        g ({xtype} x) => ({ytype} y) {{
            b = {op1}(x, k1)
            y = {op2}(b, k2)
        }}""", rng, k1=k1, k2=k2)


def inputs_of(model: onnx.ModelProto) -> list[list[str]]:
    return [list(n.input) for n in model.graph.node]


def assert_deduped(model, rng, keep: set[str], rewrites=1):
    out, result = apply(model, NAME)
    assert result.rewrites == rewrites, result.skipped
    assert ops(out) == ops(model)
    assert constant_names(out) == keep
    check(out)
    assert_same_outputs(model, out, rng)
    assert second_run_rewrites(out, NAME) == 0
    return out, result


def assert_not_deduped(model, rng):
    out, result = apply(model, NAME)
    assert result.rewrites == 0
    assert not result.skipped
    assert ops(out) == ops(model)
    assert constant_names(out) == constant_names(model)
    assert inputs_of(out) == inputs_of(model)
    check(out)
    assert_same_outputs(model, out, rng)
    return out


VALUES = {
    "float32": np.array([0.5, -1.0, 2.0, 3.5], np.float32),
    "float32-long": np.linspace(-1, 1, 40, dtype=np.float32),  # past the 64-byte prefix
    "float16": np.array([0.5, -1.0, 2.0, 3.5], np.float16),
    "nan-same-bits": np.array([np.nan, 1.0, -0.0, 3.0], np.float32),
}


@pytest.mark.parametrize("values", VALUES.values(), ids=VALUES.keys())
def test_two_equal_constants_become_one(rng, values):
    name = {np.float32: "float", np.float16: "float16"}[values.dtype.type]
    n = values.shape[0]
    model = two_users(rng, values, values.copy(), xtype=f"{name}[N,{n}]",
                      ytype=f"{name}[N,{n}]")
    assert len(model.graph.initializer) == 2
    out, _ = assert_deduped(model, rng, {"k1"})
    assert inputs_of(out) == [["x", "k1"], ["b", "k1"]]


def test_three_equal_reshape_targets_become_one(rng):
    target = np.array([-1, 4], np.int64)
    model = make_model("""
        g (float[N,2,2] x) => (float[N,4] y) {
            a = Reshape(x, s1)
            b = Reshape(a, s2)
            c = Relu(b)
            y = Reshape(c, s3)
        }""", rng, s1=target, s2=target.copy(), s3=target.copy())
    out, _ = assert_deduped(model, rng, {"s1"}, rewrites=2)
    assert all(n.input[1] == "s1" for n in out.graph.node if n.op_type == "Reshape")


def test_equal_bool_and_scalar_constants_become_one(rng):
    model = make_model("""
        g (float[N,4] x) => (float[N,4] y) {
            a = Where(m1, x, z1)
            b = Where(m2, a, z2)
            y = Neg(b)
        }""", rng, m1=np.array([True, False, True, True]),
        m2=np.array([True, False, True, True]), z1=np.array(2.0, np.float32),
        z2=np.array(2.0, np.float32))
    assert_deduped(model, rng, {"m1", "z1"}, rewrites=2)


# ---------------------------------------------------------------- negative cases


def test_equal_prefix_different_tail_is_not_merged(rng):
    k1 = np.linspace(-1, 1, 40, dtype=np.float32)  # 160 bytes; the cheap key reads 64
    k2 = k1.copy()
    k2[-1] += 1
    assert_not_deduped(two_users(rng, k1, k2, xtype="float[N,40]", ytype="float[N,40]"), rng)


def test_same_bytes_of_another_dtype_are_not_merged(rng):
    k1 = np.array([0.5, -1.0, 2.0, 3.5], np.float32)
    k2 = k1.view(np.int32)
    assert k1.tobytes() == k2.tobytes()
    model = make_model("""
        g (float[N,4] x) => (float[N,4] y) {
            b = Add(x, k1)
            c = Cast<to=1>(k2)
            y = Mul(b, c)
        }""", rng, k1=k1, k2=k2)
    assert_not_deduped(model, rng)


def test_same_bytes_of_another_shape_are_not_merged(rng):
    # [4] broadcasts along rows, [4, 1] along columns: merging would change the outputs.
    k1 = np.array([0.5, -1.0, 2.0, 3.5], np.float32)
    model = two_users(rng, k1, k1.reshape(4, 1).copy(), xtype="float[4,4]", ytype="float[4,4]")
    assert_not_deduped(model, rng)


def test_zero_and_negative_zero_are_not_merged(rng):
    # x / 0.0 and x / -0.0 are infinities of opposite signs.
    model = make_model("""
        g (float[N,4] x) => (float[N,4] y1, float[N,4] y2) {
            y1 = Div(x, k1)
            y2 = Div(x, k2)
        }""", rng, k1=np.zeros(4, np.float32), k2=-np.zeros(4, np.float32))
    assert_not_deduped(model, rng)


def test_constant_that_is_a_graph_output_is_left_alone(rng):
    k = np.array([0.5, -1.0, 2.0, 3.5], np.float32)
    model = make_model("""
        g (float[N,4] x) => (float[N,4] y, float[4] k1) {
            b = Add(x, k1)
            y = Mul(b, k2)
        }""", rng, k1=k, k2=k.copy())
    out = assert_not_deduped(model, rng)
    assert [o.name for o in out.graph.output] == ["y", "k1"]


def test_initializer_that_is_a_graph_input_is_left_alone(rng):
    # From IR 4 on, an initializer listed as an input is a default that a caller may override.
    k = np.array([0.5, -1.0, 2.0, 3.5], np.float32)
    model = make_model("""
        g (float[N,4] x, float[4] k1) => (float[N,4] y) {
            b = Add(x, k1)
            y = Mul(b, k2)
        }""", rng, k1=k, k2=k.copy())
    out = assert_not_deduped(model, rng)
    assert [i.name for i in out.graph.input] == ["x", "k1"]


def test_constant_computed_on_export_is_left_alone(rng):
    k = np.array([0.5, -1.0, 2.0, 3.5], np.float32)
    model = two_users(rng, k, k.copy())
    graph = graph_io.to_graph(model)
    scaled = graph.tensors()["k2"]
    scaled._values = ScaledWeight(k.copy(), np.ones(4), (4,), collections.Counter())
    result = get_pass(NAME)(graph)
    assert result.rewrites == 0
    assert [t.name for t in graph.nodes[1].inputs] == ["b", "k2"]
    out = graph_io.to_model(graph.cleanup().toposort(), template=model)
    check(out)
    assert_same_outputs(model, out, rng)

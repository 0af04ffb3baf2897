"""fuse-matmul-add: MatMul followed by a bias Add becomes one Gemm."""

from __future__ import annotations

import functools

import numpy as np
import onnx
import pytest

from tests import helpers
from tests.helpers import apply, assert_same_outputs, check, make_model, ops, second_run_rewrites

NAME = "fuse-matmul-add"


def dense(rng, *, add="b = Add(m, c)", xtype="float[B,8]", ytype="float[B,5]", outputs=None,
          extra="", dtype=np.float32, **inits):
    """``a = Abs(x)``, ``m = MatMul(a, W)``, the Add, ``y = Neg(b)`` (Abs and Neg take ints)."""
    inits.setdefault("W", (8, 5))
    inits.setdefault("c", (5,))
    return make_model(f"""
        g ({xtype} x) => ({outputs or ytype + " y"}) {{
            a = Abs(x)
            m = MatMul(a, W)
            {add}
            y = Neg(b)
            {extra}
        }}""", rng, dtype=dtype, **inits)


def gemm(model: onnx.ModelProto) -> onnx.NodeProto:
    return next(n for n in model.graph.node if n.op_type == "Gemm")


def initializer(model: onnx.ModelProto, name: str) -> np.ndarray:
    return onnx.numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == name))


def assert_fused(model, rng, expect_ops=None, rewrites=1, **tolerances):
    out, result = apply(model, NAME)
    assert result.rewrites == rewrites, result.skipped
    assert not result.skipped
    assert ops(out) == (expect_ops or {"Abs": 1, "Gemm": 1, "Neg": 1})
    check(out)
    assert_same_outputs(model, out, rng, **tolerances)
    assert second_run_rewrites(out, NAME) == 0
    return out, result


@pytest.mark.parametrize("bias_shape", [(5,), (1, 5)], ids=["bias-N", "bias-1xN"])
@pytest.mark.parametrize("add", ["b = Add(m, c)", "b = Add(c, m)"], ids=["matmul-first",
                                                                         "bias-first"])
def test_matmul_and_bias_add_become_gemm(rng, add, bias_shape):
    model = dense(rng, add=add, c=bias_shape)
    out, _ = assert_fused(model, rng)
    node = gemm(out)
    assert list(node.input[:2]) == ["a", "W"] and list(node.output) == ["b"]
    bias = initializer(out, node.input[2])
    assert bias.shape == (5,)  # a [1, N] bias is handed to Gemm as a vector of N
    np.testing.assert_array_equal(bias, initializer(model, "c").reshape(-1))
    assert not {a.name for a in node.attribute} - {"alpha", "beta"}  # no transposes


@pytest.mark.parametrize("dtype, name", [(np.float64, "double"), (np.float16, "float16")])
def test_other_float_dtypes_fuse(rng, dtype, name):
    model = dense(rng, xtype=f"{name}[B,8]", ytype=f"{name}[B,5]", dtype=dtype)
    assert_fused(model, rng, rtol=1e-2, atol=1e-2)


def test_add_that_is_a_graph_output_keeps_its_name(rng):
    model = make_model("""
        g (float[B,8] x) => (float[B,5] y) {
            a = Relu(x)
            m = MatMul(a, W)
            y = Add(m, c)
        }""", rng, W=(8, 5), c=(1, 5))
    out, _ = assert_fused(model, rng, {"Relu": 1, "Gemm": 1})
    assert list(gemm(out).output) == ["y"] and [o.name for o in out.graph.output] == ["y"]


def test_two_dense_layers_both_fuse(rng):
    model = make_model("""
        g (float[B,8] x) => (float[B,3] y) {
            m = MatMul(x, W1)
            h = Add(m, c1)
            r = Relu(h)
            n = MatMul(r, W2)
            y = Add(c2, n)
        }""", rng, W1=(8, 5), c1=(5,), W2=(5, 3), c2=(1, 3))
    assert_fused(model, rng, {"Gemm": 2, "Relu": 1}, rewrites=2)


# ---------------------------------------------------------------- negative cases


assert_skipped = functools.partial(helpers.assert_skipped, NAME)


def assert_stays(model, rng, reason):
    out, _ = assert_skipped(model, reason)
    check(out)
    assert_same_outputs(model, out, rng)


@pytest.mark.parametrize("xtype, ytype, rank", [("float[B,3,8]", "float[B,3,5]", 3),
                                                ("float[8]", "float[5]", 1)])
def test_a_of_rank_other_than_2_stays(rng, xtype, ytype, rank):
    model = dense(rng, xtype=xtype, ytype=ytype)
    assert_stays(model, rng, f"MatMul -> 'm' has an input of rank {rank}, not 2")


def test_bias_that_is_not_a_constant_stays(rng):
    model = make_model("""
        g (float[B,8] x, float[5] c) => (float[B,5] y) {
            a = Relu(x)
            m = MatMul(a, W)
            b = Add(m, c)
            y = Neg(b)
        }""", rng, W=(8, 5))
    assert_stays(model, rng, "bias 'c' of Add -> 'b' is not a constant")


def test_weight_that_is_not_a_constant_stays(rng):
    model = make_model("""
        g (float[B,8] x, float[8,5] W) => (float[B,5] y) {
            a = Relu(x)
            m = MatMul(a, W)
            b = Add(m, c)
            y = Neg(b)
        }""", rng, c=(5,))
    assert_stays(model, rng, "weight 'W' of MatMul -> 'm' is not a constant")


@pytest.mark.parametrize("wshape, ytype, bias", [((2, 8, 5), "float[2,4,5]", (5,)),
                                                  ((8,), "float[4]", (4,))],
                         ids=["3-D", "1-D"])
def test_weight_that_is_not_2d_stays(rng, wshape, ytype, bias):
    model = dense(rng, xtype="float[4,8]", ytype=ytype, W=wshape, c=bias)
    assert_stays(model, rng, f"MatMul -> 'm' has a {len(wshape)}-D weight, not 2-D")


@pytest.mark.parametrize("shape", [(4, 5), (1,), ()], ids=["MxN", "broadcast-1", "scalar"])
def test_bias_that_is_not_a_vector_of_n_stays(rng, shape):
    model = dense(rng, xtype="float[4,8]", ytype="float[4,5]", c=shape)
    assert_stays(model, rng, f"Add -> 'b' adds a tensor of shape {shape}, not a bias of 5")


@pytest.mark.parametrize("use", ["consumer", "graph-output"])
def test_matmul_output_read_elsewhere_stays(rng, use):
    if use == "consumer":
        model = dense(rng, outputs="float[B,5] y, float[B,5] z", extra="z = Abs(m)")
        reason = "tensor 'm' has 2 consumers"
    else:
        model = dense(rng, outputs="float[B,5] y, float[B,5] m")
        reason = "tensor 'm' is a graph output"
    assert_stays(model, rng, reason)


@pytest.mark.parametrize("dtype, name", [(np.int32, "int32"), (np.int64, "int64")])
def test_integer_matmul_stays(rng, dtype, name):
    ints = {"W": rng.integers(-3, 4, (8, 5)).astype(dtype),
            "c": rng.integers(-3, 4, (5,)).astype(dtype)}
    model = dense(rng, xtype=f"{name}[B,8]", ytype=f"{name}[B,5]", **ints)
    assert_stays(model, rng, f"bias 'c' of Add -> 'b' has dtype {name}, not float16/32/64")


def test_add_of_two_computed_tensors_is_not_a_candidate(rng):
    model = make_model("""
        g (float[B,8] x) => (float[B,8] y) {
            a = Relu(x)
            b = Abs(x)
            y = Add(a, b)
        }""", rng)
    out, result = apply(model, NAME)
    assert result.rewrites == 0 and not result.skipped
    assert ops(out) == ops(model)
    assert_same_outputs(model, out, rng)

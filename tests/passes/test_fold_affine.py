"""fold-affine: per-channel Mul/Add/Sub/Div by constants after a linear node fold into it."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from tests import helpers
from tests.helpers import apply, make_model, ops


def assert_folded(model, rng, expect_ops, rewrites=1):
    return helpers.assert_rewrites("fold-affine", model, rng, expect_ops, rewrites=rewrites,
                                   rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("op, c_first", [
    ("Mul", False), ("Mul", True), ("Add", False), ("Add", True),
    ("Sub", False), ("Sub", True), ("Div", False)])
@pytest.mark.parametrize("c_shape", [(8, 1, 1), (1, 8, 1, 1), (1,), ()],
                         ids=["C11", "1C11", "scalar1", "scalar"])
def test_conv_then_affine_op_folds(rng, op, c_first, c_shape):
    args = "k, c" if c_first else "c, k"
    model = make_model(f"""
        g (float[N,4,6,6] x) => (float[N,8,6,6] y) {{
            c = Conv<pads=[1,1,1,1]>(x, W, B)
            y = {op}({args})
        }}""", rng, W=(8, 4, 3, 3), B=(8,),
        k=rng.uniform(0.5, 1.5, c_shape).astype(np.float32))
    assert_folded(model, rng, {"Conv": 1})


def test_keras_style_mul_add_after_depthwise_conv_both_fold(rng):
    """Keras 3 exports leave BN as Mul + Add after DepthwiseConv2D."""
    model = make_model("""
        g (float[N,4,6,6] x) => (float[N,4,6,6] y) {
            c = Conv<group=4, pads=[1,1,1,1]>(x, W)
            m = Mul(c, s)
            y = Add(m, t)
        }""", rng, W=(4, 1, 3, 3), s=(4, 1, 1), t=(4, 1, 1))
    assert_folded(model, rng, {"Conv": 1}, rewrites=2)


@pytest.mark.parametrize("op", ["Mul", "Add"])
def test_gemm_then_affine_folds(rng, op):
    model = make_model(f"""
        g (float[N,7] x) => (float[N,5] y) {{
            c = Gemm<transB=1>(x, W, B)
            y = {op}(c, k)
        }}""", rng, W=(5, 7), B=(5,), k=(1, 5))
    assert_folded(model, rng, {"Gemm": 1})


def test_matmul_nd_then_mul_and_add_fold(rng):
    model = make_model("""
        g (float[N,3,7] x) => (float[N,3,5] y) {
            c = MatMul(x, W)
            m = Mul(c, s)
            y = Add(m, t)
        }""", rng, W=(7, 5), s=(5,), t=(5,))
    assert_folded(model, rng, {"MatMul": 1, "Add": 1}, rewrites=1)


def test_conv_transpose_then_mul_folds(rng):
    model = make_model("""
        g (float[N,4,5,5] x) => (float[N,6,5,5] y) {
            c = ConvTranspose<group=2, pads=[1,1,1,1]>(x, W)
            y = Mul(c, s)
        }""", rng, W=(4, 3, 3, 3), s=(1, 6, 1, 1))
    assert_folded(model, rng, {"ConvTranspose": 1})


# ---------------------------------------------------------------- negative cases


assert_skipped = functools.partial(helpers.assert_skipped, "fold-affine")


def test_spatially_varying_operand_is_not_folded(rng):
    model = make_model("""
        g (float[N,4,6,6] x) => (float[N,8,6,6] y) {
            c = Conv<pads=[1,1,1,1]>(x, W)
            y = Mul(c, k)
        }""", rng, W=(8, 4, 3, 3), k=(8, 6, 6))
    assert_skipped(model, "Mul -> 'y' operand of shape [8, 6, 6] is not per-channel on axis 1 "
                          "(8 channels)")


def test_operand_that_grows_the_rank_is_not_folded(rng):
    model = make_model("""
        g (float[N,7] x) => (float[2,N,5] y) {
            c = Gemm(x, W)
            y = Add(c, k)
        }""", rng, W=(7, 5), k=(2, 1, 5))
    assert_skipped(model, "Add -> 'y' operand has rank 3 > tensor rank 2")


def test_division_of_a_constant_by_the_output_is_not_folded(rng):
    model = make_model("""
        g (float[N,4,6,6] x) => (float[N,8,6,6] y) {
            c = Conv(x, W)
            y = Div(k, c)
        }""", rng, W=(8, 4, 1, 1), k=(8, 1, 1))
    assert_skipped(model, "Div -> 'y' divides a constant by a tensor (not affine)")


def test_division_by_zero_is_not_folded(rng):
    model = make_model("""
        g (float[N,4,6,6] x) => (float[N,8,6,6] y) {
            c = Conv(x, W)
            y = Div(c, k)
        }""", rng, W=(8, 4, 1, 1), k=np.zeros((8, 1, 1), np.float32))
    assert_skipped(model, "Div -> 'y' divides by zero")


def test_producer_output_used_twice_is_not_folded(rng):
    model = make_model("""
        g (float[N,4,6,6] x) => (float[N,8,6,6] y, float[N,8,6,6] r) {
            c = Conv(x, W)
            y = Mul(c, k)
            r = Relu(c)
        }""", rng, W=(8, 4, 1, 1), k=(8, 1, 1))
    assert_skipped(model, "tensor 'c' has 2 consumers")


def test_integer_matmul_is_not_folded(rng):
    model = make_model("""
        g (int32[N,7] x) => (int32[N,5] y) {
            c = MatMul(x, W)
            y = Mul(c, k)
        }""", rng, W=np.ones((7, 5), np.int32), k=np.full((5,), 2, np.int32))
    assert_skipped(model, "weight 'W' of MatMul -> 'c' has dtype int32, not float16/32/64")


def test_per_channel_mul_after_relu_is_skipped_with_the_reason(rng):
    """BatchNorm as Keras exports it (a per-channel Mul/Add) after a non-linear node: left
    alone, and said why, as fold-batchnorm says it for a BatchNormalization there (issue 16,
    item 15: the demo prints these reasons)."""
    model = make_model("""
        g (float[N,4,6,6] x) => (float[N,8,6,6] y) {
            c = Conv(x, W)
            r = Relu(c)
            y = Mul(r, k)
        }""", rng, W=(8, 4, 1, 1), k=(8, 1, 1))
    assert_skipped(model, "Mul -> 'y' by a per-channel constant: 'r' comes from Relu, not "
                          "from Conv/ConvTranspose/Gemm/MatMul")


@pytest.mark.parametrize("k", [(1,), (6,), (1, 6, 6)], ids=["scalar", "last-axis", "spatial"])
def test_other_constants_after_relu_are_not_candidates(rng, k):
    model = make_model("""
        g (float[N,4,6,6] x) => (float[N,8,6,6] y) {
            c = Conv(x, W)
            r = Relu(c)
            y = Mul(r, k)
        }""", rng, W=(8, 4, 1, 1), k=k)
    out, result = apply(model, "fold-affine")
    assert result.rewrites == 0 and not result.skipped and ops(out) == ops(model)


def test_add_after_bare_matmul_is_left_as_its_bias(rng):
    model = make_model("""
        g (float[N,7] x) => (float[N,5] y) {
            c = MatMul(x, W)
            y = Add(c, B)
        }""", rng, W=(7, 5), B=(5,))
    out, result = apply(model, "fold-affine")
    assert result.rewrites == 0 and ops(out) == ops(model)

"""fold-into-next-conv: BN or per-channel Mul/Add right before a Conv folds into that Conv."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from tests import helpers
from tests.helpers import apply, assert_same_outputs, check, make_model, ops, second_run_rewrites

BN = "BatchNormalization(r, s, b, mean, var)"


def bn_inits(c: int) -> dict:
    return {"s": (c,), "b": (c,), "mean": (c,), "var": (c,)}


def assert_folded(model, rng, expect_ops, rewrites=1):
    return helpers.assert_rewrites("fold-into-next-conv", model, rng, expect_ops,
                                   rewrites=rewrites, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("group", [1, 2, 4], ids=["dense", "grouped", "depthwise"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
def test_bn_after_relu_folds_into_unpadded_next_conv(rng, group, bias):
    inputs = "z, W, B" if bias else "z, W"
    model = make_model(f"""
        g (float[N,4,6,6] x) => (float[N,8,4,4] y) {{
            r = Relu(x)
            z = {BN}
            y = Conv<group={group}, strides=[1,1]>({inputs})
        }}""", rng, W=(8, 4 // group, 3, 3), **({"B": (8,)} if bias else {}), **bn_inits(4))
    assert_folded(model, rng, {"Relu": 1, "Conv": 1})


def test_pure_scale_folds_into_padded_conv(rng):
    """A scale without shift keeps zero padding zero, so padding does not matter."""
    model = make_model("""
        g (float[N,4,6,6] x) => (float[N,8,6,6] y) {
            z = Mul(x, k)
            y = Conv<pads=[1,1,1,1]>(z, W)
        }""", rng, W=(8, 4, 3, 3), k=(1, 4, 1, 1))
    assert_folded(model, rng, {"Conv": 1})


def test_input_normalization_folds_into_first_conv(rng):
    """(x - mean) / std before an unpadded stem conv: two folds, exact."""
    model = make_model("""
        g (float[N,3,8,8] x) => (float[N,8,4,4] y) {
            c = Sub(x, mean)
            z = Div(c, std)
            y = Conv<strides=[2,2], kernel_shape=[2,2]>(z, W)
        }""", rng, W=(8, 3, 2, 2), mean=(3, 1, 1),
        std=rng.uniform(0.5, 1.5, (3, 1, 1)).astype(np.float32))
    out, result = apply(model, "fold-into-next-conv")
    # Div first, then Sub (which now feeds the Conv): the chain folds in one run
    assert result.rewrites == 2 and ops(out) == {"Conv": 1}
    assert result.notes == ["Div -> 'z' into next Conv -> 'y'", "Sub -> 'c' into next Conv -> 'y'"]
    assert second_run_rewrites(out, "fold-into-next-conv") == 0
    check(out)
    assert_same_outputs(model, out, rng, rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------- negative cases


assert_skipped = functools.partial(helpers.assert_skipped, "fold-into-next-conv")


def test_shift_before_padded_conv_is_not_folded(rng):
    model = make_model(f"""
        g (float[N,4,6,6] x) => (float[N,8,6,6] y) {{
            r = Relu(x)
            z = {BN}
            y = Conv<pads=[1,1,1,1]>(z, W)
        }}""", rng, W=(8, 4, 3, 3), **bn_inits(4))
    assert_skipped(model, "BatchNormalization -> 'z' shifts the input of padded Conv -> 'y' "
                          "(the shift would leak into the zero padding)")


def test_shift_before_same_autopad_conv_is_not_folded(rng):
    model = make_model("""
        g (float[N,4,6,6] x) => (float[N,8,6,6] y) {
            z = Add(x, t)
            y = Conv<auto_pad="SAME_UPPER", kernel_shape=[3,3]>(z, W)
        }""", rng, W=(8, 4, 3, 3), t=(4, 1, 1))
    assert_skipped(model, "Add -> 'z' shifts the input of padded Conv -> 'y' "
                          "(the shift would leak into the zero padding)")


def test_affine_output_that_is_a_graph_output_is_not_folded(rng):
    model = make_model("""
        g (float[N,4,6,6] x) => (float[N,8,6,6] y, float[N,4,6,6] z) {
            z = Mul(x, k)
            y = Conv(z, W)
        }""", rng, W=(8, 4, 1, 1), k=(4, 1, 1))
    assert_skipped(model, "tensor 'z' is a graph output")


def test_affine_output_read_by_two_convs_is_left_alone(rng):
    model = make_model("""
        g (float[N,4,6,6] x) => (float[N,8,6,6] y, float[N,8,6,6] v) {
            z = Mul(x, k)
            y = Conv(z, W)
            v = Conv(z, W)
        }""", rng, W=(8, 4, 1, 1), k=(4, 1, 1))
    out, result = apply(model, "fold-into-next-conv")
    assert result.rewrites == 0 and ops(out) == ops(model)


def test_spatially_varying_scale_is_not_folded(rng):
    model = make_model("""
        g (float[N,4,6,6] x) => (float[N,8,6,6] y) {
            z = Mul(x, k)
            y = Conv(z, W)
        }""", rng, W=(8, 4, 1, 1), k=(4, 6, 6))
    assert_skipped(model, "Mul -> 'z' operand of shape [4, 6, 6] is not per-channel on axis 1 "
                          "(4 channels)")


def test_non_constant_conv_weight_is_not_folded(rng):
    model = make_model("""
        g (float[N,4,6,6] x, float[8,4,1,1] W) => (float[N,8,6,6] y) {
            z = Mul(x, k)
            y = Conv(z, W)
        }""", rng, k=(4, 1, 1))
    assert_skipped(model, "weight 'W' of Conv -> 'y' is not a constant")


@pytest.mark.parametrize("op", ["Mul", "Add"])
def test_constant_broadcasting_a_one_channel_input_is_not_folded(rng, op):
    """``x[N,1,6,6] * k[1,4,1,1]`` has 4 channels; the Conv must not read the 1-channel x
    (issue 16, item 2: the checker accepted the rewrite, onnxruntime then refused it)."""
    model = make_model(f"""
        g (float[N,1,6,6] x) => (float[N,8,6,6] y) {{
            z = {op}(x, k)
            y = Conv(z, W)
        }}""", rng, W=(8, 4, 1, 1), k=(1, 4, 1, 1))
    assert_skipped(model, f"{op} -> 'z': its input 'x' has 1 channel(s), Conv -> 'y' reads 4")


def test_one_channel_broadcast_passes_optimize_and_its_validation(rng):
    import fuser

    model = make_model("""
        g (float[N,1,6,6] x) => (float[N,8,6,6] y) {
            z = Mul(x, k)
            y = Conv(z, W)
        }""", rng, W=(8, 4, 1, 1), k=(1, 4, 1, 1))
    out, report = fuser.optimize(model, validate=fuser.Validation(batch=2))
    assert report.passed and ops(out) == ops(model)


def test_affine_feeding_the_conv_weight_is_not_folded(rng):
    model = make_model("""
        g (float[N,4,6,6] x, float[8,4,1,1] w) => (float[N,8,6,6] y) {
            m = Mul(w, k)
            y = Conv(x, m)
        }""", rng, k=(8, 1, 1, 1))
    assert_skipped(model, "Mul -> 'm' feeds Conv -> 'y' as its weight, not its data")


def test_batchnorm_with_other_channels_than_the_conv_reads_is_not_folded(rng):
    """A grouped Conv reading 2 x 2 channels after a 2-channel BN: the counts differ."""
    model = make_model(f"""
        g (float[N,2,6,6] x) => (float[N,4,6,6] y) {{
            r = Relu(x)
            z = {BN}
            y = Conv<group=2>(z, W)
        }}""", rng, W=(4, 2, 1, 1), **bn_inits(2))
    assert_skipped(model, "BatchNormalization -> 'z' has 2 channels, Conv -> 'y' reads 4")


def test_affine_whose_input_has_a_lower_rank_is_not_folded(rng):
    """``x[4,6,6] * k[1,4,1,1]`` is 4-D only through broadcasting."""
    model = make_model("""
        g (float[4,6,6] x) => (float[1,8,6,6] y) {
            z = Mul(x, k)
            y = Conv(z, W)
        }""", rng, W=(8, 4, 1, 1), k=(1, 4, 1, 1))
    assert_skipped(model, "Mul -> 'z': input rank 3 is not 4")


def test_batchnorm_in_training_mode_is_not_folded_into_the_next_conv(rng):
    model = make_model("""
        g (float[N,4,6,6] x) => (float[N,8,6,6] y) {
            r = Relu(x)
            z, rm, rv = BatchNormalization<training_mode=1>(r, s, b, mean, var)
            y = Conv(z, W)
        }""", rng, W=(8, 4, 1, 1), **bn_inits(4))
    assert_skipped(model, "BatchNormalization -> 'z' has training_mode=1")


# --------------------------------------- a GELU onnxruntime fuses only whole (issue 24)

GELU = """
    g (float[N,4,6,6] x) => (float[N,8,6,6] y) {{
        d = Div(x, root2)
        e = {unary}(d)
        a = Add(e, one)
        m = Mul(x, a)
        h = Mul(m, half)
        y = Conv(h, W)
    }}"""


def gelu_model(rng, unary="Erf"):
    return make_model(GELU.format(unary=unary), rng, W=(8, 4, 1, 1),
                      root2=np.array(np.sqrt(2), np.float32), one=np.array(1, np.float32),
                      half=np.array(0.5, np.float32))


@pytest.mark.parametrize("unary", ["Erf", "Tanh"])
def test_the_tail_of_a_gelu_is_not_folded(rng, unary):
    """paddle2onnx's GELU ends in ``* 0.5``; onnxruntime fuses the pattern into one Gelu only
    with it (PP-OCRv6 rec: 0.91x of the original with the folds, 1.07x without)."""
    helpers.assert_skipped("fold-into-next-conv", gelu_model(rng, unary),
                           "Mul -> 'h' ends a GELU that onnxruntime fuses only whole (folded, "
                           "it runs op by op: slower)")


def test_a_scale_after_a_product_without_erf_still_folds(rng):
    """The same shape of graph with Sigmoid instead of 1 + erf (no fused GELU to break)."""
    model = make_model("""
        g (float[N,4,6,6] x) => (float[N,8,6,6] y) {
            e = Sigmoid(x)
            m = Mul(x, e)
            h = Mul(m, half)
            y = Conv(h, W)
        }""", rng, W=(8, 4, 1, 1), half=np.array(0.5, np.float32))
    assert_folded(model, rng, {"Sigmoid": 1, "Mul": 1, "Conv": 1})

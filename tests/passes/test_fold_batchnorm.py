"""fold-batchnorm: BN after Conv/ConvTranspose/Gemm/MatMul folds into the producer."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from tests import helpers
from tests.helpers import (
    apply,
    assert_same_outputs,
    check,
    constant_names,
    make_model,
    ops,
    second_run_rewrites,
)

BN_PARAMS = "s, b, mean, var"


def bn_inits(c: int) -> dict:
    return {"s": (c,), "b": (c,), "mean": (c,), "var": (c,)}


def assert_folded(model, rng, *, rtol=1e-4, atol=1e-5, expect_ops=None, rewrites=1):
    out, result = apply(model, "fold-batchnorm")
    assert result.rewrites == rewrites, result.skipped
    assert ops(out)["BatchNormalization"] == ops(model)["BatchNormalization"] - rewrites
    if expect_ops is not None:
        assert ops(out) == expect_ops
    check(out)
    assert_same_outputs(model, out, rng, rtol=rtol, atol=atol)
    assert second_run_rewrites(out, "fold-batchnorm") == 0
    return out, result


@pytest.mark.parametrize("spatial", [1, 2, 3], ids=["conv1d", "conv2d", "conv3d"])
@pytest.mark.parametrize("group", [1, 2, 4], ids=["dense", "grouped", "depthwise"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
def test_conv_bn_folds(rng, spatial, group, bias):
    size = ",".join(["6"] * spatial)
    k = [3] * spatial
    inputs = "x, W, B" if bias else "x, W"
    model = make_model(f"""
        g (float[N,4,{size}] x) => (float[N,8,{size}] y) {{
            c = Conv<group={group}, pads={[1] * 2 * spatial}>({inputs})
            y = BatchNormalization<epsilon=0.001>(c, {BN_PARAMS})
        }}""", rng, W=(8, 4 // group, *k), **({"B": (8,)} if bias else {}), **bn_inits(8))
    out, result = assert_folded(model, rng, expect_ops={"Conv": 1})
    conv = out.graph.node[0]
    assert len(conv.input) == 3  # the fold always leaves a bias
    assert conv.output[0] == "y"  # the graph output keeps its name
    assert "W" not in constant_names(out)  # the new weight is named after the node


def test_conv_bn_folds_in_float16(rng):
    model = make_model("""
        g (float16[N,4,6,6] x) => (float16[N,8,6,6] y) {
            c = Conv<pads=[1,1,1,1]>(x, W)
            y = BatchNormalization(c, s, b, mean, var)
        }""", rng, dtype=np.float16, W=(8, 4, 3, 3), **bn_inits(8))
    out, _ = assert_folded(model, rng, rtol=2e-2, atol=2e-2, expect_ops={"Conv": 1})
    assert all(t.data_type == onnx.TensorProto.FLOAT16 for t in out.graph.initializer)


@pytest.mark.parametrize("group", [1, 2, 3])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
def test_conv_transpose_bn_folds_per_group(rng, group, bias):
    """Weight is (C_in, C_out/group, k, k): the scale goes on axis 1, per group
    (onnx/optimizer#106, pytorch#180995 got this wrong)."""
    inputs = "x, W, B" if bias else "x, W"
    cin, cout = 6, 3 * group * 2 // 2 * 2  # divisible by group
    model = make_model(f"""
        g (float[N,{cin},5,5] x) => (float[N,{cout},10,10] y) {{
            c = ConvTranspose<group={group}, strides=[2,2], pads=[1,1,1,1],
                              output_padding=[1,1]>({inputs})
            y = BatchNormalization(c, {BN_PARAMS})
        }}""", rng, W=(cin, cout // group, 3, 3), **({"B": (cout,)} if bias else {}),
        **bn_inits(cout))
    assert_folded(model, rng, expect_ops={"ConvTranspose": 1})


@pytest.mark.parametrize("trans_b", [0, 1])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
def test_gemm_bn_folds(rng, trans_b, bias):
    w_shape = (5, 7) if trans_b else (7, 5)
    inputs = "x, W, C" if bias else "x, W"
    model = make_model(f"""
        g (float[N,7] x) => (float[N,5] y) {{
            c = Gemm<transB={trans_b}, alpha=0.5, beta=2.0>({inputs})
            y = BatchNormalization(c, {BN_PARAMS})
        }}""", rng, W=w_shape, **({"C": (5,)} if bias else {}), **bn_inits(5))
    out, _ = assert_folded(model, rng, expect_ops={"Gemm": 1})
    gemm = out.graph.node[0]
    assert onnx.helper.get_attribute_value(
        next(a for a in gemm.attribute if a.name == "beta")) == 1.0


def test_matmul_bn_gets_a_bias_add(rng):
    model = make_model(f"""
        g (float[N,7] x) => (float[N,5] y) {{
            c = MatMul(x, W)
            y = BatchNormalization(c, {BN_PARAMS})
        }}""", rng, W=(7, 5), **bn_inits(5))
    assert_folded(model, rng, expect_ops={"MatMul": 1, "Add": 1})


def test_matmul_add_bn_folds_into_the_add(rng):
    model = make_model(f"""
        g (float[N,7] x) => (float[N,5] y) {{
            m = MatMul(x, W)
            c = Add(m, B)
            y = BatchNormalization(c, {BN_PARAMS})
        }}""", rng, W=(7, 5), B=(5,), **bn_inits(5))
    assert_folded(model, rng, expect_ops={"MatMul": 1, "Add": 1})


def test_chain_of_two_batchnorms_folds_both(rng):
    model = make_model(f"""
        g (float[N,4,6,6] x) => (float[N,8,6,6] y) {{
            c = Conv(x, W)
            z = BatchNormalization(c, {BN_PARAMS})
            y = BatchNormalization(z, s2, b2, mean2, var2)
        }}""", rng, W=(8, 4, 1, 1), **bn_inits(8),
        s2=(8,), b2=(8,), mean2=(8,), var2=(8,))
    assert_folded(model, rng, rewrites=2, expect_ops={"Conv": 1})


def test_name_collision_is_avoided(rng):
    """Two fused convs named after a shared input once collided (pytorch#166797)."""
    model = make_model(f"""
        g (float[N,4,6,6] x) => (float[N,8,6,6] y, float[N,8,6,6] z) {{
            c = Conv(x, W)
            y = BatchNormalization(c, {BN_PARAMS})
            d = Conv(x, W2)
            z = BatchNormalization(d, {BN_PARAMS})
        }}""", rng, W=(8, 4, 1, 1), W2=(8, 4, 1, 1), **bn_inits(8))
    out, _ = assert_folded(model, rng, rewrites=2, expect_ops={"Conv": 2})
    names = [t.name for t in out.graph.initializer]
    assert len(names) == len(set(names))


# ---------------------------------------------------------------- shared weights


SHARED = f"""
    g (float[N,4,6,6] x) => (float[N,8,6,6] y, float[N,8,6,6] z) {{
        c = Conv(x, W)
        y = BatchNormalization(c, {BN_PARAMS})
        z = Conv(x, W)
    }}"""


def test_shared_weight_is_cloned_and_the_other_conv_untouched(rng):
    """A weight read by two Convs must not be folded in place (pytorch#104593)."""
    model = make_model(SHARED, rng, W=(8, 4, 1, 1), **bn_inits(8))
    out, result = assert_folded(model, rng, expect_ops={"Conv": 2})
    assert result.stats["shared weight cloned"] == 1
    other = next(n for n in out.graph.node if n.output[0] == "z")
    assert other.input[1] == "W"


def test_shared_weight_is_skipped_when_cloning_is_off(rng):
    model = make_model(SHARED, rng, W=(8, 4, 1, 1), **bn_inits(8))
    out, result = apply(model, "fold-batchnorm", clone_shared=False)
    assert result.rewrites == 0
    assert result.skipped == {"weight 'W' of Conv -> 'c' is shared with 1 other node(s)": 1}
    assert ops(out) == ops(model)


# ---------------------------------------------------------------- negative cases


def assert_skipped(model, reason, **options):
    return helpers.assert_skipped("fold-batchnorm", model, reason, **options)


def test_bn_after_relu_is_not_folded(rng):
    model = make_model(f"""
        g (float[N,4,6,6] x) => (float[N,8,6,6] y) {{
            c = Conv(x, W)
            r = Relu(c)
            y = BatchNormalization(r, {BN_PARAMS})
        }}""", rng, W=(8, 4, 1, 1), **bn_inits(8))
    assert_skipped(model, "'r' comes from Relu, not from Conv/ConvTranspose/Gemm/MatMul")


def test_training_mode_is_not_folded(rng):
    model = make_model(f"""
        g (float[N,4,6,6] x) => (float[N,8,6,6] y) {{
            c = Conv(x, W)
            y, rm, rv = BatchNormalization<training_mode=1>(c, {BN_PARAMS})
        }}""", rng, W=(8, 4, 1, 1), **bn_inits(8))
    assert_skipped(model, "BatchNormalization -> 'y' has training_mode=1")


def test_used_running_stat_outputs_are_not_folded(rng):
    """onnxruntime's DontFuseConvWithBNWithOptionalOutputs: a used mean/var output forbids it."""
    model = make_model(f"""
        g (float[N,4,6,6] x) => (float[N,8,6,6] y, float[8] rm) {{
            c = Conv(x, W)
            y, rm, rv, sm, sv = BatchNormalization(c, {BN_PARAMS})
        }}""", rng, header='< ir_version: 7, opset_import: ["" : 9] >', W=(8, 4, 1, 1),
        **bn_inits(8))
    assert_skipped(model, "BatchNormalization -> 'y' has optional outputs (running mean/var)")


def test_bn_parameters_that_are_graph_inputs_are_not_folded(rng):
    model = make_model("""
        g (float[N,4,6,6] x, float[8] s) => (float[N,8,6,6] y) {
            c = Conv(x, W)
            y = BatchNormalization(c, s, b, mean, var)
        }""", rng, W=(8, 4, 1, 1), b=(8,), mean=(8,), var=(8,))
    assert_skipped(model, "scale 's' of BatchNormalization -> 'y' is not a constant")


def test_conv_output_consumed_twice_is_not_folded(rng):
    model = make_model(f"""
        g (float[N,4,6,6] x) => (float[N,8,6,6] y, float[N,8,6,6] r) {{
            c = Conv(x, W)
            y = BatchNormalization(c, {BN_PARAMS})
            r = Relu(c)
        }}""", rng, W=(8, 4, 1, 1), **bn_inits(8))
    assert_skipped(model, "tensor 'c' has 2 consumers")


def test_conv_output_that_is_a_graph_output_is_not_folded(rng):
    model = make_model(f"""
        g (float[N,4,6,6] x) => (float[N,8,6,6] y, float[N,8,6,6] c) {{
            c = Conv(x, W)
            y = BatchNormalization(c, {BN_PARAMS})
        }}""", rng, W=(8, 4, 1, 1), **bn_inits(8))
    assert_skipped(model, "tensor 'c' is a graph output")


def test_conv_weight_that_is_a_graph_input_is_not_folded(rng):
    model = make_model(f"""
        g (float[N,4,6,6] x, float[8,4,1,1] W) => (float[N,8,6,6] y) {{
            c = Conv(x, W)
            y = BatchNormalization(c, {BN_PARAMS})
        }}""", rng, **bn_inits(8))
    assert_skipped(model, "weight 'W' of Conv -> 'c' is not a constant")


def test_matmul_with_3d_output_is_not_folded(rng):
    """BN normalizes axis 1, MatMul's channels are the last axis: only 2-D outputs match."""
    model = make_model(f"""
        g (float[N,5,7] x) => (float[N,5,5] y) {{
            c = MatMul(x, W)
            y = BatchNormalization(c, {BN_PARAMS})
        }}""", rng, W=(7, 5), **bn_inits(5))
    assert_skipped(model, "BatchNormalization -> 'y' normalizes axis 1 but MatMul -> 'c' keeps "
                          "its channels on the last axis of a non-2-D output")


def test_grouped_conv_transpose_with_indivisible_channels_is_not_folded(rng):
    """An input channel count not divisible by group cannot be split per group."""
    model = onnx.parser.parse_model(f"""< ir_version: 8, opset_import: ["" : 17] >
        g (float[N,3,5,5] x) => (float[N,4,5,5] y) {{
            c = ConvTranspose<group=2>(x, W)
            y = BatchNormalization(c, {BN_PARAMS})
        }}""")
    for name, shape in {"W": (3, 2, 1, 1), **bn_inits(4)}.items():
        model.graph.initializer.append(onnx.numpy_helper.from_array(
            rng.uniform(0.5, 1.5, shape).astype(np.float32), name))
    assert_skipped(model, "ConvTranspose -> 'c' has 3 input channels, not divisible by group=2")


def test_bfloat16_weights_are_not_folded(rng):
    model = onnx.parser.parse_model(f"""< ir_version: 10, opset_import: ["" : 22] >
        g (bfloat16[N,4,6,6] x) => (bfloat16[N,8,6,6] y) {{
            c = Conv(x, W)
            y = BatchNormalization(c, {BN_PARAMS})
        }}""")
    for name, shape in {"W": (8, 4, 1, 1), **bn_inits(8)}.items():
        values = rng.uniform(0.5, 1.5, shape).astype(np.float32)
        model.graph.initializer.append(onnx.helper.make_tensor(
            name, onnx.TensorProto.BFLOAT16, shape, values.reshape(-1).tolist()))
    check(model)
    out, result = apply(model, "fold-batchnorm")
    assert result.rewrites == 0
    (reason,) = result.skipped
    assert "bfloat16, not float16/32/64" in reason
    assert ops(out) == ops(model)


# ---------------------------------------------------------------- preconditions (issue 16)


def test_opset_6_is_test_0_is_not_folded(rng):
    model = make_model(f"""
        g (float[N,4,6,6] x) => (float[N,8,6,6] y) {{
            c = Conv(x, W)
            y = BatchNormalization<is_test=0>(c, {BN_PARAMS})
        }}""", rng, header='< ir_version: 4, opset_import: ["" : 6] >', W=(8, 4, 1, 1),
        **bn_inits(8))
    assert_skipped(model, "BatchNormalization -> 'y' has is_test=0 (training mode)")


def test_batchnorm_with_other_channels_than_its_producer_is_not_folded(rng):
    """A BN whose parameters do not match the Conv's output channels (an invalid model that
    the checker accepts) is left alone rather than folded into a wrong shape."""
    model = onnx.parser.parse_model(f"""< ir_version: 8, opset_import: ["" : 17] >
        g (float[N,4,6,6] x) => (float[N,8,6,6] y) {{
            c = Conv(x, W)
            y = BatchNormalization(c, {BN_PARAMS})
        }}""")
    for name, shape in {"W": (8, 4, 1, 1), **bn_inits(4)}.items():
        model.graph.initializer.append(onnx.numpy_helper.from_array(
            rng.uniform(0.5, 1.5, shape).astype(np.float32), name))
    onnx.checker.check_model(model)  # valid but for the shapes, which only inference sees
    assert_skipped(model, "BatchNormalization -> 'y' has 4 channels, Conv -> 'c' has 8")


def test_matmul_with_its_constant_on_the_left_is_not_folded(rng):
    """``W x`` mixes rows, not output channels: BN over axis 1 cannot fold into W."""
    model = make_model(f"""
        g (float[5,7] x) => (float[5,7] y) {{
            c = MatMul(W, x)
            y = BatchNormalization(c, {BN_PARAMS})
        }}""", rng, W=(5, 5), **bn_inits(7))
    assert_skipped(model, "MatMul -> 'c' has its constant on the left")


def test_matmul_with_a_3d_weight_is_not_folded(rng):
    model = make_model(f"""
        g (float[2,5,7] x) => (float[2,5,3] y) {{
            c = MatMul(x, W)
            y = BatchNormalization(c, {BN_PARAMS})
        }}""", rng, W=(2, 7, 3), **bn_inits(5))
    assert_skipped(model, "MatMul -> 'c' has a 3-D weight, not 2-D")


def test_batchnorm_with_spatial_0_is_not_folded(rng):
    """Opset 6-8 BatchNormalization with spatial=0 keeps statistics per activation, not per
    channel: the per-channel fold broadcast them wrongly (a ValueError; issue 25)."""
    model = onnx.helper.make_model(onnx.helper.make_graph(
        [onnx.helper.make_node("Conv", ["x", "W"], ["c"], pads=[1, 1, 1, 1]),
         onnx.helper.make_node("BatchNormalization", ["c", "s", "b", "m", "v"], ["y"],
                               spatial=0)],
        "g", [onnx.helper.make_tensor_value_info("x", 1, [1, 3, 4, 4])],
        [onnx.helper.make_tensor_value_info("y", 1, None)],
        [onnx.numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)
         for name, shape in (("W", (2, 3, 3, 3)), ("s", (2, 4, 4)), ("b", (2, 4, 4)),
                             ("m", (2, 4, 4)))]
        + [onnx.numpy_helper.from_array(rng.uniform(0.5, 1.5, (2, 4, 4)).astype(np.float32),
                                        "v")]),
        opset_imports=[onnx.helper.make_opsetid("", 7)], ir_version=8)
    _, result = helpers.apply(model, "fold-batchnorm")
    assert result.rewrites == 0
    assert dict(result.skipped) == {
        "BatchNormalization -> 'y' has spatial=0 (per-activation statistics, not per channel)": 1}

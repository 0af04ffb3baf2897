"""inline-constants: Constant nodes become initializers, so weights they hold can be folded."""

from __future__ import annotations

import functools

import numpy as np
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


def literal(values: np.ndarray) -> str:
    """ONNX text for a float tensor: ``float[2,3] {...}``."""
    dims = ",".join(map(str, values.shape))
    return f"float[{dims}] {{{', '.join(map(str, values.reshape(-1).tolist()))}}}"


def assert_inlined(model, rng, expect_ops, rewrites=1):
    out, result = apply(model, "inline-constants")
    assert result.rewrites == rewrites, result.skipped
    assert ops(out) == expect_ops
    check(out)
    assert_same_outputs(model, out, rng)
    assert second_run_rewrites(out, "inline-constants") == 0
    return out


def conv_model(rng, *, with_bn: bool):
    weight = rng.standard_normal((8, 4, 1, 1)).astype(np.float32)
    bn = "y = BatchNormalization(c, s, b, mean, var)" if with_bn else "y = Identity(c)"
    inits = {"s": (8,), "b": (8,), "mean": (8,), "var": (8,)} if with_bn else {}
    return make_model(f"""
        g (float[N,4,6,6] x) => (float[N,8,6,6] y) {{
            W = Constant<value = {literal(weight)}>()
            c = Conv(x, W)
            {bn}
        }}""", rng, **inits)


def test_constant_conv_weight_becomes_an_initializer(rng):
    model = conv_model(rng, with_bn=False)
    out = assert_inlined(model, rng, {"Conv": 1, "Identity": 1})
    assert "W" in constant_names(out)


def test_weight_from_a_constant_node_folds_a_following_batchnorm_once_inlined(rng):
    model = conv_model(rng, with_bn=True)
    _, before = apply(model, "fold-batchnorm")
    assert before.skipped == {"weight 'W' of Conv -> 'c' is not a constant": 1}

    inlined = assert_inlined(model, rng, {"Conv": 1, "BatchNormalization": 1})
    folded, result = apply(inlined, "fold-batchnorm")
    assert result.rewrites == 1, result.skipped
    assert ops(folded) == {"Conv": 1}
    check(folded)
    assert_same_outputs(model, folded, rng, rtol=1e-4)


@pytest.mark.parametrize("attr, x_type", [
    ("value_float=2.5", "float[N,3]"),
    ("value_floats=[1.0, -2.0, 0.5]", "float[N,3]"),
    ("value_int=3", "int64[N,3]"),
    ("value_ints=[1, 2, 3]", "int64[N,3]"),
])
def test_scalar_and_list_attribute_forms_are_inlined(rng, attr, x_type):
    model = make_model(f"""
        g ({x_type} x) => ({x_type} y) {{
            k = Constant<{attr}>()
            y = Mul(x, k)
        }}""", rng)
    out = assert_inlined(model, rng, {"Mul": 1})
    assert constant_names(out) == {"k"}


def test_every_constant_node_is_inlined(rng):
    model = make_model("""
        g (float[N,3] x) => (float[N,3] y) {
            a = Constant<value_float=2.0>()
            b = Constant<value_floats=[1.0, 2.0, 3.0]>()
            m = Mul(x, a)
            y = Add(m, b)
        }""", rng)
    assert_inlined(model, rng, {"Mul": 1, "Add": 1}, rewrites=2)


# ---------------------------------------------------------------- negative cases


assert_skipped = functools.partial(helpers.assert_skipped, "inline-constants")


def test_constant_that_is_a_graph_output_stays_a_node(rng):
    model = make_model("""
        g (float[N,3] x) => (float[N,3] y, float[3] k) {
            k = Constant<value_floats=[1.0, 2.0, 3.0]>()
            y = Mul(x, k)
        }""", rng)
    assert_skipped(model, "Constant -> 'k' is a graph output")


def test_constant_holding_strings_stays_a_node(rng):
    model = make_model("""
        g (float[N,3] x) => (string[2] y) {
            k = Constant<value_strings=["a", "b"]>()
            y = Identity(k)
        }""", rng)
    assert_skipped(model, "Constant -> 'k' holds a sparse or string value")


def test_constant_holding_a_sparse_value_stays_a_node(rng):
    """A sparse_value Constant (COO indices into a dense shape) is left alone (issue 16)."""
    import onnx

    values = onnx.numpy_helper.from_array(np.array([1.5, -2.0], np.float32), "k_values")
    indices = onnx.numpy_helper.from_array(np.array([1, 4], np.int64), "k_indices")
    sparse = onnx.helper.make_sparse_tensor(values, indices, [6])
    node = onnx.helper.make_node("Constant", [], ["k"], name="k_const", sparse_value=sparse)
    graph = onnx.helper.make_graph(
        [node, onnx.helper.make_node("Mul", ["x", "k"], ["y"])], "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 6])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["N", 6])])
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)],
                                   ir_version=8)
    check(model)
    assert_skipped(model, "Constant 'k_const' holds a sparse or string value")

"""fuse-prelu: tf2onnx's Relu(x) + c * Relu(-x) becomes PRelu(x, -c)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from tests import helpers
from tests.helpers import apply, make_model, ops

NAME = "fuse-prelu"


def _prelu(rng, *, add: str = "y = Add(p, m)", mul: str = "m = Mul(r, c)",
           c=None, outputs: str = "") -> onnx.ModelProto:
    return make_model(f"""
        g (float[N,4,5,5] x) => (float[N,4,5,5] y{outputs}) {{
            p = Relu(x)
            n = Neg(x)
            r = Relu(n)
            {mul}
            {add}
        }}""", rng, c=-np.abs(rng.standard_normal((4, 1, 1))).astype(np.float32) * 0.3
        if c is None else c)


@pytest.mark.parametrize("add", ["y = Add(p, m)", "y = Add(m, p)"])
@pytest.mark.parametrize("mul", ["m = Mul(r, c)", "m = Mul(c, r)"])
def test_the_five_nodes_become_one_prelu(rng, add, mul):
    model = _prelu(rng, add=add, mul=mul)
    out, _ = helpers.assert_rewrites_cleanly(NAME, model, rng, {"PRelu": 1})
    prelu = out.graph.node[0]
    assert prelu.input[0] == "x" and prelu.output[0] == "y"
    slope = next(t for t in out.graph.initializer if t.name == prelu.input[1])
    c = next(t for t in model.graph.initializer if t.name == "c")
    assert np.array_equal(onnx.numpy_helper.to_array(slope), -onnx.numpy_helper.to_array(c))


def test_relu_minus_alpha_times_relu_of_minus_x_becomes_prelu(rng):
    alpha = np.full((4, 1, 1), 0.25, np.float32)
    model = _prelu(rng, add="y = Sub(p, m)", c=alpha)
    out, _ = helpers.assert_rewrites_cleanly(NAME, model, rng, {"PRelu": 1})
    slope = next(t for t in out.graph.initializer if t.name == out.graph.node[0].input[1])
    assert np.array_equal(onnx.numpy_helper.to_array(slope), alpha)


def test_the_result_is_exact(rng):
    model = _prelu(rng)
    out, _ = apply(model, NAME)
    helpers.assert_same_outputs(model, out, rng, rtol=0, atol=0)


def test_sub_the_other_way_round_is_not_prelu(rng):
    model = _prelu(rng, add="y = Sub(m, p)")
    out, result = apply(model, NAME)
    assert result.rewrites == 0 and not result.skipped and ops(out) == ops(model)


def test_a_factor_that_would_broadcast_x_is_refused(rng):
    model = make_model("""
        g (float[N,4,5,1] x) => (float[N,4,5,3] y) {
            p = Relu(x)
            n = Neg(x)
            r = Relu(n)
            m = Mul(r, c)
            y = Add(p, m)
        }""", rng, c=np.full((1, 1, 3), -0.5, np.float32))
    _, result = apply(model, NAME)
    assert result.rewrites == 0 and len(result.skipped) == 1
    assert "does not broadcast" in next(iter(result.skipped))


def test_an_intermediate_read_elsewhere_keeps_the_pattern(rng):
    model = _prelu(rng, outputs=", float[N,4,5,5] r")
    out, result = apply(model, NAME)
    assert result.rewrites == 0 and ops(out) == ops(model)
    assert next(iter(result.skipped)) == "tensor 'r' is a graph output"


def test_relu_and_neg_of_different_tensors_are_not_prelu(rng):
    model = make_model("""
        g (float[N,4,5,5] x, float[N,4,5,5] z) => (float[N,4,5,5] y) {
            p = Relu(x)
            n = Neg(z)
            r = Relu(n)
            m = Mul(r, c)
            y = Add(p, m)
        }""", rng, c=np.full((4, 1, 1), -0.5, np.float32))
    _, result = apply(model, NAME)
    assert result.rewrites == 0 and not result.skipped

"""cancel-transposes-across: inverse Transposes with elementwise ops between them cancel."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from tests import helpers
from tests.helpers import apply, make_model, ops

NAME = "cancel-transposes-across"


def _sandwich(rng, middle: str, *, second: str = "0,3,1,2", outputs: str = "",
              **inits) -> onnx.ModelProto:
    return make_model(f"""
        g (float[N,3,4,5] x) => (float[N,3,4,5] y{outputs}) {{
            a = Relu(x)
            t = Transpose<perm=[0,2,3,1]>(a)
            {middle}
            y = Transpose<perm=[{second}]>(m)
        }}""", rng, **inits)


def _initializer(model: onnx.ModelProto, node: onnx.NodeProto, slot: int) -> np.ndarray:
    return onnx.numpy_helper.to_array(
        next(t for t in model.graph.initializer if t.name == node.input[slot]))


@pytest.mark.parametrize("shape", [(3,), (1, 1, 3), (4, 5, 3), (1, 4, 5, 3), ()])
def test_a_pair_around_mul_and_add_cancels_with_the_constants_transposed(rng, shape):
    c = rng.standard_normal(shape).astype(np.float32)
    model = _sandwich(rng, "p = Mul(t, c)\n            m = Add(d, p)", c=c,
                      d=np.full((3,), 0.5, np.float32))
    out, _ = helpers.assert_rewrites_cleanly(NAME, model, rng, {"Relu": 1, "Mul": 1,
                                                                 "Add": 1})
    mul = next(n for n in out.graph.node if n.op_type == "Mul")
    assert mul.input[0] == "a"
    full = c.reshape((1,) * (4 - c.ndim) + c.shape)
    assert np.array_equal(_initializer(out, mul, 1), full.transpose(0, 3, 1, 2))
    helpers.assert_same_outputs(model, out, rng, rtol=0, atol=0)


def test_a_chain_of_unary_ops_between_the_pair(rng):
    model = _sandwich(rng, "s = Sigmoid(t)\n            m = Neg(s)")
    helpers.assert_rewrites_cleanly(NAME, model, rng, {"Relu": 1, "Sigmoid": 1, "Neg": 1})


def test_transposes_that_do_not_cancel_stay(rng):
    model = make_model("""
        g (float[N,3,4,5] x) => (float[N,4,5,3] y) {
            a = Relu(x)
            t = Transpose<perm=[0,2,3,1]>(a)
            m = Neg(t)
            y = Transpose<perm=[0,1,2,3]>(m)
        }""", rng)
    out, result = apply(model, NAME)
    assert result.rewrites == 0 and ops(out) == ops(model)


def test_an_intermediate_read_elsewhere_keeps_the_pair(rng):
    model = _sandwich(rng, "m = Neg(t)", outputs=", float[N,4,5,3] t")
    out, result = apply(model, NAME)
    assert result.rewrites == 0 and ops(out) == ops(model)


def test_an_op_that_is_not_elementwise_keeps_the_pair(rng):
    model = _sandwich(rng, "m = Softmax<axis=-1>(t)")
    out, result = apply(model, NAME)
    assert result.rewrites == 0 and ops(out) == ops(model)


def test_two_computed_operands_keep_the_pair(rng):
    model = _sandwich(rng, "m = Mul(t, t)")
    out, result = apply(model, NAME)
    assert result.rewrites == 0 and ops(out) == ops(model)


def test_the_pair_around_a_keras_prelu_then_fuses(rng):
    """tf2onnx's per-position PReLU: the Mul's pair cancels, then fuse-prelu takes it."""
    from fuser import ir
    from fuser.passes import get_pass
    from fuser.passes.manager import PassManager

    alpha = -np.abs(rng.standard_normal((4, 5, 3))).astype(np.float32)
    model = make_model("""
        g (float[N,3,4,5] x) => (float[N,3,4,5] y) {
            p = Relu(x)
            n = Neg(x)
            r = Relu(n)
            t = Transpose<perm=[0,2,3,1]>(r)
            q = Mul(t, c)
            m = Transpose<perm=[0,3,1,2]>(q)
            y = Add(p, m)
        }""", rng, c=alpha)
    graph = ir.to_graph(model)
    ir.annotate(graph, ir.infer_shapes(model))
    PassManager([get_pass(NAME), get_pass("fuse-prelu")]).run(graph)
    out = ir.to_model(graph, template=model)
    helpers.check(out)
    assert ops(out) == {"PRelu": 1}
    helpers.assert_same_outputs(model, out, rng, rtol=0, atol=0)


SE_GATE = """
    g (float[2,3,4,5] x, float[2,3] s) => (float[2,3,4,5] y) {{
        a = Relu(x)
        t = Transpose<perm=[0,2,3,1]>(a)
        {gate}
        m = Mul(t, r)
        y = Transpose<perm=[0,3,1,2]>(m)
    }}"""


def test_an_se_gate_reshaped_by_its_own_reshape_lets_the_pair_cancel(rng):
    model = make_model(SE_GATE.format(gate="q = Sigmoid(s)\n        r = Reshape(q, shape)"),
                       rng, shape=np.array([2, 1, 1, 3], np.int64))
    out, _ = helpers.assert_rewrites_cleanly(NAME, model, rng, {"Relu": 1, "Sigmoid": 1,
                                                                 "Reshape": 1, "Mul": 1})
    reshape = next(n for n in out.graph.node if n.op_type == "Reshape")
    assert _initializer(out, reshape, 1).tolist() == [2, 3, 1, 1]
    helpers.assert_same_outputs(model, out, rng, rtol=0, atol=0)


def test_a_computed_gate_without_a_reshape_gets_one(rng):
    model = make_model("""
        g (float[2,3,4,5] x, float[2,1,1,3] s) => (float[2,3,4,5] y) {
            a = Relu(x)
            t = Transpose<perm=[0,2,3,1]>(a)
            r = Sigmoid(s)
            m = Mul(r, t)
            y = Transpose<perm=[0,3,1,2]>(m)
        }""", rng)
    out, _ = helpers.assert_rewrites_cleanly(NAME, model, rng, {"Relu": 1, "Sigmoid": 1,
                                                                 "Reshape": 1, "Mul": 1})
    helpers.assert_same_outputs(model, out, rng, rtol=0, atol=0)


def test_a_computed_operand_whose_transpose_moves_data_keeps_the_pair(rng):
    model = make_model("""
        g (float[2,3,4,5] x, float[2,4,5,3] s) => (float[2,3,4,5] y) {
            a = Relu(x)
            t = Transpose<perm=[0,2,3,1]>(a)
            r = Sigmoid(s)
            m = Mul(t, r)
            y = Transpose<perm=[0,3,1,2]>(m)
        }""", rng)
    out, result = apply(model, NAME)
    assert result.rewrites == 0 and ops(out) == ops(model)


def test_an_se_gate_with_a_symbolic_batch_gets_minus_1_for_it(rng):
    model = make_model("""
        g (float[N,3,4,5] x, float[N,3] s) => (float[N,3,4,5] y) {
            a = Relu(x)
            t = Transpose<perm=[0,2,3,1]>(a)
            q = Sigmoid(s)
            r = Reshape(q, shape)
            m = Mul(t, r)
            y = Transpose<perm=[0,3,1,2]>(m)
        }""", rng, shape=np.array([-1, 1, 1, 3], np.int64))
    out, _ = helpers.assert_rewrites_cleanly(NAME, model, rng, {"Relu": 1, "Sigmoid": 1,
                                                                 "Reshape": 1, "Mul": 1})
    reshape = next(n for n in out.graph.node if n.op_type == "Reshape")
    assert _initializer(out, reshape, 1).tolist() == [-1, 3, 1, 1]
    helpers.assert_same_outputs(model, out, rng, rtol=0, atol=0, batch=3)

"""merge-reshapes: Reshape (or Flatten) followed by Reshape becomes one Reshape."""

from __future__ import annotations

import functools

import numpy as np
import onnx
import pytest

from tests import helpers
from tests.helpers import apply, assert_same_outputs, check, make_model, ops

NAME = "merge-reshapes"


def i64(*values: int) -> np.ndarray:
    return np.array(values, np.int64)


def pair(rng, inner: str, *, outer="b = Reshape(r, s2)", xtype="float[N,3,4]",
         ytype="float[N,6,2]", **inits):
    return make_model(f"""
        g ({xtype} x) => ({ytype} y) {{
            a = Relu(x)
            {inner}
            {outer}
            y = Neg(b)
        }}""", rng, **inits)


def reshape_node(model):
    return next(n for n in model.graph.node if n.op_type == "Reshape")


def assert_merged(model, rng, expect_ops, rewrites=1):
    return helpers.assert_rewrites_cleanly(NAME, model, rng, expect_ops, rewrites)


INNERS = {
    "reshape-with-0": ("r = Reshape(a, s1)", {"s1": i64(0, 12)}),
    "reshape-with-minus-1": ("r = Reshape(a, s1)", {"s1": i64(-1, 4)}),
    "flatten": ("r = Flatten<axis=1>(a)", {}),
    "flatten-axis-0": ("r = Flatten<axis=0>(a)", {}),
}


@pytest.mark.parametrize("inner, inits", INNERS.values(), ids=INNERS.keys())
def test_reshape_or_flatten_merges_into_the_reshape_after_it(rng, inner, inits):
    model = pair(rng, inner, s2=i64(-1, 6, 2), **inits)
    out, _ = assert_merged(model, rng, {"Relu": 1, "Reshape": 1, "Neg": 1})
    node = reshape_node(out)
    assert list(node.input) == ["a", "s2"]
    assert list(node.output) == ["b"]


def test_chain_of_three_reshapes_becomes_one(rng):
    model = make_model("""
        g (float[N,3,4] x) => (float[N,2,6] y) {
            a = Relu(x)
            r = Reshape(a, s1)
            q = Flatten<axis=2>(r)
            b = Reshape(q, s3)
            y = Neg(b)
        }""", rng, s1=i64(0, 12, 1), s3=i64(-1, 2, 6))
    out, _ = assert_merged(model, rng, {"Relu": 1, "Reshape": 1, "Neg": 1}, rewrites=2)
    assert list(reshape_node(out).input) == ["a", "s3"]


def test_outer_allowzero_target_with_0_merges(rng):
    # allowzero=1: a 0 is a dim of size 0, not a copy of the intermediate's dim.
    model = make_model("""
        g (float[N,3,4] x) => (float[0,6,2] y) {
            a = Slice(x, st, en, ax)
            r = Reshape(a, s1)
            b = Reshape<allowzero=1>(r, s2)
            y = Neg(b)
        }""", rng, st=i64(0), en=i64(0), ax=i64(0), s1=i64(-1, 12), s2=i64(0, 6, 2))
    out, _ = assert_merged(model, rng, {"Slice": 1, "Reshape": 1, "Neg": 1})
    assert list(reshape_node(out).input) == ["a", "s2"]


@pytest.mark.parametrize("use", ["consumer", "graph-output"])
def test_intermediate_read_elsewhere_stays(rng, use):
    outputs = "float[N,6,2] y, float[N,12] z" if use == "consumer" else \
        "float[N,6,2] y, float[N,12] r"
    extra = "z = Abs(r)" if use == "consumer" else ""
    model = make_model(f"""
        g (float[N,3,4] x) => ({outputs}) {{
            a = Relu(x)
            r = Reshape(a, s1)
            b = Reshape(r, s2)
            y = Neg(b)
            {extra}
        }}""", rng, s1=i64(0, 12), s2=i64(-1, 6, 2))
    out, _ = assert_merged(model, rng, ops(model))  # the inner Reshape still feeds its reader
    inner, outer = (n for n in out.graph.node if n.op_type == "Reshape")
    assert list(inner.input) == ["a", "s1"]
    assert list(outer.input) == ["a", "s2"]


# ---------------------------------------------------------------- negative cases


assert_skipped = functools.partial(helpers.assert_skipped, NAME)


def test_outer_target_with_0_is_not_merged(rng):
    # 0 copies the intermediate's dim (3 here), which is not x's (2): merging changes the shape.
    text = """
        g (float[2,3,4] x) => (float[3,8] y) {{
            a = Relu(x)
            {inner}
            b = Reshape(r, s2)
            y = Neg(b)
        }}"""
    inits = {"s1": i64(3, 8), "s2": i64(0, -1)}
    model = make_model(text.format(inner="r = Reshape(a, s1)"), rng, **inits)
    out, _ = assert_skipped(model, "Reshape -> 'b' copies a dim of its input (0 in its target "
                                   "shape)")
    check(out)
    assert_same_outputs(model, out, rng)
    # Not vacuous: the merged graph would give [2, 12], not [3, 8].
    merged = make_model(text.format(inner="r = Identity(a)").replace("float[3,8] y",
                                                                     "float[2,12] y"),
                        rng, **inits)
    with pytest.raises(AssertionError):
        assert_same_outputs(model, merged, rng)


def test_outer_target_that_is_not_a_constant_is_not_merged(rng):
    model = make_model("""
        g (float[N,3,4] x, float[M,12] z) => (float[M,12] y) {
            a = Relu(x)
            r = Reshape(a, s1)
            s = Shape(z)
            b = Reshape(r, s)
            y = Neg(b)
        }""", rng, s1=i64(0, 12))
    out, _ = assert_skipped(model, "Reshape -> 'b' has a target shape that is not a constant")
    check(out)
    assert_same_outputs(model, out, rng)


def test_reshape_after_another_op_is_not_a_candidate(rng):
    model = pair(rng, "r = Abs(a)", s2=i64(-1, 6, 2))
    out, result = apply(model, NAME)
    assert result.rewrites == 0 and not result.skipped
    assert ops(out) == ops(model)
    assert_same_outputs(model, out, rng)


# --- Squeeze and Unsqueeze in the chain (tf2onnx's 1-D convolutions) -------------------------

def test_reshape_unsqueeze_reshape_becomes_one_reshape(rng):
    model = make_model("""
        g (float[N,3,4] x) => (float[N,2,6] y) {
            a = Relu(x)
            r = Reshape(a, s1)
            u = Unsqueeze(r, ax)
            b = Reshape(u, s2)
            y = Neg(b)
        }""", rng, s1=i64(-1, 12), ax=i64(1), s2=i64(-1, 2, 6))
    out, _ = assert_merged(model, rng, {"Relu": 1, "Reshape": 1, "Neg": 1}, rewrites=2)
    assert list(reshape_node(out).input) == ["a", "s2"]


@pytest.mark.parametrize("axes, target", [((1,), (-1, 1, 12)), ((-1,), (-1, 12, 1)),
                                          ((0, 3), (1, -1, 12, 1))])
def test_unsqueeze_after_a_reshape_becomes_a_reshape_with_its_1s(rng, axes, target):
    model = make_model(f"""
        g (float[N,3,4] x) => (float[{','.join('?' * len(target))}] y) {{
            a = Relu(x)
            r = Reshape(a, s1)
            u = Unsqueeze(r, ax)
            y = Concat<axis=-1>(u, u)
        }}""", rng, s1=i64(-1, 12), ax=np.array(axes, np.int64))
    out, _ = assert_merged(model, rng, {"Relu": 1, "Reshape": 1, "Concat": 1})
    node = reshape_node(out)
    assert node.input[0] == "a"
    shape = next(t for t in out.graph.initializer if t.name == node.input[1])
    assert onnx.numpy_helper.to_array(shape).tolist() == list(target)


def test_squeeze_of_1s_after_a_reshape_becomes_a_reshape(rng):
    model = pair(rng, "r = Reshape(a, s1)", outer="b = Squeeze(r, ax)", ytype="float[N,12]",
                 s1=i64(-1, 1, 12, 1), ax=i64(1, -1))
    out, _ = assert_merged(model, rng, {"Relu": 1, "Reshape": 1, "Neg": 1})
    shape = next(t for t in out.graph.initializer if t.name == reshape_node(out).input[1])
    assert onnx.numpy_helper.to_array(shape).tolist() == [-1, 12]


def test_squeeze_of_a_dim_the_target_does_not_fix_at_1_is_not_merged(rng):
    # the -1 is 1 for this input only: the Squeeze fails on others, a Reshape would not
    model = pair(rng, "r = Reshape(a, s1)", outer="b = Squeeze(r, ax)", xtype="float[1,3,4]",
                 ytype="float[1,12]", s1=i64(1, -1, 12), ax=i64(1))
    helpers.assert_skipped(NAME, model, "Squeeze axes [1] do not name 1s of the target "
                                        "[1, -1, 12]")


def test_unsqueeze_after_a_reshape_copying_a_dim_is_not_merged(rng):
    model = pair(rng, "r = Reshape(a, s1)", outer="b = Unsqueeze(r, ax)",
                 ytype="float[N,1,12]", s1=i64(0, 12), ax=i64(1))
    _, result = apply(model, NAME)
    assert result.rewrites == 0 and len(result.skipped) == 1
    assert "copies a dim of its input (0 in its target shape)" in next(iter(result.skipped))


def test_allowzero_is_kept_when_an_unsqueeze_becomes_a_reshape(rng):
    model = make_model("""
        g (float[N,3,4] x) => (float[2,0,1,5] y) {
            a = Relu(x)
            e = Slice(a, st, en, ax0)
            r = Reshape<allowzero=1>(e, s1)
            y = Unsqueeze(r, ax)
        }""", rng, st=i64(0), en=i64(0), ax0=i64(1), s1=i64(2, 0, 5), ax=i64(2))
    out, result = apply(model, NAME)
    assert result.rewrites == 1 and ops(out)["Unsqueeze"] == 0
    check(out)
    assert reshape_node(out).attribute[0].name == "allowzero"
    assert_same_outputs(model, out, rng)

"""merge-reshapes: Reshape (or Flatten) followed by Reshape becomes one Reshape."""

from __future__ import annotations

import functools

import numpy as np
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

"""merge-slices: a Slice of a Slice on other axes becomes one Slice."""

from __future__ import annotations

import functools

import numpy as np

from tests import helpers
from tests.helpers import make_model

NAME = "merge-slices"
assert_skipped = functools.partial(helpers.assert_skipped, NAME)


def i64(*values):
    return np.array(values, np.int64)


def focus_model(rng, axes2=(-1,), opset_header=helpers.HEADER):
    """YOLO's Focus layer: x[..., ::2, :] then [..., ::2] (two Slices on two axes)."""
    return make_model("""
        g (float[N,3,8,8] x) => (float[N,3,?,?] y) {
            a = Slice(x, s1, e1, a1, t1)
            y = Slice(a, s2, e2, a2, t2)
        }""", rng, header=opset_header, s1=i64(0), e1=i64(8), a1=i64(2), t1=i64(2),
        s2=i64(1), e2=i64(8), a2=i64(*axes2), t2=i64(2))


def test_slices_on_two_axes_merge(rng):
    out, _ = helpers.assert_rewrites(NAME, focus_model(rng), rng, {"Slice": 1})
    (node,) = out.graph.node
    assert node.input[0] == "x"


def test_slices_of_the_same_axis_stay(rng):
    model = focus_model(rng, axes2=(2,))
    assert_skipped(model, "Slice -> 'a' and Slice -> 'y' slice the same axis")


def test_negative_axis_that_names_the_same_axis_stays(rng):
    model = focus_model(rng, axes2=(-2,))  # -2 of a rank-4 tensor is axis 2
    assert_skipped(model, "Slice -> 'a' and Slice -> 'y' slice the same axis")


def test_arguments_that_are_not_constants_stay(rng):
    model = make_model("""
        g (float[N,3,8,8] x, int64[1] s) => (float[N,3,4,4] y) {
            a = Slice(x, s1, e1, a1, t1)
            y = Slice(a, s, e2, a2, t2)
        }""", rng, s1=i64(0), e1=i64(8), a1=i64(2), t1=i64(2), e2=i64(8), a2=i64(3),
        t2=i64(2))
    assert_skipped(model, "Slice -> 'y' has arguments that are not constants")


def test_intermediate_read_elsewhere_stays_for_its_reader(rng):
    model = make_model("""
        g (float[N,3,8,8] x) => (float[N,3,4,4] y, float[N,3,4,8] z) {
            a = Slice(x, s1, e1, a1, t1)
            y = Slice(a, s2, e2, a2, t2)
            z = Neg(a)
        }""", rng, s1=i64(0), e1=i64(8), a1=i64(2), t1=i64(2), s2=i64(1), e2=i64(8),
        a2=i64(3), t2=i64(2))
    out, _ = helpers.assert_rewrites(NAME, model, rng, {"Slice": 2, "Neg": 1})
    y = next(n for n in out.graph.node if n.output[0] == "y")
    assert y.input[0] == "x"

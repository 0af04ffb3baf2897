"""merge-unsqueezes: two Unsqueezes in a row become one with the combined axes."""

from __future__ import annotations

import functools

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fuser.passes.exact.merge_unsqueezes import merged_axes
from tests import helpers
from tests.helpers import assert_same_outputs, check, make_model, ops

NAME = "merge-unsqueezes"
OPSET_11 = '< ir_version: 6, opset_import: ["" : 11] >'
PRIMES = (2, 3, 5, 7)


def i64(*values: int) -> np.ndarray:
    return np.array(values, np.int64)


@st.composite
def unsqueeze_pairs(draw):
    """A rank (1-4) and two valid axes lists: distinct positions in the output rank of each
    Unsqueeze, each written as a negative axis or not."""
    def axes(count: int, out_rank: int) -> list[int]:
        chosen = draw(st.lists(st.integers(0, out_rank - 1), min_size=count, max_size=count,
                               unique=True))
        negative = draw(st.lists(st.booleans(), min_size=count, max_size=count))
        return [a - out_rank if neg else a for a, neg in zip(chosen, negative, strict=True)]

    rank, n1, n2 = draw(st.integers(1, 4)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    return rank, axes(n1, rank + n1), axes(n2, rank + n1 + n2)


@settings(max_examples=300, deadline=None)
@given(unsqueeze_pairs())
def test_merged_axes_match_numpy(case):
    rank, first, second = case
    x = np.arange(np.prod(PRIMES[:rank])).reshape(PRIMES[:rank])  # distinct dims and values
    twice = np.expand_dims(np.expand_dims(x, tuple(first)), tuple(second))
    axes = merged_axes(rank, first, second)
    once = np.expand_dims(x, tuple(axes))
    assert once.shape == twice.shape
    np.testing.assert_array_equal(once, twice)
    assert axes == sorted(set(axes)) and all(0 <= a < twice.ndim for a in axes)


@pytest.mark.parametrize("rank, first, second, expected", [
    (2, [-1], [-1], [2, 3]),  # x.unsqueeze(-1).unsqueeze(-1)
    (2, [0], [2], [0, 2]),
    (2, [2], [0], [0, 3]),  # the first 1 moves right by the second's
    (1, [0, 1], [1], [0, 1, 2]),
    (3, [-4], [1, -1], [0, 1, 5]),
])
def test_merged_axes_examples(rank, first, second, expected):
    assert merged_axes(rank, first, second) == expected


def unsqueeze(model: onnx.ModelProto) -> onnx.NodeProto:
    return next(n for n in model.graph.node if n.op_type == "Unsqueeze")


def axes_of(model: onnx.ModelProto, node: onnx.NodeProto) -> list[int]:
    attrs = {a.name: a for a in node.attribute}
    if "axes" in attrs:
        return list(attrs["axes"].ints)
    tensor = next(t for t in model.graph.initializer if t.name == node.input[1])
    return onnx.numpy_helper.to_array(tensor).tolist()


def assert_merged(model, rng, expect_ops, rewrites=1):
    return helpers.assert_rewrites_cleanly(NAME, model, rng, expect_ops, rewrites)


CASES = {  # x type, y type, first axes, second axes, merged
    "se-block": ("float[N,8]", "float[N,8,1,1]", [-1], [-1], [2, 3]),
    "apart": ("float[3,4]", "float[1,3,1,4]", [0], [2], [0, 2]),
    "second-before-first": ("float[N,4]", "float[1,N,4,1]", [2], [0], [0, 3]),
    "several": ("float[N,4]", "float[1,1,N,4,1]", [0, -1], [1], [0, 1, 4]),
}


@pytest.mark.parametrize("form", ["opset-11-attribute", "opset-17-input"])
@pytest.mark.parametrize("xtype, ytype, a1, a2, want", CASES.values(), ids=CASES.keys())
def test_two_unsqueezes_merge(rng, form, xtype, ytype, a1, a2, want):
    if form == "opset-11-attribute":
        lines, header, inits = (f"m = Unsqueeze<axes={a1}>(a)\n b = Unsqueeze<axes={a2}>(m)",
                                OPSET_11, {})
    else:
        lines, header, inits = ("m = Unsqueeze(a, a1)\n b = Unsqueeze(m, a2)", helpers.HEADER,
                                {"a1": i64(*a1), "a2": i64(*a2)})
    model = make_model(f"""
        g ({xtype} x) => ({ytype} y) {{
            a = Relu(x)
            {lines}
            y = Neg(b)
        }}""", rng, header=header, **inits)
    out, _ = assert_merged(model, rng, {"Relu": 1, "Unsqueeze": 1, "Neg": 1})
    node = unsqueeze(out)
    assert node.input[0] == "a" and list(node.output) == ["b"]
    assert axes_of(out, node) == want


def test_chain_of_three_unsqueezes_becomes_one(rng):
    model = make_model("""
        g (float[N,8] x) => (float[N,8,1,1,1] y) {
            a = Relu(x)
            m = Unsqueeze(a, ax)
            n = Unsqueeze(m, ax)
            b = Unsqueeze(n, ax)
            y = Neg(b)
        }""", rng, ax=i64(-1))
    out, _ = assert_merged(model, rng, {"Relu": 1, "Unsqueeze": 1, "Neg": 1}, rewrites=2)
    assert axes_of(out, unsqueeze(out)) == [2, 3, 4]


@pytest.mark.parametrize("use", ["consumer", "graph-output"])
def test_intermediate_read_elsewhere_stays(rng, use):
    outputs = "float[N,8,1,1] y, " + ("float[N,8,1] z" if use == "consumer" else
                                      "float[N,8,1] m")
    extra = "z = Abs(m)" if use == "consumer" else ""
    model = make_model(f"""
        g (float[N,8] x) => ({outputs}) {{
            a = Relu(x)
            m = Unsqueeze(a, ax)
            b = Unsqueeze(m, ax)
            y = Neg(b)
            {extra}
        }}""", rng, ax=i64(-1))
    out, _ = assert_merged(model, rng, ops(model))
    outer = next(n for n in out.graph.node if n.op_type == "Unsqueeze" and n.output[0] == "b")
    assert outer.input[0] == "a" and axes_of(out, outer) == [2, 3]


# ---------------------------------------------------------------- negative cases


assert_skipped = functools.partial(helpers.assert_skipped, NAME)


def assert_stays(model, rng, reason):
    out, _ = assert_skipped(model, reason)
    check(out)
    assert_same_outputs(model, out, rng)


@pytest.mark.parametrize("which", ["m", "b"])
def test_axes_that_are_not_a_constant_stay(rng, which):
    line_m = "m = Unsqueeze(a, k)" if which == "m" else "m = Unsqueeze(a, ax)"
    line_b = "b = Unsqueeze(m, k)" if which == "b" else "b = Unsqueeze(m, ax)"
    model = make_model(f"""
        g (float[N,8] x) => (float[N,8,1,1] y) {{
            a = Relu(x)
            k = Constant<value = int64[1] {{-1}}>()
            {line_m}
            {line_b}
            y = Neg(b)
        }}""", rng, ax=i64(-1))
    assert_stays(model, rng, f"Unsqueeze -> '{which}' has axes that are not a constant")


def test_input_of_unknown_rank_stays(rng):
    # Compress hides the Reshape target's length from inference: r has no shape.
    model = make_model("""
        g (float[N,8] x) => (float[N,8,1,1] y) {
            a = Relu(x)
            s = Shape(a)
            t = Compress<axis=0>(s, c)
            r = Reshape(a, t)
            m = Unsqueeze(r, ax)
            b = Unsqueeze(m, ax)
            y = Neg(b)
        }""", rng, c=np.array([True, True]), ax=i64(-1))
    assert_stays(model, rng, "Unsqueeze -> 'm': rank of its input unknown")

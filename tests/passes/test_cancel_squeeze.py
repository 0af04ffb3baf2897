"""cancel-squeeze-unsqueeze: Unsqueeze -> Squeeze (and the reverse) of the same axes vanish."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from tests import helpers
from tests.helpers import apply, assert_same_outputs, check, make_model, ops, second_run_rewrites

NAME = "cancel-squeeze-unsqueeze"
OPSET_11 = '< ir_version: 6, opset_import: ["" : 11] >'


def i64(*values: int) -> np.ndarray:
    return np.array(values, np.int64)


def pair(rng, first: str, second: str, *, xtype="float[N,3,4]", ytype=None,
         header=helpers.HEADER, **inits):
    """``a = Relu(x)``, ``m = first(a, ...)``, ``b = second(m, ...)``, ``y = Neg(b)``."""
    return make_model(f"""
        g ({xtype} x) => ({ytype or xtype} y) {{
            a = Relu(x)
            m = {first}
            b = {second}
            y = Neg(b)
        }}""", rng, header=header, **inits)


def assert_cancelled(model, rng, expect_ops=None, rewrites=1):
    out, result = apply(model, NAME)
    assert result.rewrites == rewrites, result.skipped
    assert not result.skipped
    assert ops(out) == (expect_ops or {"Relu": 1, "Neg": 1})
    check(out)
    assert_same_outputs(model, out, rng)
    assert second_run_rewrites(out, NAME) == 0
    return out, result


PAIRS = {  # first, second, x type, axes of the first, axes of the second
    "unsqueeze-squeeze": ("Unsqueeze", "Squeeze", "float[N,3,4]", [1], [1]),
    "squeeze-unsqueeze": ("Squeeze", "Unsqueeze", "float[N,1,4]", [1], [1]),
    "unsqueeze-squeeze-two-axes": ("Unsqueeze", "Squeeze", "float[N,3,4]", [0, 4], [4, 0]),
    "squeeze-unsqueeze-two-axes": ("Squeeze", "Unsqueeze", "float[1,3,1]", [0, 2], [2, 0]),
    # Unsqueeze's negative axes count in its output rank (4), Squeeze's in its input rank (4)
    "unsqueeze-minus-1-squeeze-3": ("Unsqueeze", "Squeeze", "float[N,3,4]", [-1], [3]),
    "unsqueeze-3-squeeze-minus-1": ("Unsqueeze", "Squeeze", "float[N,3,4]", [3], [-1]),
    "unsqueeze-mixed-signs": ("Unsqueeze", "Squeeze", "float[N,3,4]", [0, -1], [-5, 4]),
    # Squeeze's negative axes count in its input rank (3), Unsqueeze's in its output rank (3)
    "squeeze-minus-2-unsqueeze-1": ("Squeeze", "Unsqueeze", "float[N,1,4]", [-2], [1]),
    "squeeze-1-unsqueeze-minus-2": ("Squeeze", "Unsqueeze", "float[N,1,4]", [1], [-2]),
}


@pytest.mark.parametrize("first, second, xtype, a1, a2", PAIRS.values(), ids=PAIRS.keys())
def test_pair_cancels_in_input_form(rng, first, second, xtype, a1, a2):
    model = pair(rng, f"{first}(a, a1)", f"{second}(m, a2)", xtype=xtype,
                 a1=i64(*a1), a2=i64(*a2))
    out, _ = assert_cancelled(model, rng)
    assert list(out.graph.node[1].input) == ["a"]


@pytest.mark.parametrize("first, second, xtype, a1, a2", PAIRS.values(), ids=PAIRS.keys())
def test_pair_cancels_in_opset_11_attribute_form(rng, first, second, xtype, a1, a2):
    model = pair(rng, f"{first}<axes={a1}>(a)", f"{second}<axes={a2}>(m)", xtype=xtype,
                 header=OPSET_11)
    out, _ = assert_cancelled(model, rng)
    assert list(out.graph.node[1].input) == ["a"]


def test_pair_before_a_graph_output_renames_the_producer_output(rng):
    model = make_model("""
        g (float[N,3,4] x) => (float[N,3,4] y, float[N,3,4] z) {
            a = Relu(x)
            m = Unsqueeze(a, ax)
            y = Squeeze(m, ax)
            z = Neg(a)
        }""", rng, ax=i64(2))
    out, _ = assert_cancelled(model, rng)
    relu = next(n for n in out.graph.node if n.op_type == "Relu")
    neg = next(n for n in out.graph.node if n.op_type == "Neg")
    assert list(relu.output) == ["y"] and list(neg.input) == ["y"]
    assert [o.name for o in out.graph.output] == ["y", "z"]


def test_intermediate_read_elsewhere_stays_for_its_reader(rng):
    model = make_model("""
        g (float[N,3,4] x) => (float[N,3,4] y, float[N,1,3,4] z) {
            a = Relu(x)
            m = Unsqueeze(a, ax)
            b = Squeeze(m, ax)
            y = Neg(b)
            z = Abs(m)
        }""", rng, ax=i64(1))
    out, _ = assert_cancelled(model, rng, {"Relu": 1, "Unsqueeze": 1, "Neg": 1, "Abs": 1})
    neg = next(n for n in out.graph.node if n.op_type == "Neg")
    assert list(neg.input) == ["a"]


# ---------------------------------------------------------------- negative cases


assert_skipped = functools.partial(helpers.assert_skipped, NAME)


def assert_stays(model, rng, reason):
    out, _ = assert_skipped(model, reason)
    check(out)
    assert_same_outputs(model, out, rng)
    return out


DIFFERENT = {  # x type, y type, first, second
    "unsqueeze-0-squeeze-2": ("float[N,1,4]", "float[1,N,4]", "Unsqueeze(a, a1)",
                              "Squeeze(m, a2)", [0], [2]),
    "squeeze-1-unsqueeze-2": ("float[N,1,4]", "float[N,4,1]", "Squeeze(a, a1)",
                              "Unsqueeze(m, a2)", [1], [2]),
    "unsqueeze-minus-1-squeeze-2": ("float[N,3,1]", "float[N,3,1]", "Unsqueeze(a, a1)",
                                    "Squeeze(m, a2)", [-1], [2]),
}


@pytest.mark.parametrize("xtype, ytype, first, second, a1, a2", DIFFERENT.values(),
                         ids=DIFFERENT.keys())
def test_different_axes_do_not_cancel(rng, xtype, ytype, first, second, a1, a2):
    model = pair(rng, first, second, xtype=xtype, ytype=ytype, a1=i64(*a1), a2=i64(*a2))
    op1, op2 = first.split("(")[0], second.split("(")[0]
    assert_stays(model, rng, f"{op1} -> 'm' and {op2} -> 'b' use different axes")


def test_different_axes_in_attribute_form_do_not_cancel(rng):
    model = pair(rng, "Unsqueeze<axes=[0]>(a)", "Squeeze<axes=[2]>(m)", xtype="float[N,1,4]",
                 ytype="float[1,N,4]", header=OPSET_11)
    assert_stays(model, rng, "Unsqueeze -> 'm' and Squeeze -> 'b' use different axes")


def test_axes_that_are_not_a_constant_do_not_cancel(rng):
    model = make_model("""
        g (float[N,3,4] x) => (float[N,3,4] y) {
            a = Relu(x)
            m = Unsqueeze(a, a1)
            a2 = Constant<value = int64[1] {1}>()
            b = Squeeze(m, a2)
            y = Neg(b)
        }""", rng, a1=i64(1))
    assert_stays(model, rng, "Squeeze -> 'b' has axes that are not a constant")


@pytest.mark.parametrize("header", [helpers.HEADER, OPSET_11], ids=["opset-17", "opset-11"])
def test_squeeze_without_axes_does_not_cancel(rng, header):
    # Squeeze() drops every size-1 dim: here the batch too when N is 1.
    first = "Unsqueeze(a, a1)" if header == helpers.HEADER else "Unsqueeze<axes=[1]>(a)"
    inits = {"a1": i64(1)} if header == helpers.HEADER else {}
    model = pair(rng, first, "Squeeze(m)", ytype="float[?,3,4]", header=header, **inits)
    assert_stays(model, rng, "Squeeze -> 'b' has no axes")


def test_squeeze_without_axes_first_does_not_cancel(rng):
    model = pair(rng, "Squeeze(a)", "Unsqueeze(m, a2)", xtype="float[2,1,4]", a2=i64(1))
    assert_stays(model, rng, "Squeeze -> 'm' has no axes")


def test_intermediate_that_is_a_graph_output_does_not_cancel(rng):
    model = make_model("""
        g (float[N,3,4] x) => (float[N,3,4] y, float[N,1,3,4] m) {
            a = Relu(x)
            m = Unsqueeze(a, ax)
            b = Squeeze(m, ax)
            y = Neg(b)
        }""", rng, ax=i64(1))
    assert_stays(model, rng, "tensor 'm' is a graph output")


def test_input_of_unknown_rank_does_not_cancel(rng):
    # Compress hides the Reshape target's length from inference: r has no shape.
    model = make_model("""
        g (float[N,3,4] x) => (float[N,3,4] y) {
            a = Relu(x)
            s = Shape(a)
            t = Compress<axis=0>(s, c)
            r = Reshape(a, t)
            m = Unsqueeze(r, ax)
            b = Squeeze(m, ax)
            y = Neg(b)
        }""", rng, c=np.array([True, True, True]), ax=i64(-1))
    assert_stays(model, rng, "Unsqueeze -> 'm': rank of its input unknown")


def test_pair_joining_a_graph_input_to_a_graph_output_stays_intact(rng):
    model = make_model("""
        g (float[N,3,4] x) => (float[N,3,4] y) {
            m = Unsqueeze(x, ax)
            y = Squeeze(m, ax)
        }""", rng, ax=i64(1))
    out = assert_stays(model, rng, "Squeeze -> 'y' joins a graph input/constant or output to "
                                   "a graph output")
    squeeze = next(n for n in out.graph.node if n.op_type == "Squeeze")
    assert list(squeeze.input) == ["m", "ax"]  # the tentative rewiring was undone

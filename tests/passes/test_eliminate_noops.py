"""eliminate-noops: Reshape/Flatten/Cast/Slice/Expand/Concat/Pad that change nothing go."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from tests import helpers
from tests.helpers import apply, assert_same_outputs, check, make_model, ops

NAME = "eliminate-noops"
BIG = np.iinfo(np.int64).max


def i64(*values: int) -> np.ndarray:
    return np.array(values, np.int64)


def chain(rng, line: str, *, xtype="float[N,4]", ytype=None, header=helpers.HEADER, **inits):
    """``a = Relu(x)``, the node under test (``b = ...(a, ...)``), ``y = Neg(b)``."""
    return make_model(f"""
        g ({xtype} x) => ({ytype or xtype} y) {{
            a = Relu(x)
            {line}
            y = Neg(b)
        }}""", rng, header=header, **inits)


def assert_removed(model, rng, expect_ops, rewrites=1):
    return helpers.assert_rewrites_cleanly(NAME, model, rng, expect_ops, rewrites)


def assert_kept(model, rng):
    """Not a candidate: nothing rewritten, no skip reason, same ops, same outputs."""
    out, result = apply(model, NAME)
    assert result.rewrites == 0
    assert not result.skipped
    assert ops(out) == ops(model)
    check(out)
    assert_same_outputs(model, out, rng)
    return out


NOOPS = {
    "reshape-static": ("b = Reshape(a, s)", "float[2,3,4]", {"s": i64(2, 3, 4)}),
    "reshape-0-copies-symbolic-batch": ("b = Reshape(a, s)", "float[N,3,4]",
                                        {"s": i64(0, 3, 4)}),
    "reshape-to-own-shape-symbolic-batch": ("s = Shape(a)\n b = Reshape(a, s)", "float[N,3,4]",
                                            {}),
    "flatten-2d": ("b = Flatten<axis=1>(a)", "float[N,6]", {}),
    "cast-same-type": ("b = Cast<to=1>(a)", "float[N,4]", {}),
    "slice-steps-1-everything": (  # static: inference gives no N for a slice of axis N
        "b = Slice(a, st, en, ax, sp)", "float[2,4]",
        {"st": i64(0, 0), "en": i64(BIG, 100), "ax": i64(0, 1), "sp": i64(1, 1)}),
    "slice-without-steps": ("b = Slice(a, st, en, ax)", "float[N,4]",
                            {"st": i64(-4), "en": i64(4), "ax": i64(-1)}),
    "expand-broadcast-1": ("b = Expand(a, s)", "float[N,4]", {"s": i64(1, 4)}),
    "expand-lower-rank": ("b = Expand(a, s)", "float[N,4]", {"s": i64(4)}),
    "concat-one-input": ("b = Concat<axis=1>(a)", "float[N,4]", {}),
    "pad-zeros": ("b = Pad(a, p)", "float[N,4]", {"p": i64(0, 0, 0, 0)}),
    "pad-zeros-reflect": ('b = Pad<mode="reflect">(a, p)', "float[N,4]", {"p": i64(0, 0, 0, 0)}),
}


@pytest.mark.parametrize("line, xtype, inits", NOOPS.values(), ids=NOOPS.keys())
def test_noop_is_removed(rng, line, xtype, inits):
    model = chain(rng, line, xtype=xtype, **inits)
    out, _ = assert_removed(model, rng, {"Relu": 1, "Neg": 1})
    assert list(out.graph.node[1].input) == ["a"]


def test_cast_of_int64_to_int64_is_removed(rng):
    model = make_model("""
        g (float[N,4] x) => (int64[2] y) {
            s = Shape(x)
            c = Cast<to=7>(s)
            y = Neg(c)
        }""", rng)
    assert_removed(model, rng, {"Shape": 1, "Neg": 1})


LEGACY = {  # attribute forms: Pad's pads before opset 11, Slice's ranges before opset 10
    "pad-opset-10": ("b = Pad<pads=[0,0,0,0]>(a)", '< ir_version: 5, opset_import: ["" : 10] >'),
    "slice-opset-9": ("b = Slice<starts=[0], ends=[100], axes=[1]>(a)",
                      '< ir_version: 4, opset_import: ["" : 9] >'),
}


@pytest.mark.parametrize("line, header", LEGACY.values(), ids=LEGACY.keys())
def test_legacy_attribute_forms_are_removed(rng, line, header):
    model = chain(rng, line, xtype="float[2,4]", header=header)
    assert_removed(model, rng, {"Relu": 1, "Neg": 1})


def test_chain_of_noops_is_removed(rng):
    model = make_model("""
        g (float[N,3,4] x) => (float[N,3,4] y) {
            a = Relu(x)
            b = Reshape(a, s)
            c = Cast<to=1>(b)
            d = Concat<axis=0>(c)
            e = Pad(d, p)
            y = Neg(e)
        }""", rng, s=i64(0, 3, 4), p=np.zeros(6, np.int64))
    out, _ = assert_removed(model, rng, {"Relu": 1, "Neg": 1}, rewrites=4)
    assert list(out.graph.node[1].input) == ["a"]


def test_noop_to_a_graph_output_renames_the_producer_output(rng):
    model = make_model("""
        g (float[N,3,4] x) => (float[N,3,4] y, float[N,3,4] z) {
            a = Relu(x)
            y = Cast<to=1>(a)
            z = Neg(a)
        }""", rng)
    out, _ = assert_removed(model, rng, {"Relu": 1, "Neg": 1})
    relu = next(n for n in out.graph.node if n.op_type == "Relu")
    neg = next(n for n in out.graph.node if n.op_type == "Neg")
    assert list(relu.output) == ["y"]  # the graph output keeps its name
    assert list(neg.input) == ["y"]
    assert [o.name for o in out.graph.output] == ["y", "z"]


# ---------------------------------------------------------------- negative cases


CHANGES = {
    "reshape-changes-shape": ("b = Reshape(a, s)", "float[2,3,4]", "float[6,4]",
                              {"s": i64(6, 4)}),
    "reshape-swaps-dims": ("b = Reshape(a, s)", "float[2,3,4]", "float[2,4,3]",
                           {"s": i64(2, 4, 3)}),
    "flatten-3d": ("b = Flatten<axis=1>(a)", "float[N,3,4]", "float[N,12]", {}),
    "cast-to-double": ("b = Cast<to=11>(a)", "float[N,4]", "double[N,4]", {}),
    "cast-to-int32": ("b = Cast<to=6>(a)", "float[N,4]", "int32[N,4]", {}),
    "slice-crops": ("b = Slice(a, st, en, ax, sp)", "float[N,4]", "float[N,3]",
                    {"st": i64(1), "en": i64(BIG), "ax": i64(1), "sp": i64(1)}),
    "slice-step-2": ("b = Slice(a, st, en, ax, sp)", "float[N,4]", "float[N,2]",
                     {"st": i64(0), "en": i64(BIG), "ax": i64(1), "sp": i64(2)}),
    "expand-broadcasts": ("b = Expand(a, s)", "float[N,1]", "float[N,4]", {"s": i64(1, 4)}),
    "concat-two-inputs": ("b = Concat<axis=1>(a, a)", "float[N,4]", "float[N,8]", {}),
    "pad-nonzero": ("b = Pad(a, p)", "float[N,4]", "float[N,5]", {"p": i64(0, 0, 0, 1)}),
}


@pytest.mark.parametrize("line, xtype, ytype, inits", CHANGES.values(), ids=CHANGES.keys())
def test_node_that_changes_its_input_stays(rng, line, xtype, ytype, inits):
    assert_kept(chain(rng, line, xtype=xtype, ytype=ytype, **inits), rng)


def test_slice_with_step_minus_1_keeps_the_shape_but_reverses_and_stays(rng):
    line = "b = Slice(a, st, en, ax, sp)"
    inits = {"st": i64(-1), "en": i64(-BIG), "ax": i64(1), "sp": i64(-1)}
    model = chain(rng, line, **inits)
    assert_kept(model, rng)
    # The numerics check above is not vacuous: dropping this Slice changes the outputs.
    dropped = chain(rng, "b = Identity(a)")
    with pytest.raises(AssertionError):
        assert_same_outputs(model, dropped, rng)


@pytest.mark.parametrize("line, step", [
    ("b = Slice(a, st, en, ax, sp)", -1),  # same shape, reversed
    ("b = Slice(a, st, en, ax, sp)", 1),
    ("b = Pad(a, sp)", 0),
], ids=["slice-steps-minus-1", "slice-steps-1", "pad-zeros"])
def test_amounts_that_are_not_a_constant_stay(rng, line, step):
    # A Constant node's output is not a constant to the pass (inline-constants makes it one).
    count = 4 if "Pad" in line else 1
    values = ", ".join([str(step)] * count)
    inits = {} if "Pad" in line else {"st": i64(-1 if step < 0 else 0),
                                      "en": i64(-BIG if step < 0 else BIG), "ax": i64(1)}
    model = chain(rng, f"sp = Constant<value = int64[{count}] {{{values}}}>()\n {line}",
                  **inits)
    assert_kept(model, rng)


def test_reshape_to_unknown_dims_stays(rng):
    # At runtime the target is the input's own shape, but inference cannot tell (Abs is not
    # propagated): the output dims are fresh symbols, not N and 4.
    model = chain(rng, "s = Shape(a)\n t = Abs(s)\n b = Reshape(a, t)")
    assert_kept(model, rng)


@pytest.mark.parametrize("op", ["Reshape", "Expand"])
def test_noop_to_a_tensor_of_unknown_rank_stays(rng, op):
    # The target is the input's own shape at runtime, but Compress hides its length from
    # inference, so the output has no shape at all.
    model = chain(rng, f"s = Shape(a)\n t = Compress<axis=0>(s, c)\n b = {op}(a, t)",
                  c=np.array([True, True]))
    assert_kept(model, rng)


def test_reshape_between_different_symbols_stays(rng):
    model = make_model("""
        g (float[N,4] x, float[M,4] z) => (float[M,4] y) {
            a = Relu(x)
            s = Shape(z)
            b = Reshape(a, s)
            y = Neg(b)
        }""", rng)
    assert_kept(model, rng)


assert_skipped = functools.partial(helpers.assert_skipped, NAME)


def test_a_reshape_to_a_graph_output_stays_its_declared_shape_is_not_trusted(rng):
    """Files declare wrong output shapes (ddddocr's OCR model: [1, seqlen] for a 3-D
    output), so a Reshape's "same shape" is never judged from a graph output's."""
    model = make_model("""
        g (float[N,4] x) => (float[N,4] y) {
            a = Relu(x)
            y = Reshape(a, s)
        }""", rng, s=i64(0, 4))
    assert_kept(model, rng)


@pytest.mark.parametrize("op, line, inits", [
    ("Cast", "y = Cast<to=1>(x)", {}),
    ("Pad", "y = Pad(x, p)", {"p": i64(0, 0, 0, 0)}),
], ids=["cast", "pad"])
def test_noop_joining_a_graph_input_to_a_graph_output_stays(rng, op, line, inits):
    model = make_model(f"g (float[N,4] x) => (float[N,4] y) {{\n {line}\n}}", rng, **inits)
    out, _ = assert_skipped(model, f"{op} -> 'y' joins a graph input/constant or output to a "
                                   "graph output")
    check(out)
    assert_same_outputs(model, out, rng)


def test_noop_joining_a_constant_to_a_graph_output_stays(rng):
    model = make_model("""
        g (float[N,4] x) => (float[N,4] z, float[4] y) {
            z = Neg(x)
            y = Cast<to=1>(k)
        }""", rng, k=(4,))
    out, _ = assert_skipped(model, "Cast -> 'y' joins a graph input/constant or output to a "
                                   "graph output")
    check(out)
    assert_same_outputs(model, out, rng)

"""fold-pad-into-conv: zero Pad before a Conv becomes the Conv's own padding."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from tests import helpers
from tests.helpers import make_model

assert_skipped = functools.partial(helpers.assert_skipped, "fold-pad-into-conv")


def pad_model(rng, pads, *, conv_attrs="pads=[1,0,0,1]", extra="", value=None, mode=None,
              outputs="float[N,4,?,?] y"):
    mode_attr = f'<mode="{mode}">' if mode else ""
    value_arg = ", v" if value is not None else ""
    inits = {"W": (4, 3, 3, 3), "p": np.array(pads, np.int64)}
    if value is not None:
        inits["v"] = np.array(value, np.float32)
    return make_model(f"""
        g (float[N,3,8,8] x) => ({outputs}) {{
            z = Pad{mode_attr}(x, p{value_arg})
            y = Conv<kernel_shape=[3,3], {conv_attrs}>(z, W)
            {extra}
        }}""", rng, **inits)


@pytest.mark.parametrize("conv_attrs", ["pads=[1,0,0,1]", 'auto_pad="VALID"'])
def test_zero_pad_folds_into_conv_pads(rng, conv_attrs):
    model = pad_model(rng, [0, 0, 1, 2, 0, 0, 3, 0], conv_attrs=conv_attrs)
    out, _ = helpers.assert_rewrites("fold-pad-into-conv", model, rng, {"Conv": 1},
                                     atol=1e-5, rtol=1e-5)
    attrs = {a.name: a for a in out.graph.node[0].attribute}
    own = [1, 0, 0, 1] if "pads" in conv_attrs else [0, 0, 0, 0]
    expected = [own[0] + 1, own[1] + 2, own[2] + 3, own[3] + 0]
    assert list(attrs["pads"].ints) == expected and "auto_pad" not in attrs


def test_explicit_zero_value_folds(rng):
    model = pad_model(rng, [0, 0, 1, 1, 0, 0, 1, 1], value=0.0)
    helpers.assert_rewrites("fold-pad-into-conv", model, rng, {"Conv": 1})


def test_nonzero_value_is_not_folded(rng):
    assert_skipped(pad_model(rng, [0, 0, 1, 1, 0, 0, 1, 1], value=2.0),
                   "Pad -> 'z' pads with 2, not 0")


def test_reflect_padding_is_not_folded(rng):
    assert_skipped(pad_model(rng, [0, 0, 1, 1, 0, 0, 1, 1], mode="reflect"),
                   "Pad -> 'z' has mode reflect")


def test_channel_padding_is_not_folded(rng):
    model = make_model("""
        g (float[N,3,8,8] x) => (float[N,4,?,?] y) {
            z = Pad(x, p)
            y = Conv<kernel_shape=[3,3]>(z, W)
        }""", rng, W=(4, 4, 3, 3), p=np.array([0, 1, 0, 0, 0, 0, 0, 0], np.int64))
    assert_skipped(model, "Pad -> 'z' pads the batch or channel axis")


def test_cropping_is_not_folded(rng):
    assert_skipped(pad_model(rng, [0, 0, -1, 0, 0, 0, 0, 0]), "Pad -> 'z' crops (negative pads)")


def test_padded_tensor_used_twice_is_not_folded(rng):
    model = pad_model(rng, [0, 0, 1, 1, 0, 0, 1, 1], extra="r = Relu(z)",
                      outputs="float[N,4,?,?] y, float[N,3,10,10] r")
    assert_skipped(model, "tensor 'z' has 2 consumers")


def test_same_autopad_conv_is_not_folded(rng):
    model = pad_model(rng, [0, 0, 1, 1, 0, 0, 1, 1], conv_attrs='auto_pad="SAME_UPPER"')
    assert_skipped(model, "Conv -> 'y' has auto_pad=SAME_UPPER")


# ---------------------------------------------------------------- preconditions (issue 16)


def test_pads_that_are_not_a_constant_are_not_folded(rng):
    model = make_model("""
        g (float[N,3,8,8] x, int64[8] p) => (float[N,4,?,?] y) {
            z = Pad(x, p)
            y = Conv<kernel_shape=[3,3]>(z, W)
        }""", rng, W=(4, 3, 3, 3))
    assert_skipped(model, "Pad -> 'z' has pads that are not a constant")


def test_padding_selected_axes_is_not_folded(rng):
    model = make_model("""
        g (float[N,3,8,8] x) => (float[N,4,?,?] y) {
            z = Pad(x, p, v, a)
            y = Conv<kernel_shape=[3,3]>(z, W)
        }""", rng, header='< ir_version: 8, opset_import: ["" : 18] >', W=(4, 3, 3, 3),
        p=np.array([1, 1, 1, 1], np.int64), v=np.array(0.0, np.float32),
        a=np.array([2, 3], np.int64))
    assert_skipped(model, "Pad -> 'z' pads selected axes")


def test_padding_value_that_is_not_a_constant_is_not_folded(rng):
    model = make_model("""
        g (float[N,3,8,8] x, float v) => (float[N,4,?,?] y) {
            z = Pad(x, p, v)
            y = Conv<kernel_shape=[3,3]>(z, W)
        }""", rng, W=(4, 3, 3, 3), p=np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64))
    assert_skipped(model, "Pad -> 'z' has a padding value that is not a constant")


def test_pad_whose_output_is_a_graph_output_is_not_folded(rng):
    model = pad_model(rng, [0, 0, 1, 1, 0, 0, 1, 1],
                      outputs="float[N,4,?,?] y, float[N,3,10,10] z")
    assert_skipped(model, "tensor 'z' is a graph output")

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


# ------------------------------------------- onnxruntime's flattened convolution (issue 24)


def signal_model(rng, pads, *, width=1, kernel="[5,1]", conv_attrs=""):
    """A 1-D signal laid out as [N, C, T, width] (torchcrepe's form), a Pad, a k x 1 Conv."""
    attrs = f"kernel_shape={kernel}" + (f", {conv_attrs}" if conv_attrs else "")
    return make_model(f"""
        g (float[N,8,16,{width}] x) => (float[N,8,?,?] y) {{
            z = Pad(x, p)
            y = Conv<{attrs}>(z, W)
        }}""", rng, W=(8, 8, 5, 1), p=np.array(pads, np.int64))


SIGNAL_PADS = [0, 0, 2, 0, 0, 0, 2, 0]


def test_pad_before_a_flattened_conv_is_kept(rng):
    """Input width = kernel width, no pads, stride 1: MLAS flattens the Conv; the fold
    would take it off that path (benchmarks/pad_fold.py measures the cost)."""
    assert_skipped(signal_model(rng, SIGNAL_PADS),
                   "Conv -> 'y' keeps Pad -> 'z': with pads it would leave onnxruntime's "
                   "flattened CPU convolution (slower)")


def test_keep_fast_path_off_folds_it(rng):
    out, _ = helpers.assert_rewrites("fold-pad-into-conv", signal_model(rng, SIGNAL_PADS), rng,
                                     {"Conv": 1}, atol=1e-5, rtol=1e-5, keep_fast_path=False)
    attrs = {a.name: a for a in out.graph.node[0].attribute}
    assert list(attrs["pads"].ints) == [2, 0, 2, 0]


@pytest.mark.parametrize("model_args", [
    {"width": 3},  # input wider than the kernel: MLAS flattens neither form
    {"conv_attrs": "strides=[2,1]"},  # strided: never flattened
    {"conv_attrs": "pads=[1,0,1,0]"},  # pads of its own: not flattened before the fold
    {"conv_attrs": "dilations=[2,1]"},  # dilated: never flattened
])
def test_pad_before_a_conv_that_does_not_flatten_folds(rng, model_args):
    helpers.assert_rewrites("fold-pad-into-conv", signal_model(rng, SIGNAL_PADS, **model_args),
                            rng, {"Conv": 1}, atol=1e-5, rtol=1e-5)


def test_padding_the_width_to_the_kernel_is_kept(rng):
    """The padded input (not the Pad's input) is what the Conv reads: width 2 padded by 1
    on each side meets a 5x4 kernel's width (and half the taps or more land on the input)."""
    model = make_model("""
        g (float[N,8,16,2] x) => (float[N,8,?,?] y) {
            z = Pad(x, p)
            y = Conv<kernel_shape=[5,4]>(z, W)
        }""", rng, W=(8, 8, 5, 4), p=np.array([0, 0, 2, 1, 0, 0, 2, 1], np.int64))
    _, result = helpers.apply(model, "fold-pad-into-conv")
    assert result.rewrites == 0 and len(result.skipped) == 1


def test_padding_that_dwarfs_the_input_folds_even_before_a_flattened_conv(rng):
    """A 64-tap kernel over 16 samples padded 31/32: a quarter of the taps land on the input,
    and the fold is the faster form (benchmarks/PAD_FOLD.md: 1.74x)."""
    model = make_model("""
        g (float[N,8,16,1] x) => (float[N,8,?,?] y) {
            z = Pad(x, p)
            y = Conv<kernel_shape=[64,1]>(z, W)
        }""", rng, W=(8, 8, 64, 1), p=np.array([0, 0, 31, 0, 0, 0, 32, 0], np.int64))
    helpers.assert_rewrites("fold-pad-into-conv", model, rng, {"Conv": 1}, atol=1e-4,
                            rtol=1e-4)


@pytest.mark.parametrize(("length", "share"), [(8, 0.125), (16, 0.25), (32, 0.5)])
def test_share_of_taps_on_the_input(rng, length, share):
    from fuser import ir as graph_io
    from fuser.passes.exact.fold_pad import taps_on_input

    model = make_model(f"""
        g (float[N,8,{length},1] x) => (float[N,8,?,?] y) {{
            z = Pad(x, p)
            y = Conv<kernel_shape=[64,1]>(z, W)
        }}""", rng, W=(8, 8, 64, 1), p=np.array([0, 0, 31, 0, 0, 0, 32, 0], np.int64))
    graph = graph_io.to_graph(model)
    graph_io.annotate(graph, graph_io.infer_shapes(model))
    conv = next(n for n in graph.nodes if n.op == "Conv")
    assert taps_on_input(conv, np.array([0, 0, 31, 0, 0, 0, 32, 0])) == pytest.approx(share)

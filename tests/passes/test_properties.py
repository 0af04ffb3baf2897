"""Property tests: folds stay exact over random channels, groups, kernels, strides, pads,
dilations and bias on/off (onnxruntime, optimizations off)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import apply, assert_same_outputs, check, make_model, ops

SETTINGS = settings(max_examples=50, deadline=None)


@st.composite
def conv_geometry(draw, padded: bool = True):
    group = draw(st.sampled_from([1, 2, 3]))
    cin = group * draw(st.integers(1, 3))
    cout = group * draw(st.integers(1, 3))
    k = draw(st.integers(1, 3))
    stride = draw(st.integers(1, 2))
    dilation = draw(st.integers(1, 2))
    pad = draw(st.integers(0, k - 1)) if padded else 0
    bias = draw(st.booleans())
    seed = draw(st.integers(0, 2**16))
    return dict(group=group, cin=cin, cout=cout, k=k, stride=stride, dilation=dilation,
                pad=pad, bias=bias, seed=seed)


def _conv_attrs(g):
    return (f"group={g['group']}, kernel_shape=[{g['k']},{g['k']}], "
            f"strides=[{g['stride']},{g['stride']}], dilations=[{g['dilation']},{g['dilation']}], "
            f"pads=[{g['pad']},{g['pad']},{g['pad']},{g['pad']}]")


@given(conv_geometry())
@SETTINGS
def test_conv_bn_fold_is_exact(g):
    rng = np.random.default_rng(g["seed"])
    inputs = "x, W, B" if g["bias"] else "x, W"
    model = make_model(f"""
        g (float[N,{g['cin']},9,9] x) => (float[N,{g['cout']},?,?] y) {{
            c = Conv<{_conv_attrs(g)}>({inputs})
            y = BatchNormalization(c, s, b, mean, var)
        }}""", rng, W=(g["cout"], g["cin"] // g["group"], g["k"], g["k"]),
        **({"B": (g["cout"],)} if g["bias"] else {}),
        s=(g["cout"],), b=(g["cout"],), mean=(g["cout"],), var=(g["cout"],))
    out, result = apply(model, "fold-batchnorm")
    assert result.rewrites == 1 and ops(out) == {"Conv": 1}
    check(out)
    assert_same_outputs(model, out, rng, rtol=1e-4, atol=1e-5)


@given(conv_geometry())
@SETTINGS
def test_conv_transpose_bn_fold_is_exact(g):
    rng = np.random.default_rng(g["seed"])
    inputs = "x, W, B" if g["bias"] else "x, W"
    model = make_model(f"""
        g (float[N,{g['cin']},5,5] x) => (float[N,{g['cout']},?,?] y) {{
            c = ConvTranspose<{_conv_attrs(g)}>({inputs})
            y = BatchNormalization(c, s, b, mean, var)
        }}""", rng, W=(g["cin"], g["cout"] // g["group"], g["k"], g["k"]),
        **({"B": (g["cout"],)} if g["bias"] else {}),
        s=(g["cout"],), b=(g["cout"],), mean=(g["cout"],), var=(g["cout"],))
    out, result = apply(model, "fold-batchnorm")
    assert result.rewrites == 1 and ops(out) == {"ConvTranspose": 1}
    check(out)
    assert_same_outputs(model, out, rng, rtol=1e-4, atol=1e-5)


@given(conv_geometry(padded=False))
@SETTINGS
def test_bn_before_unpadded_conv_fold_is_exact(g):
    rng = np.random.default_rng(g["seed"])
    inputs = "z, W, B" if g["bias"] else "z, W"
    model = make_model(f"""
        g (float[N,{g['cin']},9,9] x) => (float[N,{g['cout']},?,?] y) {{
            z = BatchNormalization(x, s, b, mean, var)
            y = Conv<{_conv_attrs(g)}>({inputs})
        }}""", rng, W=(g["cout"], g["cin"] // g["group"], g["k"], g["k"]),
        **({"B": (g["cout"],)} if g["bias"] else {}),
        s=(g["cin"],), b=(g["cin"],), mean=(g["cin"],), var=(g["cin"],))
    out, result = apply(model, "fold-into-next-conv")
    assert result.rewrites == 1 and ops(out) == {"Conv": 1}
    check(out)
    assert_same_outputs(model, out, rng, rtol=1e-4, atol=1e-4)

"""Low-rank rewrites at full rank reproduce the original (onnxruntime, optimizations off),
over random shapes, strides, pads and dilations; the cost model matches shape inference."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from fuser import ir as graph_io
from fuser.passes.lowrank import factorize
from fuser.passes.lowrank.forms import form
from fuser.passes.lowrank.layers import candidates
from fuser.passes.match import Names
from tests.helpers import assert_same_outputs, check, make_model, ops

SETTINGS = settings(max_examples=30, deadline=None)


def rewrite_first(model, build_factors, method=None):
    """Factorize the first candidate layer with ``build_factors(layer)`` in form ``method``
    (``svd`` for a Gemm/MatMul); return the model and the layer's predicted MACs for it."""
    graph = graph_io.to_graph(model)
    graph_io.annotate(graph, graph_io.infer_shapes(model))
    (layer, *_), _ = candidates(graph)
    factors = build_factors(layer)
    shape = form(method if layer.is_conv else "svd")
    shape.replace(graph, layer, factors, Names(graph))
    predicted = shape.macs(layer, factors.rank)
    graph.cleanup().toposort()
    return graph_io.to_model(graph, model), predicted


@st.composite
def conv(draw):
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    g = dict(cin=draw(st.integers(1, 5)), cout=draw(st.integers(1, 6)), kh=kh, kw=kw,
             sh=draw(st.integers(1, 3)), sw=draw(st.integers(1, 3)),
             dh=draw(st.integers(1, 2)), dw=draw(st.integers(1, 2)),
             pads=[draw(st.integers(0, k - 1)) for k in (kh, kw, kh, kw)],
             bias=draw(st.booleans()), seed=draw(st.integers(0, 2**16)),
             auto_pad=draw(st.sampled_from(["NOTSET", "NOTSET", "SAME_UPPER", "SAME_LOWER"])))
    if g["auto_pad"] != "NOTSET":  # onnxruntime has no dilated SAME padding
        g["dh"] = g["dw"] = 1
    return g


def conv_model(g, weight=None):
    rng = np.random.default_rng(g["seed"])
    inputs = "x, W, B" if g["bias"] else "x, W"
    pad = (f'auto_pad="{g["auto_pad"]}"' if g["auto_pad"] != "NOTSET"
           else f"pads={g['pads']}")
    model = make_model(f"""
        g (float[N,{g['cin']},11,12] x) => (float[N,{g['cout']},?,?] y) {{
            y = Conv<kernel_shape=[{g['kh']},{g['kw']}], strides=[{g['sh']},{g['sw']}],
                     dilations=[{g['dh']},{g['dw']}], {pad}>({inputs})
        }}""", rng, W=weight if weight is not None else (g["cout"], g["cin"], g["kh"], g["kw"]),
        **({"B": (g["cout"],)} if g["bias"] else {}))
    return model, rng


def assert_exact(model, out, predicted, expect_convs, rng):
    check(out)
    assert ops(out) == {"Conv": expect_convs}
    assert_same_outputs(model, out, rng, rtol=1e-4, atol=1e-4)
    assert predicted == graph_io.mac_count(out)  # the cost model is shape inference's count


@given(conv())
@SETTINGS
def test_spatial_svd_at_full_rank_is_exact(g):
    model, rng = conv_model(g)
    out, macs = rewrite_first(model, lambda la: factorize.spatial_svd(
        la.weight, form("spatial").max_rank(la)), "spatial")
    assert_exact(model, out, macs, 2, rng)


@given(conv())
@SETTINGS
def test_channel_svd_at_full_rank_is_exact(g):
    model, rng = conv_model(g)
    out, macs = rewrite_first(model, lambda la: factorize.channel_svd(
        la.weight, form("channel").max_rank(la)), "channel")
    assert_exact(model, out, macs, 2, rng)


@given(conv())
@SETTINGS
def test_tucker2_at_full_rank_is_exact(g):
    model, rng = conv_model(g)
    out, macs = rewrite_first(model, lambda la: factorize.tucker2(
        la.weight, la.weight.shape[1], la.weight.shape[0]), "tucker2")
    assert_exact(model, out, macs, 3, rng)


@given(conv(), st.integers(1, 3))
@settings(max_examples=15, deadline=None)
def test_cp_recovers_a_weight_of_exact_cp_rank(g, rank):
    """Where the CP decomposition is unique (Kruskal's condition), ALS finds it; beyond it
    (rank above some dimension) the best rank-R fit may not exist (CP degeneracy)."""
    dims = (g["cout"], g["cin"], g["kh"], g["kw"])
    assume(min(g["kh"], g["kw"]) >= 2)  # the convs CP is for (k x k, k > 1)
    assume(min(dims) >= rank)  # every factor of full column rank: unique, well conditioned
    rng = np.random.default_rng(g["seed"])
    parts = [rng.standard_normal((d, rank)) for d in (g["cout"], g["cin"], g["kh"], g["kw"])]
    weight = np.einsum("ar,br,cr,dr->abcd", *parts).astype(np.float32)
    model, rng = conv_model(g, weight)
    out, macs = rewrite_first(model, lambda la: factorize.cp(
        la.weight, rank, iterations=500, tolerance=1e-12, restarts=4), "cp")
    assert_exact(model, out, macs, 4, rng)


@pytest.mark.parametrize("method", ["pca", "asymmetric"])
def test_data_aware_conv_at_full_rank_is_exact(method, rng):
    g = dict(cin=3, cout=5, kh=3, kw=3, sh=1, sw=1, dh=1, dw=1, pads=[1, 1, 1, 1], bias=True,
             seed=1, auto_pad="NOTSET")
    model, rng = conv_model(g)
    responses = rng.standard_normal((5, 400))
    if method == "pca":
        build = lambda la: factorize.response_pca(la.weight, responses, 5)
    else:
        build = lambda la: factorize.asymmetric(la.weight, responses, responses, 5)
    out, macs = rewrite_first(model, build, "channel")
    assert_exact(model, out, macs, 2, rng)


@pytest.mark.parametrize("trans_a, trans_b, bias", [(0, 0, True), (0, 1, False), (1, 1, True)])
def test_gemm_svd_at_full_rank_is_exact(rng, trans_a, trans_b, bias):
    a_shape = "7,N" if trans_a else "N,7"
    inputs = "x, W, C" if bias else "x, W"
    model = make_model(f"""
        g (float[{a_shape}] x) => (float[N,5] y) {{
            y = Gemm<transA={trans_a}, transB={trans_b}, alpha=0.5, beta=2.0>({inputs})
        }}""", rng, W=(5, 7) if trans_b else (7, 5), **({"C": (5,)} if bias else {}))
    out, macs = rewrite_first(model, lambda la: factorize.svd_matrix(la.weight, 5))
    check(out)
    assert ops(out) == {"Gemm": 2}
    assert_same_outputs(model, out, rng, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("left", [False, True])
def test_matmul_svd_at_full_rank_is_exact_with_nd_inputs(rng, left):
    text = ("g (float[2,3,7,4] x) => (float[2,3,5,4] y) { y = MatMul(W, x) }" if left else
            "g (float[2,3,4,7] x) => (float[2,3,4,5] y) { y = MatMul(x, W) }")
    model = make_model(text, rng, W=(5, 7) if left else (7, 5))
    inputs = rng.standard_normal((7, 300))
    out, macs = rewrite_first(model, lambda la: factorize.whitened_svd(la.weight, inputs, 5))
    check(out)
    assert ops(out) == {"MatMul": 2}
    assert_same_outputs(model, out, rng, rtol=1e-4, atol=1e-4)
    assert macs == graph_io.mac_count(out) // 2  # per sample; the model's batch is 2


def _channel_samples(model, layer, rng, count=4):
    """The layer's input channels at every position of ``count`` seeded images, (C, S)."""
    x = rng.standard_normal((count, layer.weight.shape[1], 11, 12))
    return x.transpose(1, 0, 2, 3).reshape(x.shape[1], -1)


@given(conv())
@SETTINGS
def test_input_projection_at_full_rank_is_exact(g):
    model, rng = conv_model(g)
    out, macs = rewrite_first(model, lambda la: factorize.input_projection(
        la.weight, _channel_samples(model, la, rng), form("input").max_rank(la)), "input")
    assert_exact(model, out, macs, 2, rng)


@given(conv())
@SETTINGS
def test_spatial_fitted_to_data_at_full_rank_is_exact(g):
    """The data-aware spatial form (whitened by the inputs' channel second moment)."""
    from fuser.passes.lowrank.forms.spatial import whitened_spatial

    model, rng = conv_model(g)
    out, macs = rewrite_first(model, lambda la: whitened_spatial(
        la.weight, _channel_samples(model, la, rng), form("spatial").max_rank(la)), "spatial")
    assert_exact(model, out, macs, 2, rng)


def test_spatial_fitted_to_data_beats_the_weight_only_fit_on_correlated_inputs():
    """Inputs with one dominant channel direction: at rank 2 the whitened fit's output error
    is below the plain SVD's (which weighs every channel alike)."""
    from fuser.passes.lowrank.forms.spatial import whitened_spatial

    rng = np.random.default_rng(0)
    w = rng.standard_normal((8, 6, 3, 5))
    mixing = np.diag([10.0, 1, 0.3, 0.1, 0.1, 0.1]) @ rng.standard_normal((6, 6))
    x = np.einsum("cd,ndhw->nchw", mixing, rng.standard_normal((16, 6, 12, 12)))
    samples = x.transpose(1, 0, 2, 3).reshape(6, -1)

    def error(factors) -> float:
        v, h = factors.weights
        approx = np.einsum("rci,nrj->ncij", v[..., 0], h[:, :, 0, :])
        patches = np.lib.stride_tricks.sliding_window_view(x, (3, 5), axis=(2, 3))
        return float(np.linalg.norm(np.einsum("ncij,bchwij->bnhw", w - approx, patches)))

    fitted, plain = whitened_spatial(w, samples, 2), factorize.spatial_svd(w, 2)
    assert error(fitted) < 0.8 * error(plain)


@given(conv())
@SETTINGS
def test_tucker2_fitted_to_data_at_full_ranks_is_exact(g):
    model, rng = conv_model(g)

    def fitted(la):
        responses = rng.standard_normal((la.weight.shape[0], 64)) + 3.0
        return factorize.tucker2_fitted(la.weight, la.bias, _channel_samples(model, la, rng),
                                        responses, la.weight.shape[1], la.weight.shape[0])

    out, macs = rewrite_first(model, fitted, "tucker2")
    assert_exact(model, out, macs, 3, rng)


def test_input_projection_keeps_what_the_inputs_use():
    """Inputs living in a 2-D subspace of 6 channels (plus a mean): rank 2 is exact inside
    the image, where no zero padding is seen (valid convolution)."""
    rng = np.random.default_rng(0)
    basis, mean = rng.standard_normal((6, 2)), rng.standard_normal(6)
    x = np.einsum("cr,nrhw->nchw", basis, rng.standard_normal((3, 2, 9, 9))) \
        + mean[None, :, None, None]
    w = rng.standard_normal((5, 6, 3, 3))
    factors = factorize.input_projection(w, x.transpose(1, 0, 2, 3).reshape(6, -1), 2)
    p, w2 = factors.weights

    def conv_valid(data, weight):
        n, c, h, wd = data.shape
        k = weight.shape[2]
        out = np.zeros((n, weight.shape[0], h - k + 1, wd - k + 1))
        for i in range(k):
            for j in range(k):
                out += np.einsum("nchw,oc->nohw", data[:, :, i:i + h - k + 1, j:j + wd - k + 1],
                                 weight[:, :, i, j])
        return out

    want = conv_valid(x, w)
    z = np.einsum("rc,nchw->nrhw", p[:, :, 0, 0], x)
    got = conv_valid(z, w2) + factors.bias_shift[None, :, None, None]
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)
    assert factors.energy == pytest.approx(1.0)


@given(st.integers(1, 6), st.integers(3, 9), st.integers(3, 6))
@SETTINGS
def test_the_svd_of_a_tall_matrix_from_its_gram_matrix_is_an_svd(rank, k, tallness):
    """``_thin_svd`` takes the K x K route for N > 2K: the same singular values as LAPACK,
    orthonormal singular vectors where the values are not zero, and an exact product,
    rank-deficient matrices included."""
    rng = np.random.default_rng(rank * 100 + k)
    low = min(rank, k)
    m = rng.standard_normal((k * tallness, low)) @ rng.standard_normal((low, k))
    u, s, vt = factorize._thin_svd(m)
    np.testing.assert_allclose(s, np.linalg.svd(m, compute_uv=False), atol=1e-6 * s[0])
    np.testing.assert_allclose((u * s) @ vt, m, atol=1e-9 * s[0])
    kept = s > 0
    assert kept.sum() == low  # rounding is not mistaken for a direction
    np.testing.assert_allclose(u[:, kept].T @ u[:, kept], np.eye(kept.sum()), atol=1e-8)
    assert np.isfinite(u).all()

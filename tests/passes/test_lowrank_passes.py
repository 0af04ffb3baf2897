"""The weight-only lossy low-rank passes: structure, MACs, validity, and their skips."""

from __future__ import annotations

import numpy as np
import pytest

from fuser import ir as graph_io
from fuser.passes import DEFAULT_PIPELINE, REGISTRY
from fuser.runtime import sessions as runtime
from tests.helpers import apply, check, make_model, ops

CONV = """
    g (float[N,16,10,10] x) => (float[N,16,10,10] y) {
        y = Conv<kernel_shape=[3,3], pads=[1,1,1,1]>(x, W, B)
    }"""
NODES = {"lowrank-spatial": 2, "lowrank-channel": 2, "lowrank-tucker2": 3, "lowrank-cp": 4}


@pytest.fixture
def conv(rng):
    return make_model(CONV, rng, W=(16, 16, 3, 3), B=(16,))


def test_lowrank_passes_are_lossy_and_not_default():
    for name in [*NODES, "lowrank-svd"]:
        assert REGISTRY[name].lossy and name not in DEFAULT_PIPELINE


@pytest.mark.parametrize("name", list(NODES))
def test_conv_is_factorized_within_the_mac_fraction(conv, rng, name):
    out, result = apply(conv, name, fraction=0.5, measure=False, min_energy=0.0)
    assert result.rewrites == 1, result.skipped
    assert ops(out) == {"Conv": NODES[name]}
    check(out)
    assert graph_io.mac_count(out) <= 0.5 * graph_io.mac_count(conv)
    assert "MACs 230,400 ->" in result.notes[0]
    feeds = runtime.random_feeds(conv, rng, dynamic=2)
    want, got = runtime.run(conv, feeds)["y"], runtime.run(out, feeds)["y"]
    assert got.shape == want.shape and np.isfinite(got).all()
    error = np.linalg.norm(got - want) / np.linalg.norm(want)
    assert 0 < error < 1  # lossy, but an approximation (random weights: flat spectra)


@pytest.mark.parametrize("name", list(NODES))
def test_a_rank_that_keeps_too_little_weight_energy_is_refused(conv, rng, name):
    # random weights have flat spectra: half the MACs keep well under 90 % of the energy
    out, result = apply(conv, name, fraction=0.5, measure=False)
    assert result.rewrites == 0 and ops(out) == {"Conv": 1}
    (reason,) = result.skipped
    assert "of its weight energy, less than 90% (min_energy)" in reason
    # CP rank 2 (rank 2 on the channel, input and spatial unfoldings): every form at half
    # the MACs keeps all of it
    a, c, u, v = (rng.standard_normal((size, 2)) for size in (16, 16, 3, 3))
    low = np.einsum("nr,cr,ir,jr->ncij", a, c, u, v).astype(np.float32)
    out, result = apply(make_model(CONV, rng, W=low, B=(16,)), name, fraction=0.5,
                        measure=False)
    assert result.rewrites == 1 and "weight energy 1.000" in result.notes[0], result.skipped
    check(out)


def test_energy_one_keeps_everything_and_so_saves_nothing(conv):
    out, result = apply(conv, "lowrank-channel", energy=1.0, measure=False)
    assert result.rewrites == 0 and ops(out) == {"Conv": 1}
    (reason,) = result.skipped
    assert "less than 10%" in reason


def test_svd_pass_factorizes_gemm_and_1x1_conv(rng):
    model = make_model("""
        g (float[N,64,4,4] x) => (float[N,48] y) {
            c = Conv(x, W1)
            p = GlobalAveragePool(c)
            f = Flatten(p)
            y = Gemm<transB=1>(f, W2, B2)
        }""", rng, W1=(64, 64, 1, 1), W2=(48, 64), B2=(48,))
    out, result = apply(model, "lowrank-svd", fraction=0.4, measure=False, min_energy=0.0)
    assert result.rewrites == 2
    assert ops(out) == {"Conv": 2, "Gemm": 2, "GlobalAveragePool": 1, "Flatten": 1}
    check(out)
    assert graph_io.mac_count(out) <= 0.4 * graph_io.mac_count(model)


@pytest.mark.parametrize("text, init, reason", [
    ("y = Conv<kernel_shape=[3,3], pads=[1,1,1,1], group=2>(x, W)", {"W": (16, 8, 3, 3)},
     "has group=2 (not factorized)"),
    ("y = Conv<kernel_shape=[1,1]>(x, W)", {"W": (16, 16, 1, 1)}, "is not a k x k Conv"),
])
def test_skips_are_named(rng, text, init, reason):
    model = make_model(f"g (float[N,16,10,10] x) => (float[N,16,10,10] y) {{ {text} }}", rng,
                       **init)
    out, result = apply(model, "lowrank-spatial")
    assert result.rewrites == 0 and ops(out) == ops(model)
    assert any(reason in r for r in result.skipped)


def test_shared_weight_is_not_factorized(rng):
    model = make_model("""
        g (float[N,16,10,10] x) => (float[N,16,10,10] y, float[N,16,10,10] z) {
            y = Conv<kernel_shape=[3,3], pads=[1,1,1,1]>(x, W)
            z = Conv<kernel_shape=[3,3], pads=[1,1,1,1]>(x, W)
        }""", rng, W=(16, 16, 3, 3))
    out, result = apply(model, "lowrank-channel")
    assert result.rewrites == 0 and result.skipped == {
        "weight 'W' of Conv -> 'y' is shared": 1, "weight 'W' of Conv -> 'z' is shared": 1}


def test_a_lossy_pass_runs_once_in_the_pipeline(conv):
    """Re-running it would factorize its own factors (MACs shrinking sweep after sweep)."""
    import fuser

    out, report = fuser.optimize(conv, ["lowrank-channel"], validate=False,
                                 options={"lowrank-channel": {"measure": False,
                                                                     "min_energy": 0.0}})
    assert report.rewrites("lowrank-channel") == 1
    assert {r.sweep for r in report.passes if r.name == "lowrank-channel"} == {1}
    assert ops(out) == {"Conv": 2}


def test_a_rewrite_that_onnxruntime_runs_slower_is_not_made(conv, monkeypatch):
    from fuser.search import latency

    monkeypatch.setattr(latency.LatencyTable, "ms",
                        lambda self, layer, method="dense", rank=0: 1.0 if method == "dense"
                        else 1.5)
    out, result = apply(conv, "lowrank-cp", fraction=0.5, min_energy=0.0)
    assert result.rewrites == 0 and ops(out) == {"Conv": 1}
    (reason,) = result.skipped
    assert "is not faster on onnxruntime (1.500 ms vs 1.000 ms)" in reason


def test_measured_rewrites_on_a_large_layer(rng):
    """A VGG-sized layer: the factorized form really is faster, and the pass says so."""
    model = make_model("""
        g (float[1,128,28,28] x) => (float[1,128,28,28] y) {
            y = Conv<kernel_shape=[3,3], pads=[1,1,1,1]>(x, W)
        }""", rng, W=(128, 128, 3, 3))
    out, result = apply(model, "lowrank-spatial", fraction=0.3, min_energy=0.0)
    assert result.rewrites == 1 and ops(out) == {"Conv": 2}
    assert "accuracy unverified" in result.notes[-1]


def test_vbmf_picks_the_rank_of_a_low_rank_weight(rng):
    from fuser.passes.lowrank.vbmf import vbmf_rank

    left, right = rng.standard_normal((16, 4)), rng.standard_normal((4, 144))
    weight = (left @ right * 3 + rng.standard_normal((16, 144)) * 0.1).reshape(16, 16, 3, 3)
    model = make_model(CONV, rng, W=weight.astype(np.float32), B=(16,))
    out, result = apply(model, "lowrank-channel", vbmf=True, measure=False)
    assert vbmf_rank(weight.reshape(16, -1)) == 4
    assert result.rewrites == 1 and "channel rank 4," in result.notes[0]
    assert vbmf_rank(rng.standard_normal((30, 40))) == 0  # pure noise has no signal rank

"""Failures found by the fuzzer (``test_fuzz.py``), each shrunk to a small explicit graph.

Each test's docstring says what broke and where it was fixed. All of them run the default
pipeline the way the fuzzer does and assert the histogram, the rewrite counts, validity,
the fixed point and the numerics (onnxruntime, optimizations off).
"""

from __future__ import annotations

import numpy as np

import fuser
from fuser import ir as graph_io
from tests.helpers import assert_same_outputs, check, make_model


def optimize(model):
    """The default pipeline with a check after every pass; the result is a fixed point."""
    out, report = fuser.optimize(model, check_each=True, validate=False)
    check(out)
    _, again = fuser.optimize(out, validate=False, check=False)
    assert again.rewrites() == 0, [n for r in again.passes for n in r.notes]
    return out, report


def test_bn_after_bn_after_bias_free_matmul_folds_in_one_run(rng):
    """MatMul -> BN -> BN: folding the first BN gives the bias-free MatMul an ``Add`` for the
    shift, and the MatMul's new output tensor had no shape. The second BN then read the
    producer's rank as unknown and was skipped ("keeps its channels on the last axis of a
    non-2-D output") in every sweep; only a second ``optimize`` run, after shape inference,
    folded it. Fixed in ``passes/_linear.py``: the new tensor takes the MatMul output's shape.
    """
    model = make_model("""
        g (float[N,4] x) => (float[N,3] y) {
            h = MatMul(x, W)
            b = BatchNormalization(h, s1, o1, m1, var1)
            y = BatchNormalization(b, s2, o2, m2, var2)
        }""", rng, W=(4, 3), s1=(3,), o1=(3,), m1=(3,), var1=(3,), s2=(3,), o2=(3,), m2=(3,),
        var2=(3,))
    out, report = optimize(model)
    assert graph_io.op_histogram(out) == {"Gemm": 1}  # MatMul + Add: fuse-matmul-add
    assert report.rewrites("fold-batchnorm") == 2
    sweeps = [r.rewrites for r in report.passes if r.name == "fold-batchnorm"]
    assert sweeps[0] == 2 and not any(sweeps[1:])  # both in the first sweep
    assert_same_outputs(model, out, rng, rtol=1e-4, atol=1e-5)


def test_chain_of_bns_before_a_conv_folds_in_one_sweep(rng):
    """Pad -> BN -> BN -> BN -> BN -> 1x1 Conv: fold-into-next-conv visited the BNs first to
    last, so only the one next to the Conv folded per sweep; after the default 4 sweeps the
    fourth BN had just folded and the zero Pad, now next to the Conv, was left (a second
    ``optimize`` run folded it). Fixed in ``passes/fold_into_next.py``: candidates are visited
    last to first, so the whole chain folds in one run.
    """
    model = make_model("""
        g (float[N,3,5,5] x) => (float[N,4,7,7] y) {
            p = Pad(x, pads)
            b1 = BatchNormalization(p, s1, o1, m1, var1)
            b2 = BatchNormalization(b1, s2, o2, m2, var2)
            b3 = BatchNormalization(b2, s3, o3, m3, var3)
            b4 = BatchNormalization(b3, s4, o4, m4, var4)
            y = Conv(b4, W)
        }""", rng, pads=np.array([0, 0, 1, 1, 0, 0, 1, 1], dtype=np.int64), W=(4, 3, 1, 1),
        **{f"{p}{i}": (3,) for i in range(1, 5) for p in ("s", "o", "m", "var")})
    out, report = optimize(model)
    assert graph_io.op_histogram(out) == {"Conv": 1}
    assert [r.rewrites for r in report.passes if r.name == "fold-into-next-conv"] == [4, 0, 0]
    assert [n for r in report.passes if r.name == "fold-pad-into-conv" for n in r.notes] == [
        "Pad -> 'p' into Conv -> 'y'"]  # it said "Pad -> '?'": the note came after detach
    assert_same_outputs(model, out, rng, rtol=1e-4, atol=1e-5)


def test_per_channel_constant_broadcasting_a_one_channel_input_is_not_folded(rng):
    """``x[N,1,3] * c[1,1] / d[1,2,1]`` -> 1-D Conv reading 2 channels (found by the widened
    strategy, random profile, shrunk to these three nodes; issue 16, item 2):
    fold-into-next-conv folded the Div into the Conv and rewired it to the 1-channel input,
    which the checker accepted and onnxruntime refused ("Input channels C is not equal to
    kernel channels * group. C: 1 kernel channels: 2"). Fixed in ``passes/fold_into_next.py``:
    the affine's input must have the channels the Conv reads.
    """
    model = make_model("""
        g (float[N,1,3] x) => (float[N,1,3] y) {
            m = Mul(x, c)
            d = Div(m, k)
            y = Conv<auto_pad="VALID">(d, W)
        }""", rng, c=(1, 1), k=np.array([[[0.75], [-1.5]]], dtype=np.float32), W=(1, 2, 1))
    out, report = optimize(model)
    assert graph_io.op_histogram(out) == {"Mul": 1, "Div": 1, "Conv": 1}
    assert report.rewrites("fold-into-next-conv") == 0
    assert report.skipped("fold-into-next-conv") == {
        "Div -> 'd': its input 'm' has 1 channel(s), Conv -> 'y' reads 2": 1}
    assert_same_outputs(model, out, rng, rtol=1e-4, atol=1e-5)

"""Failures found by the fuzzer (``test_fuzz.py``), each shrunk to a small explicit graph.

Each test's docstring says what broke and where it was fixed. All of them run the default
pipeline the way the fuzzer does and assert the histogram, the rewrite counts, validity,
the fixed point and the numerics (onnxruntime, optimizations off).
"""

from __future__ import annotations

import fuser
from fuser import graph as graph_io
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
    assert graph_io.op_histogram(out) == {"MatMul": 1, "Add": 1}
    assert report.rewrites("fold-batchnorm") == 2
    assert [r.rewrites for r in report.passes if r.name == "fold-batchnorm"] == [2, 0]
    assert_same_outputs(model, out, rng, rtol=1e-4, atol=1e-5)

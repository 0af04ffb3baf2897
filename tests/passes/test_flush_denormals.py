"""flush-denormals: denormal floats in constant weights become 0; everything else is kept."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from tests.helpers import apply, assert_same_outputs, check, make_model, ops, second_run_rewrites


def weight(model: onnx.ModelProto, name: str) -> np.ndarray:
    return onnx.numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == name))


@pytest.mark.parametrize("dtype, onnx_type, denormal", [
    (np.float32, "float", 1e-40),
    (np.float64, "double", 1e-310),
], ids=["float32", "float64"])
def test_denormals_are_flushed_and_normal_values_kept(rng, dtype, onnx_type, denormal):
    values = rng.standard_normal(8).astype(dtype)
    values[[1, 4]] = [denormal, -denormal]
    values[6] = np.finfo(dtype).tiny  # the smallest normal number stays
    values[7] = 0
    assert np.count_nonzero((np.abs(values) < np.finfo(dtype).tiny) & (values != 0)) == 2
    model = make_model(f"""
        g ({onnx_type}[N,8] x) => ({onnx_type}[N,8] y) {{
            m = Mul(x, W)
            y = Add(m, B)
        }}""", rng, W=values, B=rng.standard_normal(8).astype(dtype))
    out, result = apply(model, "flush-denormals")
    assert result.rewrites == 1  # one tensor rewritten
    assert result.stats["denormals flushed"] == 2
    assert ops(out) == ops(model)
    expected = values.copy()
    expected[[1, 4]] = 0
    np.testing.assert_array_equal(weight(out, "W"), expected)
    np.testing.assert_array_equal(weight(out, "B"), weight(model, "B"))
    check(out)
    assert_same_outputs(model, out, rng)
    assert second_run_rewrites(out, "flush-denormals") == 0


def test_denormals_inside_an_if_branch_are_flushed(rng):
    model = make_model("""
        g (float[N,4] x, bool c) => (float[N,4] y) {
            y = If(c) <
                then_branch = t () => (float[N,4] a) <float[4] w = {1e-40, 1.0, -2.0, 3.0}> {
                    a = Mul(x, w)
                },
                else_branch = e () => (float[N,4] b) { b = Neg(x) }>
        }""", rng)
    out, result = apply(model, "flush-denormals")
    assert result.rewrites == 1
    assert result.stats["denormals flushed"] == 1
    assert ops(out) == ops(model)
    branch = next(a.g for a in out.graph.node[0].attribute if a.name == "then_branch")
    np.testing.assert_array_equal(onnx.numpy_helper.to_array(branch.initializer[0]),
                                  [0, 1, -2, 3])
    check(out)
    assert_same_outputs(model, out, rng)
    assert second_run_rewrites(out, "flush-denormals") == 0


def test_float16_denormals_are_kept(rng):
    """Negative: float16 is computed in float32 (onnxruntime's CPU) or at full speed (GPUs),
    so its denormals cost no time; flushed, they cost accuracy."""
    values = rng.standard_normal(8).astype(np.float16)
    values[[1, 4]] = [1e-7, -1e-7]
    assert np.count_nonzero((np.abs(values) < np.finfo(np.float16).tiny) & (values != 0)) == 2
    model = make_model("""
        g (float16[N,8] x) => (float16[N,8] y) {
            y = Mul(x, W)
        }""", rng, W=values)
    out, result = apply(model, "flush-denormals")
    assert result.rewrites == 0 and not result.stats
    np.testing.assert_array_equal(weight(out, "W"), values)


def test_model_without_denormals_is_unchanged(rng):
    values = np.array([0.0, -0.0, 1.0, np.finfo(np.float32).tiny, -3.5], np.float32)
    model = make_model("""
        g (float[N,5] x) => (float[N,5] y) {
            y = Mul(x, W)
        }""", rng, W=values)
    out, result = apply(model, "flush-denormals")
    assert result.rewrites == 0
    assert not result.stats and not result.skipped
    assert ops(out) == ops(model)
    np.testing.assert_array_equal(weight(out, "W"), values)

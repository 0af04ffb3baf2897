"""batchnorm-to-affine: a BatchNormalization that cannot fold becomes Mul + Add."""

from __future__ import annotations

import functools

import numpy as np
import onnx
import pytest

from tests import helpers
from tests.helpers import apply, assert_same_outputs, check, make_model, ops, second_run_rewrites

BN_PARAMS = "s, b, mean, var"


def bn_inits(c: int) -> dict:
    return {"s": (c,), "b": (c,), "mean": (c,), "var": (c,)}


def assert_rewritten(model, rng, *, rtol=1e-4, atol=1e-5):
    out, result = apply(model, "batchnorm-to-affine")
    assert result.rewrites == 1, result.skipped
    assert ops(out) == {"Relu": 1, "Mul": 1, "Add": 1}
    assert out.graph.node[-1].output[0] == "y"  # the graph output keeps its name
    check(out)
    assert_same_outputs(model, out, rng, rtol=rtol, atol=atol)
    assert second_run_rewrites(out, "batchnorm-to-affine") == 0
    return out


@pytest.mark.parametrize("dims", ["N,4", "N,4,5", "N,4,5,6"], ids=["2d", "3d", "4d"])
def test_batchnorm_after_relu_becomes_mul_and_add(rng, dims):
    model = make_model(f"""
        g (float[{dims}] x) => (float[{dims}] y) {{
            r = Relu(x)
            y = BatchNormalization<epsilon=0.01>(r, {BN_PARAMS})
        }}""", rng, **bn_inits(4))
    out = assert_rewritten(model, rng)
    scale = next(t for t in out.graph.initializer if t.name in out.graph.node[1].input)
    assert tuple(scale.dims) == (4,) + (1,) * (dims.count(",") - 1)  # broadcasts on axis 1


@pytest.mark.parametrize("param_dtype", [np.float16, np.float32])
def test_float16_batchnorm_gets_float16_mul_and_add(rng, param_dtype):
    """Since opset 15 the parameters may be float32 while the input is float16."""
    model = make_model(f"""
        g (float16[N,4,5,5] x) => (float16[N,4,5,5] y) {{
            r = Relu(x)
            y = BatchNormalization(r, {BN_PARAMS})
        }}""", rng, dtype=param_dtype, **bn_inits(4))
    out = assert_rewritten(model, rng, rtol=1e-2, atol=1e-2)
    assert {t.data_type for t in out.graph.initializer} == {onnx.TensorProto.FLOAT16}


# ---------------------------------------------------------------- negative cases


assert_skipped = functools.partial(helpers.assert_skipped, "batchnorm-to-affine")


def test_training_mode_is_left_alone(rng):
    model = make_model(f"""
        g (float[N,4,5,5] x) => (float[N,4,5,5] y) {{
            r = Relu(x)
            y, rm, rv = BatchNormalization<training_mode=1>(r, {BN_PARAMS})
        }}""", rng, **bn_inits(4))
    assert_skipped(model, "BatchNormalization -> 'y' has training_mode=1")


def test_unknown_input_rank_is_left_alone(rng):
    model = make_model(f"""
        g (float[N] x, int64[K] shape) => (float[A,4,B] y) {{
            r = Reshape(x, shape)
            y = BatchNormalization(r, {BN_PARAMS})
        }}""", rng, **bn_inits(4))
    assert_skipped(model, "BatchNormalization -> 'y': input rank unknown")


def test_scale_that_is_a_graph_input_is_left_alone(rng):
    model = make_model("""
        g (float[N,4,5,5] x, float[4] s) => (float[N,4,5,5] y) {
            r = Relu(x)
            y = BatchNormalization(r, s, b, mean, var)
        }""", rng, **{k: v for k, v in bn_inits(4).items() if k != "s"})
    assert_skipped(model, "scale 's' of BatchNormalization -> 'y' is not a constant")


def test_bfloat16_input_is_left_alone(rng):
    """Mul/Add constants in bfloat16 cannot be made with numpy: the BN stays."""
    model = make_model(f"""
        g (bfloat16[N,4,5,5] x) => (bfloat16[N,4,5,5] y) {{
            r = Relu(x)
            y = BatchNormalization(r, {BN_PARAMS})
        }}""", rng, header='< ir_version: 10, opset_import: ["" : 22] >', **bn_inits(4))
    assert_skipped(model, "BatchNormalization -> 'y': input is not float16/32/64")

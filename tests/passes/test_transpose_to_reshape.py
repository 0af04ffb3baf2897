"""transpose-to-reshape: a Transpose that moves only dims of size 1 becomes a Reshape."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from fuser.passes.exact.transpose_to_reshape import reshape_target
from tests import helpers
from tests.helpers import apply, make_model, ops

NAME = "transpose-to-reshape"


def _model(rng, xtype: str, perm: str, ytype: str) -> onnx.ModelProto:
    return make_model(f"""
        g ({xtype} x) => ({ytype} y) {{
            a = Relu(x)
            t = Transpose<perm=[{perm}]>(a)
            y = Neg(t)
        }}""", rng)


@pytest.mark.parametrize("xtype, perm, ytype, target", [
    ("float[5,1,2,3]", "0,2,1,3", "float[5,2,1,3]", [5, 2, 1, 3]),  # an LSTM's Y
    ("float[N,4,6,1]", "0,3,1,2", "float[N,1,4,6]", [-1, 1, 4, 6]),  # NHWC -> NCHW, 1 channel
    ("float[1,N,8]", "1,0,2", "float[N,1,8]", [-1, 1, 8]),
])
def test_a_transpose_of_1s_becomes_a_reshape(rng, xtype, perm, ytype, target):
    out, _ = helpers.assert_rewrites_cleanly(NAME, _model(rng, xtype, perm, ytype), rng,
                                             {"Relu": 1, "Reshape": 1, "Neg": 1})
    node = next(n for n in out.graph.node if n.op_type == "Reshape")
    shape = next(t for t in out.graph.initializer if t.name == node.input[1])
    assert onnx.numpy_helper.to_array(shape).tolist() == target


def test_a_transpose_that_reorders_dims_stays(rng):
    model = _model(rng, "float[2,1,3]", "2,1,0", "float[3,1,2]")
    out, result = apply(model, NAME)
    assert result.rewrites == 0 and not result.skipped and ops(out) == ops(model)


def test_two_unknown_dims_in_the_output_are_skipped(rng):
    model = _model(rng, "float[N,1,M]", "1,0,2", "float[1,N,M]")
    helpers.assert_skipped(NAME, model, "more than one dim of the output [1, 'N', 'M'] is "
                                        "unknown")


def test_a_symbolic_dim_is_never_taken_for_1():
    assert reshape_target([1, "T", 3], [1, 0, 2]) is not None
    assert reshape_target(["A", "B", 1], [1, 0, 2]) is None
    assert reshape_target([2, 1, 3], [2, 1, 0]) is None
    assert np.array_equal(reshape_target([2, 1, 3], [1, 0, 2]), [1, 2, 3])

"""fold-pad-into-maxpool: a zero Pad before a MaxPool whose input is never negative."""

from __future__ import annotations

import numpy as np
import pytest

from tests import helpers
from tests.helpers import apply, make_model, ops

NAME = "fold-pad-into-maxpool"


def _model(rng, *, before: str = "a = Relu(x)", pads=(0, 0, 1, 1, 0, 0, 1, 1), value=None,
           pool: str = "MaxPool<kernel_shape=[3,3], strides=[2,2]>", ytype="float[N,4,5,5]"):
    inputs = "a, pads" + (", v" if value is not None else "")
    extra = {} if value is None else {"v": np.array(value, np.float32)}
    return make_model(f"""
        g (float[N,4,9,9] x) => ({ytype} y) {{
            {before}
            p = Pad({inputs})
            y = {pool}(p)
        }}""", rng, pads=np.array(pads, np.int64), **extra)


@pytest.mark.parametrize("op", ["Relu", "Sigmoid", "Abs"])
def test_the_pad_folds_into_the_pool(rng, op):
    model = _model(rng, before=f"a = {op}(x)")
    out, _ = helpers.assert_rewrites_cleanly(NAME, model, rng, {op: 1, "MaxPool": 1})
    pool = next(n for n in out.graph.node if n.op_type == "MaxPool")
    pads = next(a for a in pool.attribute if a.name == "pads")
    assert list(pads.ints) == [1, 1, 1, 1]
    helpers.assert_same_outputs(model, out, rng, rtol=0, atol=0)


def test_a_clip_from_zero_counts_as_never_negative(rng):
    model = make_model("""
        g (float[N,4,9,9] x) => (float[N,4,5,5] y) {
            a = Clip(x, lo, hi)
            p = Pad(a, pads)
            y = MaxPool<kernel_shape=[3,3], strides=[2,2]>(p)
        }""", rng, lo=np.array(0.0, np.float32), hi=np.array(6.0, np.float32),
        pads=np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64))
    helpers.assert_rewrites_cleanly(NAME, model, rng, {"Clip": 1, "MaxPool": 1})


def test_an_input_that_may_be_negative_keeps_the_pad(rng):
    model = _model(rng, before="a = Neg(x)")
    helpers.assert_skipped(NAME, model, "MaxPool -> 'y' pads with -inf: the zeros of Pad -> 'p' "
                                        "matter unless its input is never negative")


def test_padding_a_whole_window_keeps_the_pad(rng):
    model = _model(rng, pads=(0, 0, 3, 3, 0, 0, 3, 3), ytype="float[N,4,7,7]")
    helpers.assert_skipped(NAME, model, "MaxPool -> 'y': padding [3, 3, 3, 3] would leave a "
                                        "window of [3, 3] with no input element")


def test_a_non_zero_pad_value_keeps_the_pad(rng):
    model = _model(rng, value=1.0)
    _, result = apply(model, NAME)
    assert result.rewrites == 0 and "pads with 1, not 0" in next(iter(result.skipped))


def test_ceil_mode_keeps_the_pad(rng):
    model = _model(rng, pool="MaxPool<kernel_shape=[3,3], strides=[2,2], ceil_mode=1>")
    out, result = apply(model, NAME)
    assert result.rewrites == 0 and ops(out) == ops(model)

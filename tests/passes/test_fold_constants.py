"""fold-constants: constant subgraphs and Shape/Size of known dims become constants."""

from __future__ import annotations

import numpy as np

from fuser.runtime import sessions as runtime
from tests import helpers
from tests.helpers import make_model, ops

NAME = "fold-constants"


def pad_amounts_model(rng):
    """What torch.onnx.export writes for F.pad(x, (2, 1)): pads computed from constants."""
    return make_model("""
        g (float[N,3,16] x) => (float[N,4,?] y) {
            z = ConstantOfShape<value=int64[1] {0}>(four)
            c = Concat<axis=0>(amounts, z)
            r = Reshape(c, shape)
            s = Slice(r, st, en, ax, stp)
            t = Transpose<perm=[1,0]>(s)
            f = Reshape(t, flat)
            p = Cast<to=7>(f)
            xp = Pad(x, p)
            y = Conv<kernel_shape=[3]>(xp, W)
        }""", rng, four=np.array([4], np.int64), amounts=np.array([2, 1], np.int64),
        shape=np.array([-1, 2], np.int64), st=np.array([-1], np.int64),
        en=np.array([-(2**63)], np.int64), ax=np.array([0], np.int64),
        stp=np.array([-1], np.int64), flat=np.array([-1], np.int64), W=(4, 3, 3))


def test_computed_pad_amounts_fold_to_one_constant(rng):
    model = pad_amounts_model(rng)
    out, result = helpers.apply(model, NAME)
    assert result.rewrites == 7
    assert ops(out) == {"Pad": 1, "Conv": 1}
    helpers.check(out)
    helpers.assert_same_outputs(model, out, rng)
    pads = next(t for t in out.graph.initializer if t.name == out.graph.node[0].input[1])
    assert list(np.frombuffer(pads.raw_data, np.int64)) == [0, 0, 2, 0, 0, 1]
    assert helpers.second_run_rewrites(out, NAME) == 0


def test_then_the_pad_folds_into_the_conv_and_every_mac_is_counted(rng):
    import fuser

    model = pad_amounts_model(rng)
    out, report = fuser.optimize(model)
    assert ops(out) == {"Conv": 1} and report.passed
    # The original's Conv has no inferable shape (its input is the computed Pad); the
    # statistics count it on a folded copy, so both figures are exact and equal.
    assert report.before.layer_shapes == report.after.layer_shapes == {"Conv": [1, 1]}
    assert report.after.macs == report.before.macs == 4 * 17 * 3 * 3  # 17 outputs x 4 x 9
    assert report.before.macs_complete and report.before.macs_text() == "612"


def test_shape_of_known_dims_folds_and_a_symbolic_batch_does_not(rng):
    model = make_model("""
        g (float[N,3,8] x) => (float[N,24] y) {
            s = Shape(x)
            b = Gather<axis=0>(s, zero)
            c = Gather<axis=0>(s, one)
            m = Mul(c, eight)
            b1 = Unsqueeze(b, axes)
            m1 = Unsqueeze(m, axes)
            t = Concat<axis=0>(b1, m1)
            y = Reshape(x, t)
        }""", rng, one=np.array(1, np.int64), zero=np.array(0, np.int64),
        eight=np.array(8, np.int64), axes=np.array([0], np.int64))
    out, result = helpers.apply(model, NAME)
    assert result.rewrites == 3  # Gather(1), Mul, Unsqueeze: their values are 3, 24, [24]
    assert ops(out) == {"Shape": 1, "Gather": 1, "Unsqueeze": 1, "Concat": 1, "Reshape": 1}
    helpers.check(out)
    helpers.assert_same_outputs(model, out, rng, batch=5)


def test_size_of_known_dims_folds(rng):
    model = make_model("""
        g (float[2,3] x) => (float[6] y) {
            n = Size(x)
            t = Unsqueeze(n, axes)
            y = Reshape(x, t)
        }""", rng, axes=np.array([0], np.int64))
    out, result = helpers.apply(model, NAME)
    assert result.rewrites == 2 and ops(out) == {"Reshape": 1}
    helpers.assert_same_outputs(model, out, rng)


def test_a_value_that_depends_on_a_graph_input_stays(rng):
    model = make_model("""
        g (float[N,4] x) => (float[N,4] y) {
            y = Add(x, c)
        }""", rng, c=(4,))
    out, result = helpers.apply(model, NAME)
    assert result.rewrites == 0 and ops(out) == ops(model)


def test_an_oversized_materialized_constant_stays_with_a_reason(rng):
    model = make_model("""
        g (float[1024,1024] x) => (float[1024,1024] y) {
            big = ConstantOfShape<value=float[1] {1.0}>(shape)
            y = Add(x, big)
        }""", rng, shape=np.array([1024, 1024], np.int64))
    helpers.assert_skipped(NAME, model, "ConstantOfShape -> 'big' would materialize "
                                        "4,194,304 bytes (more than 1,048,576): computed at "
                                        "run time")
    out, result = helpers.apply(model, NAME, max_bytes=8 << 20)
    assert result.rewrites == 1 and ops(out) == {"Add": 1}
    helpers.assert_same_outputs(model, out, rng)


def test_random_ops_are_never_folded(rng):
    model = make_model("""
        g (float[N,4] x) => (float[N,4] y) {
            r = RandomNormal<shape=[4], seed=1.0>()
            y = Add(x, r)
        }""", rng)
    helpers.assert_skipped(NAME, model, "RandomNormal -> 'r' is random: its value is never "
                                        "folded")


def test_control_flow_is_left_alone(rng):
    model = make_model("""
        g (float[N,4] x) => (float[N,4] y) {
            k = If(cond) <
                then_branch = t () => (float[4] a) { a = Identity(one) },
                else_branch = e () => (float[4] b) { b = Identity(two) }
            >
            y = Add(x, k)
        }""", rng, cond=np.array(True), one=np.ones(4, np.float32),
        two=np.full(4, 2, np.float32))
    helpers.assert_skipped(NAME, model, "If -> 'k' is control flow: left alone with its "
                                        "subgraphs")


def test_a_graph_output_computed_from_constants_stays(rng):
    model = make_model("""
        g (float[N,4] x) => (float[N,4] y, float[4] k) {
            k = Mul(a, b)
            y = Add(x, k)
        }""", rng, a=(4,), b=(4,))
    helpers.assert_skipped(NAME, model, "Mul -> 'k' computes a graph output")


def test_int_shape_arithmetic_through_float_keeps_its_meaning(rng):
    """onnx-graphsurgeon's own shape folding would "elide" these Casts and multiply by
    int(1.5) = 1 (its fold_shapes cast elision); fuser's fold must keep the true value."""
    model = make_model("""
        g (float[N,3,10] x) => (int64[3] y) {
            s = Shape(x)
            f = Cast<to=1>(s)
            m = Mul(f, k)
            i = Cast<to=7>(m)
            y = Add(i, zero)
        }""", rng, k=np.array([1.5], np.float32), zero=np.array([0], np.int64))
    out, _ = helpers.apply(model, NAME)
    feeds = {"x": np.zeros((2, 3, 10), np.float32)}
    assert list(runtime.run(out, feeds)["y"]) == [3, 4, 15]
    helpers.check(out)


def test_static_shapes_fold_the_batch_and_fix_the_interface(rng):
    import fuser

    model = make_model("""
        g (float[N,3,8] x) => (float[N,24] y) {
            s = Shape(x)
            b = Gather<axis=0>(s, zero)
            b1 = Unsqueeze(b, axes)
            t = Concat<axis=0>(b1, minus)
            y = Reshape(x, t)
        }""", rng, zero=np.array(0, np.int64), axes=np.array([0], np.int64),
        minus=np.array([-1], np.int64))
    kept, report = fuser.optimize(model, input_shapes={"x": (2, 3, 8)})
    assert ops(kept)["Shape"] == 1  # the batch stays symbolic: the model runs at any batch
    assert any("--static-shapes" in n for n in report.notes)
    feeds = {"x": rng.standard_normal((5, 3, 8)).astype(np.float32)}
    np.testing.assert_array_equal(runtime.run(kept, feeds)["y"], runtime.run(model, feeds)["y"])
    fixed, report = fuser.optimize(model, input_shapes={"x": (2, 3, 8)}, static_shapes=True)
    assert ops(fixed) == {"Reshape": 1} and report.passed
    dims = [d.dim_value for d in fixed.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [2, 3, 8]
    assert not any("--static-shapes" in n for n in report.notes)


def test_a_constant_node_that_is_a_graph_output_does_not_stop_folding(rng):
    """A node without inputs (the Constant left for a graph output) crashed the size check."""
    import fuser

    model = make_model("""
        g (float[N,4] x) => (float[N,4] y, float[4] k) {
            k = Constant<value=float[4] {1, 2, 3, 4}>()
            b = Add(a, a)
            y = Add(x, b)
        }""", rng, a=(4,))
    out, report = fuser.optimize(model)
    assert report.passed and ops(out) == {"Add": 1}
    helpers.check(out)
    helpers.assert_same_outputs(model, out, rng)

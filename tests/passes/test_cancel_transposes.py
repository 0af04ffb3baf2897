"""cancel-transposes: back-to-back Transposes merge, and vanish when they cancel."""

from __future__ import annotations

import onnx

from tests.helpers import apply, assert_same_outputs, check, make_model, ops, second_run_rewrites

TO_NHWC, TO_NCHW = "perm=[0,2,3,1]", "perm=[0,3,1,2]"


def assert_rewritten(model, rng, expect_ops, rewrites=1):
    out, result = apply(model, "cancel-transposes")
    assert result.rewrites == rewrites, result.skipped
    assert ops(out) == expect_ops
    check(out)
    assert_same_outputs(model, out, rng)
    assert second_run_rewrites(out, "cancel-transposes") == 0
    return out, result


def perm(node: onnx.NodeProto) -> list[int]:
    return list(next(a for a in node.attribute if a.name == "perm").ints)


def test_nhwc_nchw_round_trip_cancels(rng):
    model = make_model(f"""
        g (float[N,3,4,5] x) => (float[N,3,4,5] y) {{
            t = Transpose<{TO_NHWC}>(x)
            u = Transpose<{TO_NCHW}>(t)
            y = Relu(u)
        }}""", rng)
    out, _ = assert_rewritten(model, rng, {"Relu": 1})
    assert list(out.graph.node[0].input) == ["x"]


def test_transposes_without_perm_reverse_the_axes_and_cancel(rng):
    model = make_model("""
        g (float[N,3,4,5] x) => (float[N,3,4,5] y) {
            t = Transpose(x)
            u = Transpose(t)
            y = Relu(u)
        }""", rng)
    assert_rewritten(model, rng, {"Relu": 1})


def test_non_inverse_pair_merges_into_one_transpose_with_the_composed_perm(rng):
    model = make_model(f"""
        g (float[N,3,4,5] x) => (float[N,3,5,4] y) {{
            t = Transpose<{TO_NHWC}>(x)
            u = Transpose<perm=[0,3,2,1]>(t)
            y = Relu(u)
        }}""", rng)
    out, _ = assert_rewritten(model, rng, {"Transpose": 1, "Relu": 1})
    assert perm(out.graph.node[0]) == [0, 1, 3, 2]  # q[i] = p1[p2[i]]
    assert list(out.graph.node[0].input) == ["x"]


def test_chain_of_four_transposes_collapses_to_one(rng):
    model = make_model(f"""
        g (float[N,3,4,5] x) => (float[N,3,5,4] y) {{
            t = Transpose<{TO_NHWC}>(x)
            u = Transpose<{TO_NCHW}>(t)
            v = Transpose<{TO_NHWC}>(u)
            w = Transpose<perm=[0,3,2,1]>(v)
            y = Relu(w)
        }}""", rng)
    out, _ = assert_rewritten(model, rng, {"Transpose": 1, "Relu": 1}, rewrites=2)
    assert perm(out.graph.node[0]) == [0, 1, 3, 2]


def test_first_transpose_stays_while_something_else_reads_it(rng):
    model = make_model(f"""
        g (float[N,3,4,5] x) => (float[N,3,4,5] y, float[N,4,5,3] z) {{
            t = Transpose<{TO_NHWC}>(x)
            u = Transpose<{TO_NCHW}>(t)
            y = Relu(u)
            z = Neg(t)
        }}""", rng)
    out, _ = assert_rewritten(model, rng, {"Transpose": 1, "Relu": 1, "Neg": 1})
    relu = next(n for n in out.graph.node if n.op_type == "Relu")
    assert list(relu.input) == ["x"]


def test_cancelling_pair_into_a_graph_output_hands_the_name_to_the_producer(rng):
    model = make_model(f"""
        g (float[N,3,4,5] x) => (float[N,3,4,5] y) {{
            a = Relu(x)
            t = Transpose<{TO_NHWC}>(a)
            y = Transpose<{TO_NCHW}>(t)
        }}""", rng)
    out, _ = assert_rewritten(model, rng, {"Relu": 1})
    assert list(out.graph.node[0].output) == ["y"]


def test_merged_pair_into_a_graph_output_keeps_the_output_name(rng):
    model = make_model(f"""
        g (float[N,3,4,5] x) => (float[N,4,5,3] y) {{
            a = Relu(x)
            t = Transpose<{TO_NCHW}>(a)
            y = Transpose<{TO_NCHW}>(t)
        }}""", rng)
    out, _ = assert_rewritten(model, rng, {"Relu": 1, "Transpose": 1})
    transpose = out.graph.node[1]
    assert perm(transpose) == [0, 2, 3, 1]
    assert list(transpose.input) == ["a"] and list(transpose.output) == ["y"]


def test_cancelling_pair_from_a_graph_input_to_a_graph_output_leaves_one_identity_transpose(rng):
    """Nothing can compute the output in place of the pair: one identity Transpose remains."""
    model = make_model(f"""
        g (float[N,3,4,5] x) => (float[N,3,4,5] y) {{
            t = Transpose<{TO_NHWC}>(x)
            y = Transpose<{TO_NCHW}>(t)
        }}""", rng)
    out, result = assert_rewritten(model, rng, {"Transpose": 1})
    assert result.skipped == {
        "Transpose -> 'y' joins a graph input/constant or output to a graph output": 1}
    assert perm(out.graph.node[0]) == [0, 1, 2, 3]


# ---------------------------------------------------------------- negative cases


def test_transpose_without_perm_and_unknown_rank_is_left_alone(rng):
    model = make_model("""
        g (float[N] x, int64[K] shape) => (float[A,B,C] y) {
            a = Reshape(x, shape)
            t = Transpose(a)
            u = Transpose(t)
            y = Relu(u)
        }""", rng)
    out, result = apply(model, "cancel-transposes")
    assert result.rewrites == 0
    assert result.skipped == {"Transpose -> 't' has no perm and its input rank is unknown": 1}
    assert ops(out) == ops(model)

"""merge-concats: a Concat into the Concat after it on the same axis."""

from __future__ import annotations

import onnx

from tests import helpers
from tests.helpers import apply, make_model, ops

NAME = "merge-concats"


def _tree(rng, inner_axis: int = 1, outer_axis: int = 1, extra: str = "",
          outputs: str = "") -> onnx.ModelProto:
    return make_model(f"""
        g (float[N,2,4] x) => (float[N,8,4] y{outputs}) {{
            a = Relu(x)
            b = Neg(x)
            p = Concat<axis={inner_axis}>(a, b)
            q = Concat<axis={inner_axis}>(b, a)
            y = Concat<axis={outer_axis}>(p, q)
            {extra}
        }}""", rng)


def test_a_tree_of_pairs_becomes_one_concat(rng):
    out, _ = helpers.assert_rewrites_cleanly(NAME, _tree(rng), rng,
                                             {"Relu": 1, "Neg": 1, "Concat": 1})
    concat = next(n for n in out.graph.node if n.op_type == "Concat")
    assert list(concat.input) == ["a", "b", "b", "a"]


def test_negative_and_positive_axes_that_agree_merge(rng):
    model = make_model("""
        g (float[N,2,4] x) => (float[N,2,12] y) {
            a = Relu(x)
            p = Concat<axis=-1>(a, x)
            y = Concat<axis=2>(p, a)
        }""", rng)
    out, _ = helpers.assert_rewrites_cleanly(NAME, model, rng, {"Relu": 1, "Concat": 1})
    assert list(next(n for n in out.graph.node if n.op_type == "Concat").input) == \
        ["a", "x", "a"]


def test_a_concat_on_another_axis_stays(rng):
    model = make_model("""
        g (float[N,2,4] x) => (float[N,4,8] y) {
            a = Relu(x)
            p = Concat<axis=2>(a, x)
            y = Concat<axis=1>(p, p)
        }""", rng)
    helpers.assert_skipped(NAME, model, "Concat -> 'p' concatenates along axis 2, "
                                        "Concat -> 'y' along 1")


def test_an_inner_concat_read_elsewhere_stays(rng):
    model = _tree(rng, extra="z = Sigmoid(p)", outputs=", float[N,4,4] z")
    out, result = apply(model, NAME)
    assert result.rewrites == 1 and ops(out)["Concat"] == 2  # q merged, p kept
    assert list(next(n for n in out.graph.node if n.output[0] == "y").input) == ["p", "b", "a"]
    helpers.check(out)
    helpers.assert_same_outputs(model, out, rng)


def test_an_inner_concat_that_is_a_graph_output_stays(rng):
    model = make_model("""
        g (float[N,2,4] x) => (float[N,6,4] y, float[N,4,4] p) {
            a = Relu(x)
            p = Concat<axis=1>(a, x)
            y = Concat<axis=1>(p, a)
        }""", rng)
    out, result = apply(model, NAME)
    assert result.rewrites == 0 and ops(out)["Concat"] == 2
    assert dict(result.skipped) == {"Concat -> 'p': its output is read elsewhere": 1}

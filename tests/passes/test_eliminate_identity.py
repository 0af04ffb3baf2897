"""eliminate-identity: Identity and inference-mode Dropout are removed."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from tests import helpers
from tests.helpers import apply, assert_same_outputs, check, make_model, ops, second_run_rewrites


def assert_eliminated(model, rng, expect_ops, rewrites=1):
    out, result = apply(model, "eliminate-identity")
    assert result.rewrites == rewrites, result.skipped
    assert ops(out) == expect_ops
    check(out)
    assert_same_outputs(model, out, rng)
    assert second_run_rewrites(out, "eliminate-identity") == 0
    return out, result


def test_identity_chain_is_removed(rng):
    model = make_model("""
        g (float[N,4] x) => (float[N,4] y) {
            a = Relu(x)
            b = Identity(a)
            c = Identity(b)
            y = Neg(c)
        }""", rng)
    out, _ = assert_eliminated(model, rng, {"Relu": 1, "Neg": 1}, rewrites=2)
    assert list(out.graph.node[1].input) == ["a"]


def test_identity_to_a_graph_output_renames_the_producer_output(rng):
    model = make_model("""
        g (float[N,4] x) => (float[N,4] y, float[N,4] z) {
            a = Relu(x)
            y = Identity(a)
            z = Neg(a)
        }""", rng)
    out, _ = assert_eliminated(model, rng, {"Relu": 1, "Neg": 1})
    relu = next(n for n in out.graph.node if n.op_type == "Relu")
    neg = next(n for n in out.graph.node if n.op_type == "Neg")
    assert list(relu.output) == ["y"]  # the graph output keeps its name
    assert list(neg.input) == ["y"]
    assert [o.name for o in out.graph.output] == ["y", "z"]


DROPOUTS = {
    "no-training-mode": ("y = Dropout(a)", {}),
    "ratio-only": ("y = Dropout(a, r)", {"r": np.array(0.3, np.float32)}),
    "constant-false": ("y = Dropout(a, r, t)",
                       {"r": np.array(0.3, np.float32), "t": np.array(False)}),
    "unused-mask": ("y, mask = Dropout(a)", {}),
}


@pytest.mark.parametrize("line, inits", DROPOUTS.values(), ids=DROPOUTS.keys())
def test_inference_mode_dropout_is_removed(rng, line, inits):
    model = make_model(f"""
        g (float[N,4] x) => (float[N,4] y) {{
            a = Relu(x)
            {line}
        }}""", rng, **inits)
    out, _ = assert_eliminated(model, rng, {"Relu": 1})
    assert out.graph.node[0].output[0] == "y"


# ---------------------------------------------------------------- negative cases


assert_skipped = functools.partial(helpers.assert_skipped, "eliminate-identity")


JOINS = {
    "graph-input": ("g (float[N,4] x) => (float[N,4] y)", "y = Identity(x)", {}),
    "constant": ("g (float[N,4] x) => (float[4] y)", "y = Identity(k)", {"k": (4,)}),
    "graph-output": ("g (float[N,4] x) => (float[N,4] a, float[N,4] y)",
                     "a = Relu(x)\n y = Identity(a)", {}),
}


@pytest.mark.parametrize("signature, body, inits", JOINS.values(), ids=JOINS.keys())
def test_identity_joining_an_input_constant_or_output_to_a_graph_output_stays(
        rng, signature, body, inits):
    model = make_model(f"{signature} {{\n {body}\n}}", rng, **inits)
    assert_skipped(model, "Identity -> 'y' joins a graph input/constant or output to a graph "
                          "output")


@pytest.mark.parametrize("mode", ["graph-input", "constant-true"])
def test_dropout_that_may_train_stays(rng, mode):
    signature = ", bool t" if mode == "graph-input" else ""
    inits = {} if mode == "graph-input" else {"t": np.array(True)}
    model = make_model(f"""
        g (float[N,4] x{signature}) => (float[N,4] y) {{
            a = Relu(x)
            y = Dropout(a, r, t)
        }}""", rng, r=np.array(0.3, np.float32), **inits)
    assert_skipped(model, "Dropout -> 'y' may run in training mode")


@pytest.mark.parametrize("use", ["graph-output", "consumed"])
def test_dropout_whose_mask_is_used_stays(rng, use):
    outputs = "float[N,4] y, bool[N,4] mask" if use == "graph-output" else \
        "float[N,4] y, float[N,4] z"
    consumer = "z = Where(mask, a, y)" if use == "consumed" else ""
    model = make_model(f"""
        g (float[N,4] x) => ({outputs}) {{
            a = Relu(x)
            y, mask = Dropout(a)
            {consumer}
        }}""", rng)
    assert_skipped(model, "Dropout -> 'y' has its mask output in use")


def test_opset_6_dropout_with_is_test_0_stays(rng):
    model = make_model("""
        g (float[N,4] x) => (float[N,4] y) {
            a = Relu(x)
            y = Dropout<is_test=0>(a)
        }""", rng, header='< ir_version: 3, opset_import: ["" : 6] >')
    assert_skipped(model, "Dropout -> 'y' has is_test=0 (training mode)")

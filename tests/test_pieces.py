"""A large model run in consecutive pieces (``fuser.runtime.pieces``): the same outputs as one
session, bit for bit; the models it must run whole."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from fuser.runtime import pieces, validate
from fuser.runtime import sessions as runtime
from tests.helpers import make_model

#: 9 nodes: a skip connection from x and from a across every cut of 2 or 3, a Constant,
#: an output from the middle, and a BatchNormalization.
NET = """
    g (float[N,4,6,6] x) => (float[N,4,6,6] y, float[N,4,6,6] a) {
        a = Conv<kernel_shape=[3,3], pads=[1,1,1,1]>(x, W1, B1)
        b = BatchNormalization(a, S, C, M, V)
        r = Relu(b)
        k = Constant<value=float[1] {0.5}>()
        s = Mul(r, k)
        c = Conv<kernel_shape=[3,3], pads=[1,1,1,1]>(s, W2, B1)
        d = Add(c, a)
        e = Add(d, x)
        y = Sigmoid(e)
    }"""


def _net(rng: np.random.Generator) -> onnx.ModelProto:
    return make_model(NET, rng, W1=(4, 4, 3, 3), W2=(4, 4, 3, 3), B1=(4,), S=(4,), C=(4,),
                      M=(4,), V=np.full(4, 1.5, np.float32))


def _batches(count: int = 3) -> list[dict[str, np.ndarray]]:
    draw = np.random.default_rng(7)
    return [{"x": draw.standard_normal((2, 4, 6, 6)).astype(np.float32)} for _ in range(count)]


@pytest.mark.parametrize("size", [1, 2, 3, 4, 8])
def test_pieces_give_the_outputs_of_one_session_bit_for_bit(rng, size):
    model, batches = _net(rng), _batches()
    assert len(pieces.cut(model, size)) == -(-len(model.graph.node) // size)
    whole = runtime.session(model)
    got = pieces.run(model, ["y", "a"], batches, size=size)
    for k, feeds in enumerate(batches):
        y, a = whole.run(["y", "a"], feeds)
        assert np.array_equal(got["y"][k], y) and np.array_equal(got["a"][k], a)


def test_a_model_with_a_subgraph_runs_whole(rng):
    model = make_model("""
        g (float[N,4] x, bool c) => (float[N,4] y) {
            a = Relu(x)
            b = Neg(a)
            y = If(c) <then_branch = t () => (float[N,4] z) { z = Abs(b) },
                       else_branch = e () => (float[N,4] z) { z = Identity(a) }>
        }""", rng)
    assert pieces.cut(model, 1) == [(0, 3)]
    feeds = {"x": np.array([[1.0, -2.0, 3.0, -4.0]], np.float32), "c": np.array(True)}
    assert np.array_equal(pieces.run(model, ["y"], [feeds], size=1)["y"][0],
                          [[1.0, 0.0, 3.0, 0.0]])


def test_an_output_no_node_computes_runs_whole(rng):
    model = make_model("""
        g (float[N,4] x) => (float[N,4] y, float[4] W) {
            a = Relu(x)
            y = Neg(a)
        }""", rng, W=(4,))
    assert pieces.cut(model, 1) == [(0, 2)]
    assert pieces.cut(model, 8) == [(0, 2)]


def test_validation_compares_models_run_in_pieces(rng, monkeypatch):
    model = _net(rng)
    monkeypatch.setattr(pieces, "PIECE_NODES", 2)
    made = []
    real = runtime.session
    monkeypatch.setattr(runtime, "session", lambda m, **kw: made.append(len(m.graph.node))
                        or real(m, **kw))
    result = validate.validate(model, model, batches=_batches())
    assert result.passed and len(result.outputs) == 2
    assert made and max(made) <= 2  # every session a piece
    broken = onnx.ModelProto()
    broken.CopyFrom(model)
    next(n for n in broken.graph.node if n.op_type == "Sigmoid").op_type = "Tanh"
    assert not validate.validate(model, broken, batches=_batches()).passed

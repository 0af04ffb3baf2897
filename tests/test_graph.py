"""The graph adapter: load/save (atomic, external data), checker, statistics (> 2 GB:
tests/robustness/test_large_models.py)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

import fuser
from fuser import ir as graph_io
from fuser.errors import BadModelError, FuserError
from tests.helpers import make_model

CONV_BN = """
    g (float[N,3,8,8] x) => (float[N,4,?,?] y) {
        c = Conv<pads=[1,1,1,1]>(x, W)
        y = BatchNormalization(c, s, b, mean, var)
    }"""


@pytest.fixture
def conv_bn(rng):
    return make_model(CONV_BN, rng, W=(4, 3, 3, 3), s=(4,), b=(4,), mean=(4,), var=(4,))


def test_save_then_load_round_trips(tmp_path, conv_bn):
    path = tmp_path / "m.onnx"
    graph_io.save(conv_bn, path)
    assert graph_io.load(path) == conv_bn
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]  # no temporary files left


def test_save_with_external_data_keeps_the_model_in_memory_intact(tmp_path, rng):
    conv_bn = make_model(CONV_BN, rng, W=(4, 3, 16, 16), s=(4,), b=(4,), mean=(4,), var=(4,))
    before = conv_bn.SerializeToString()
    graph_io.save(conv_bn, tmp_path / "m.onnx", external_data=True)
    assert conv_bn.SerializeToString() == before
    assert (tmp_path / "m.onnx.data").stat().st_size > 0
    loaded = graph_io.load(tmp_path / "m.onnx")
    np.testing.assert_array_equal(onnx.numpy_helper.to_array(loaded.graph.initializer[0]),
                                  onnx.numpy_helper.to_array(conv_bn.graph.initializer[0]))


def test_save_into_a_missing_folder_is_a_user_error(tmp_path, conv_bn):
    with pytest.raises(FuserError, match="does not exist"):
        graph_io.save(conv_bn, tmp_path / "missing" / "m.onnx")


@pytest.mark.parametrize("content, message", [
    (None, "no such file"), (b"\x00\x01garbage\xff" * 10, "not"), (b"hello world\n", "not")])
def test_load_refuses_what_is_not_a_model(tmp_path, content, message):
    path = tmp_path / "bad.onnx"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(BadModelError, match=message) as info:
        graph_io.load(path)
    assert str(path) in str(info.value)


def test_load_refuses_a_directory(tmp_path):
    with pytest.raises(BadModelError, match="is a directory"):
        graph_io.load(tmp_path)


def test_checker_names_the_problem(conv_bn):
    conv_bn.graph.initializer[0].dims[:] = [4, 3, 3]  # a 1-D kernel on a 2-D image
    with pytest.raises(BadModelError, match="invalid model"):
        graph_io.check(conv_bn)


def test_statistics(conv_bn):
    assert graph_io.op_histogram(conv_bn) == {"BatchNormalization": 1, "Conv": 1}
    assert graph_io.param_count(conv_bn) == 4 * 3 * 3 * 3 + 4 * 4
    assert graph_io.mac_count(conv_bn) == 8 * 8 * 4 * 3 * 3 * 3  # per sample


def test_macs_of_gemm_matmul_and_conv_transpose(rng):
    model = make_model("""
        g (float[2,6,5,5] x) => (float[2,3] y) {
            t = ConvTranspose<group=2, strides=[2,2]>(x, Wt)
            p = GlobalAveragePool(t)
            f = Flatten(p)
            m = MatMul(f, Wm)
            y = Gemm<transB=1>(m, Wg)
        }""", rng, Wt=(6, 2, 3, 3), Wm=(4, 7), Wg=(3, 7))
    conv_t = 2 * 6 * 5 * 5 * 2 * 3 * 3  # every input pixel scatters into M/g * k * k outputs
    assert graph_io.mac_count(model) == conv_t + 2 * 7 * 4 + 2 * 3 * 7


def test_weights_in_constant_nodes_fold_like_initializers(rng, conv_bn):
    """paddle2onnx keeps weights in Constant nodes: they must fold all the same."""
    as_nodes = onnx.ModelProto()
    as_nodes.CopyFrom(conv_bn)
    constants = [onnx.helper.make_node("Constant", [], [t.name], value=t)
                 for t in as_nodes.graph.initializer]
    as_nodes.graph.ClearField("initializer")
    nodes = constants + list(as_nodes.graph.node)
    as_nodes.graph.ClearField("node")
    as_nodes.graph.node.extend(nodes)
    onnx.checker.check_model(as_nodes, full_check=True)
    out, report = fuser.optimize(as_nodes, ["fold-batchnorm"])
    assert report.rewrites("inline-constants") == 5
    assert report.rewrites("fold-batchnorm") == 1
    assert graph_io.op_histogram(out) == {"Conv": 1}


def test_recurrent_layers_count_their_macs(rng):
    """LSTM: steps x batch x directions x (4 x hidden) x (input + hidden)."""
    from tests.helpers import make_model

    model = make_model("""
        g (float[7,N,5] x) => (float[7,2,N,3] y) {
            y = LSTM<hidden_size=3, direction="bidirectional">(x, W, R)
        }""", rng, W=(2, 12, 5), R=(2, 12, 3))
    macs, coverage, unknown = graph_io.count_macs(model)
    assert macs == 7 * 1 * 2 * 12 * (5 + 3) and coverage == {"LSTM": [1, 1]} and not unknown

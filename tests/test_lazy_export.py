"""Folded weights are computed on export (ScaledWeight), the export never touches the input
model, arrays over bytes are exported as they are, and check_and_infer checks and infers."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

import fuser
from fuser import ir as graph_io
from fuser.errors import BadModelError
from fuser.ir.statistics import constant_view
from fuser.passes import get_pass
from fuser.passes.denormals import is_flushed
from fuser.passes.exact._scaled import ScaledWeight
from tests.helpers import assert_same_outputs, check, make_model, ops

CONV_BN = """
    g (float[N,4,6,6] x) => (float[N,8,6,6] y) {
        c = Conv(x, W)
        y = BatchNormalization(c, s, b, mean, var)
    }"""


def conv_bn(rng, **overrides):
    inits = {"W": (8, 4, 3, 3), "s": (8,), "b": (8,), "mean": (8,), "var": (8,)}
    inits.update(overrides)
    text = CONV_BN.replace("Conv(x, W)", "Conv<pads = [1, 1, 1, 1]>(x, W)")
    return make_model(text, rng, **inits)


def init(model: onnx.ModelProto, name: str) -> np.ndarray:
    return onnx.numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == name))


def folded_weight(model: onnx.ModelProto) -> np.ndarray:
    conv = next(n for n in model.graph.node if n.op_type == "Conv")
    return init(model, conv.input[1])


def bn_scale(model: onnx.ModelProto) -> np.ndarray:
    s, var = init(model, "s").astype(np.float64), init(model, "var").astype(np.float64)
    return s / np.sqrt(var + 1e-5)


def run_pass(model: onnx.ModelProto, name: str):
    graph = graph_io.to_graph(model)
    graph_io.annotate(graph, graph_io.infer_shapes(model))
    result = get_pass(name)(graph)
    graph.cleanup(remove_unused_graph_inputs=False).toposort()
    return graph, result


def test_a_folded_weight_is_computed_on_export_rounded_once(rng):
    model = conv_bn(rng)
    graph, result = run_pass(model, "fold-batchnorm")
    assert result.rewrites == 1
    conv = next(n for n in graph.nodes if n.op == "Conv")
    assert isinstance(conv.inputs[1]._values, ScaledWeight)  # nothing computed yet
    out = graph_io.to_model(graph, template=model)
    expected = (init(model, "W").astype(np.float64)
                * bn_scale(model)[:, None, None, None]).astype(np.float32)
    np.testing.assert_array_equal(folded_weight(out), expected)
    assert ops(out) == {"Conv": 1}
    check(out)
    assert_same_outputs(model, out, rng, rtol=1e-4)


def test_two_folds_on_one_node_multiply_their_factors(rng):
    text = CONV_BN.replace("y = BatchNormalization(c, s, b, mean, var)",
                           "n = BatchNormalization(c, s, b, mean, var)\n y = Mul(n, k)")
    model = make_model(text, rng, W=(8, 4, 1, 1), s=(8,), b=(8,), mean=(8,), var=(8,),
                       k=rng.uniform(0.5, 2, (1, 8, 1, 1)).astype(np.float32))
    out, report = fuser.optimize(model, validate=False)
    assert report.rewrites("fold-batchnorm") == 1 and report.rewrites("fold-affine") == 1
    assert ops(out) == {"Conv": 1}
    factor = bn_scale(model) * init(model, "k").reshape(-1).astype(np.float64)
    expected = (init(model, "W").astype(np.float64) * factor[:, None, None, None])
    np.testing.assert_array_equal(folded_weight(out), expected.astype(np.float32))
    check(out)
    assert_same_outputs(model, out, rng, rtol=1e-4)


def test_a_pass_reading_a_folded_weight_gets_its_values(rng):
    model = conv_bn(rng)
    graph, _ = run_pass(model, "fold-batchnorm")
    conv = next(n for n in graph.nodes if n.op == "Conv")
    values = constant_view(conv.inputs[1])
    assert not values.flags.writeable and is_flushed(values)
    out = graph_io.to_model(graph, template=model)
    np.testing.assert_array_equal(values, folded_weight(out))


def test_denormals_of_a_fold_are_counted_once_in_its_own_pass(rng):
    weight = rng.standard_normal((8, 4, 3, 3)).astype(np.float32)
    weight[0, 0, 0, :3] = [1e-36, -2e-36, 1.0]  # * 1e-3 below float32's smallest normal
    s = np.ones(8, np.float32)
    s[0] = 1e-3
    model = conv_bn(rng, W=weight, s=s, var=np.full(8, 1 - 1e-5, np.float32))
    out, report = fuser.optimize(model, validate=False, check_each=True)  # exports twice
    assert report.stat("denormals flushed") == 2
    fold = next(r for r in report.passes if r.name == "fold-batchnorm" and r.rewrites)
    assert fold.stats == {"denormals flushed": 2}
    assert all(not r.stats for r in report.passes if r.name == "flush-denormals")
    w = folded_weight(out)
    assert w[0, 0, 0, 0] == 0 and w[0, 0, 0, 1] == 0 and w[0, 0, 0, 2] != 0
    assert not np.any((np.abs(w) < np.finfo(np.float32).tiny) & (w != 0))
    check(out)


@pytest.mark.parametrize("with_bn", [False, True], ids=["kept weight", "folded weight"])
def test_optimize_leaves_the_input_model_byte_identical(rng, with_bn):
    literal = ", ".join(map(str, rng.standard_normal(32).round(3).tolist()))
    bn = "y = BatchNormalization(c, s, b, mean, var)" if with_bn else "y = Relu(c)"
    inits = {"s": (8,), "b": (8,), "mean": (8,), "var": (8,)} if with_bn else {}
    model = make_model(f"""
        g (float[N,4,6,6] x) => (float[N,8,6,6] y) {{
            W = Constant<value = float[8,4,1,1] {{{literal}}}>()
            c = Conv(x, W)
            {bn}
        }}""", rng, **inits)
    before = model.SerializeToString()
    out, report = fuser.optimize(model, validate=False)
    assert report.rewrites("inline-constants") == 1
    assert report.rewrites("fold-batchnorm") == int(with_bn)
    assert model.SerializeToString() == before  # gs's exporter used to name W's tensor
    assert ops(out) == ({"Conv": 1} if with_bn else {"Conv": 1, "Relu": 1})
    check(out)
    assert_same_outputs(model, out, rng, rtol=1e-4)


def test_arrays_over_bytes_and_strided_views_export_their_values(rng):
    import onnx_graphsurgeon as gs

    data = rng.standard_normal(24).astype(np.float32).tobytes()
    whole = np.frombuffer(data, np.float32).reshape(2, 3, 4)  # exported as the bytes it views
    strided = np.frombuffer(data, np.float32).reshape(4, 6).T  # not C-contiguous: copied
    x1, x2 = gs.Variable("x1", np.float32, [2, 3, 4]), gs.Variable("x2", np.float32, [6, 4])
    graph = gs.Graph(inputs=[x1, x2], opset=17)
    y1 = graph.layer(op="Add", inputs=[x1, gs.Constant("whole", whole)], outputs=["y1"])[0]
    y2 = graph.layer(op="Add", inputs=[x2, gs.Constant("strided", strided)], outputs=["y2"])[0]
    y1.dtype = y2.dtype = np.float32
    graph.outputs = [y1, y2]
    model = graph_io.to_model(graph)
    np.testing.assert_array_equal(init(model, "whole"), whole)
    np.testing.assert_array_equal(init(model, "strided"), strided)
    assert next(t for t in model.graph.initializer if t.name == "whole").raw_data == data


def test_check_and_infer_returns_the_shapes_of_infer_shapes(rng):
    model = conv_bn(rng)
    shapes = graph_io.check_and_infer(model, name="m.onnx")
    assert shapes == graph_io.infer_shapes(model)
    assert shapes["c"] == (onnx.TensorProto.FLOAT, ("N", 8, 6, 6))


def test_check_and_infer_refuses_an_invalid_model_naming_it(rng):
    model = conv_bn(rng)
    model.graph.node[0].input[1] = "missing"
    with pytest.raises(BadModelError, match=r"^m\.onnx: invalid model: "):
        graph_io.check_and_infer(model, name="m.onnx")
    with pytest.raises(BadModelError, match=r"^m\.onnx: invalid model: "):
        graph_io.check(model, name="m.onnx")


def test_check_and_infer_refuses_a_type_error_found_by_strict_inference(rng):
    model = conv_bn(rng)
    model.graph.output[0].type.tensor_type.elem_type = onnx.TensorProto.INT64
    with pytest.raises(BadModelError, match="invalid model"):
        graph_io.check_and_infer(model)

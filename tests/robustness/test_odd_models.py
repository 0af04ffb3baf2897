"""Odd but valid models: each is optimized correctly (structure, numerics on onnxruntime with
optimizations off, checker) or left alone with a reason in the report."""

from __future__ import annotations

import hashlib

import numpy as np
import onnx
import pytest

import fuser
from fuser import ir as graph_io
from fuser.cli import main
from fuser.runtime import sessions as runtime
from tests.helpers import HEADER, assert_same_outputs, check, make_model, ops

CONV_BN = """
    g ({t}[N,3,8,8] x) => ({t}[N,4,8,8] y) {{
        c = Conv<pads=[1,1,1,1]>(x, W)
        y = BatchNormalization(c, s, b, mean, var)
    }}"""
PARAMS = {"W": (4, 3, 3, 3), "s": (4,), "b": (4,), "mean": (4,), "var": (4,)}


def optimized(model, rng, *, rtol=1e-4, atol=1e-5, **kwargs):
    """fuser.optimize with its own validation passing, then checked independently."""
    out, report = fuser.optimize(model, **kwargs)
    assert report.passed
    check(out)
    assert_same_outputs(model, out, rng, rtol=rtol, atol=atol)
    return out, report


def skips(report) -> dict[str, int]:
    return {k: v for r in report.passes for k, v in r.skipped.items()}


# ------------------------------------------------------------------------------ precision


def test_float16_model_folds_and_validates(rng):
    """Regression: rounding the folded float16 weights moved outputs by ~0.5 ulp of float16,
    above the float32 default tolerance, so every float16 model "failed" validation."""
    model = make_model(CONV_BN.format(t="float16"), rng, dtype=np.float16, **PARAMS)
    out, report = optimized(model, rng, rtol=1e-2, atol=1e-2)
    assert ops(out) == {"Conv": 1} and report.rewrites("fold-batchnorm") == 1
    assert {t.data_type for t in out.graph.initializer} == {onnx.TensorProto.FLOAT16}
    (output,) = report.validation.outputs
    assert output.rtol == pytest.approx(8 * 2.0**-10)  # the float16 floor, stated in the report


def test_float32_validation_keeps_its_tight_tolerance(rng):
    model = make_model(CONV_BN.format(t="float"), rng, **PARAMS)
    _, report = optimized(model, rng)
    assert report.validation.outputs[0].rtol == 1e-4


def _bfloat16_model(rng) -> onnx.ModelProto:
    model = onnx.parser.parse_model('< ir_version: 10, opset_import: ["" : 22] >'
                                    + CONV_BN.format(t="bfloat16"))
    for name, shape in PARAMS.items():
        values = rng.uniform(0.5, 1.5, shape) if name == "var" else rng.standard_normal(shape)
        model.graph.initializer.append(onnx.helper.make_tensor(
            name, onnx.TensorProto.BFLOAT16, shape, values.astype(np.float32).ravel().tolist()))
    check(model)
    return model


def test_bfloat16_weights_are_left_alone_with_a_reason(rng):
    """numpy has no bfloat16 and onnxruntime's CPU has no bfloat16 Conv: validation cannot
    run (a note says so), and the BN stays, with the reason."""
    model = _bfloat16_model(rng)
    out, report = fuser.optimize(model)
    assert report.validation is None
    assert "Could not find an implementation for Conv" in report.notes[0]
    assert ops(out) == ops(model) == {"Conv": 1, "BatchNormalization": 1}
    assert skips(report) == {"scale 's' of BatchNormalization -> 'y' has dtype bfloat16, "
                             "not float16/32/64": 1}
    check(out)
    assert {t.data_type for t in out.graph.initializer} == {onnx.TensorProto.BFLOAT16}


def test_mixed_precision_float16_conv_with_float32_batchnorm(rng):
    """Casts around a float16 Conv whose BN keeps float32 parameters (opset >= 15): the
    fold computes in float64 and writes float16 weights and bias (the Conv's type)."""
    model = make_model("""
        g (float[N,3,8,8] x) => (float[N,4,8,8] y) {
            h = Cast<to=10>(x)
            c = Conv<pads=[1,1,1,1]>(h, W)
            d = BatchNormalization(c, s, b, mean, var)
            y = Cast<to=1>(d)
        }""", rng, W=rng.standard_normal((4, 3, 3, 3)).astype(np.float16), s=(4,), b=(4,),
        mean=(4,), var=(4,))
    out, report = optimized(model, rng, rtol=1e-2, atol=1e-2)
    assert ops(out) == {"Cast": 2, "Conv": 1}
    assert {t.data_type for t in out.graph.initializer} == {onnx.TensorProto.FLOAT16}
    assert report.validation.outputs[0].rtol == pytest.approx(8 * 2.0**-10)


# ------------------------------------------------------------------------------ subgraphs

IF_MODEL = HEADER + """
    g (float[1,3,8,8] x, bool cond) => (float[1,4,8,8] y, float[1,4,8,8] z) {
        c = Conv<pads=[1,1,1,1]>(x, W)
        y = BatchNormalization(c, s, b, mean, var)
        c2 = Conv<pads=[1,1,1,1]>(x, W2)
        y2 = BatchNormalization(c2, s2, b2, mean2, var2)
        z = If(cond) <
            then_branch = t () => (float[1,4,8,8] zt) {
                zc = Conv<pads=[1,1,1,1]>(x, W3)
                zt = BatchNormalization(zc, s, b, mean, var)
            },
            else_branch = e () => (float[1,4,8,8] ze) { ze = Relu(y2) }
        >
    }"""


def _with_initializers(model: onnx.ModelProto, rng, **shapes) -> onnx.ModelProto:
    for name, shape in shapes.items():
        values = rng.uniform(0.5, 1.5, shape) if name.startswith("var") else \
            rng.standard_normal(shape)
        model.graph.initializer.append(
            onnx.numpy_helper.from_array(values.astype(np.float32), name))
    check(model)
    return model


def test_if_branches_are_rewritten_too_and_the_report_says_so(rng):
    """The rules run in subgraphs: the BN inside the then-branch folds into its Conv (with
    the outer BN parameters it reads), the main graph's two BNs fold (the else-branch reads
    one's output by name, which the Conv then writes); the note names the If."""
    model = _with_initializers(onnx.parser.parse_model(IF_MODEL), rng, W3=(4, 3, 3, 3),
                               W2=(4, 3, 3, 3), s2=(4,), b2=(4,), mean2=(4,), var2=(4,),
                               **PARAMS)
    out, report = fuser.optimize(model)
    assert report.passed and ops(out) == {"Conv": 2, "If": 1}
    assert report.rewrites("fold-batchnorm") == 3
    branch = next(n for n in out.graph.node if n.op_type == "If").attribute[0].g
    assert [n.op_type for n in branch.node] == ["Conv"]
    assert report.notes == [("subgraphs (the rules rewrite them too; node and op counts are "
                             "the main graph's): If 'z' (3 nodes)")]
    assert "note: subgraphs (the rules rewrite them too" in report.to_text()
    check(out)
    for cond in (True, False):
        feeds = {"x": rng.standard_normal((1, 3, 8, 8)).astype(np.float32),
                 "cond": np.array(cond)}
        want, got = runtime.run(model, feeds), runtime.run(out, feeds)
        for name in want:
            np.testing.assert_allclose(got[name], want[name], rtol=1e-4, atol=1e-5)


def test_tensor_read_inside_a_subgraph_counts_as_a_consumer(rng):
    """Folding BN into a Conv whose output a branch also reads would change the branch."""
    model = _with_initializers(onnx.parser.parse_model(HEADER + """
        g (float[1,3,8,8] x, bool cond) => (float[1,4,8,8] y, float[1,4,8,8] z) {
            c = Conv<pads=[1,1,1,1]>(x, W)
            y = BatchNormalization(c, s, b, mean, var)
            z = If(cond) <
                then_branch = t () => (float[1,4,8,8] zt) { zt = Relu(c) },
                else_branch = e () => (float[1,4,8,8] ze) { ze = Sigmoid(c) }
            >
        }"""), rng, **PARAMS)
    out, report = fuser.optimize(model)
    assert report.passed and ops(out) == ops(model)
    assert skips(report) == {"tensor 'c' has 3 consumers": 1}
    for cond in (True, False):
        feeds = {"x": rng.standard_normal((1, 3, 8, 8)).astype(np.float32),
                 "cond": np.array(cond)}
        assert runtime.run(out, feeds)["z"].tolist() == runtime.run(model, feeds)["z"].tolist()


LOOP_BODY = """
    g (float[N,3,8,8] x) => (float[N,4,8,8] y, float[N,3,8,8] z) {
        c = Conv<pads=[1,1,1,1]>(x, W)
        y = BatchNormalization(c, s, b, mean, var)
        z = Loop(trips, "", x) <body = body (int64[] i, bool[] cond, float[N,3,8,8] acc)
            => (bool[] cond_out, float[N,3,8,8] acc_out) {
                cond_out = Identity(cond)
                acc_out = Relu(acc)
            }>
    }"""
SCAN_BODY = """
    g (float[N,3,8,8] x, float[5,3] seq) => (float[N,4,8,8] y, float[3] total) {
        c = Conv<pads=[1,1,1,1]>(x, W)
        y = BatchNormalization(c, s, b, mean, var)
        zero = Constant<value = float[3] {0, 0, 0}>()
        total = Scan<body = body (float[3] acc, float[3] item) => (float[3] acc_out) {
                acc_out = Add(acc, item)
            }, num_scan_inputs = 1>(zero, seq)
    }"""


@pytest.mark.parametrize("text, op", [(LOOP_BODY, "Loop"), (SCAN_BODY, "Scan")])
def test_loop_and_scan_bodies_with_nothing_to_rewrite_stay_as_they_are(text, op, rng):
    extra = {"trips": np.array(3, np.int64)} if op == "Loop" else {}
    model = make_model(text, rng, **extra, **PARAMS)
    for node in model.graph.node:  # the text parser leaves "int64[] i" without a shape
        for value in [*node.attribute[0].g.input, *node.attribute[0].g.output] if \
                node.op_type == "Loop" else []:
            if value.type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
                value.type.tensor_type.shape.SetInParent()  # a scalar
    check(model)
    out, report = fuser.optimize(model)
    assert report.passed and report.rewrites("fold-batchnorm") == 1
    # the Scan model's Constant node becomes an initializer (inline-constants)
    assert ops(out) == {k: v for k, v in ops(model).items()
                        if k not in ("BatchNormalization", "Constant")}
    holder = next(n for n in out.graph.node if n.op_type == op)
    inner = {"Loop": 2, "Scan": 1}[op]
    assert report.notes == [("subgraphs (the rules rewrite them too; node and op counts are "
                             f"the main graph's): {op} '{holder.output[0]}' ({inner} nodes)")]
    assert holder.SerializeToString() == next(
        n for n in model.graph.node if n.op_type == op).SerializeToString()
    check(out)
    feeds = runtime.random_feeds(model, rng, dynamic=2)
    want, got = runtime.run(model, feeds), runtime.run(out, feeds)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------ external data, inputs


def test_external_data_next_to_the_model(tmp_path, rng, capsys):
    """A model whose weights sit in a .data file beside it: both files stay byte for byte;
    the output is written with its own data file."""
    model = make_model(CONV_BN.format(t="float").replace("4,8,8", "16,8,8"), rng,
                       W=(16, 3, 3, 3), s=(16,), b=(16,), mean=(16,), var=(16,))
    source = tmp_path / "in.onnx"
    graph_io.save(model, source, external_data=True)
    assert (tmp_path / "in.onnx.data").exists()
    digests = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in tmp_path.iterdir()}
    assert main(["optimize", str(source), "-o", str(tmp_path / "out.onnx"), "--no-bench",
                 "--external-data"]) == 0
    assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in tmp_path.iterdir()
            if p.name in digests} == digests
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "in.onnx", "in.onnx.data", "out.onnx", "out.onnx.data"]
    out = graph_io.load(tmp_path / "out.onnx")
    assert ops(out) == {"Conv": 1}
    check(out)
    assert_same_outputs(model, out, rng, rtol=1e-4)


OLD = """
    g (float[1,3,8,8] x, float[4,3,3,3] W, float[4] s, float[4] b, float[4] mean,
       float[4] var) => (float[1,4,8,8] y) {
        c = Conv<pads=[1,1,1,1]>(x, W)
        y = BatchNormalization(c, s, b, mean, var)
    }"""


def test_initializers_listed_as_inputs_before_ir4_are_constants(rng):
    """Regression: IR 3 requires every initializer to be a graph input; the folded weights
    were not listed, and the checker refused the result. Before IR 4 they are constants."""
    model = make_model(OLD, rng, header='< ir_version: 3, opset_import: ["" : 9] >', **PARAMS)
    out, report = optimized(model, rng)
    assert ops(out) == {"Conv": 1} and report.rewrites("fold-batchnorm") == 1
    assert out.ir_version == 3
    assert {i.name for i in out.graph.input} == {"x"} | {t.name for t in out.graph.initializer}


def test_overridable_initializers_from_ir4_are_left_alone(rng):
    """Regression: from IR 4 an initializer that is also an input is a default the caller
    may override; fuser folded it and dropped the inputs (the interface changed)."""
    model = make_model(OLD, rng, header='< ir_version: 8, opset_import: ["" : 9] >', **PARAMS)
    out, report = optimized(model, rng)
    assert ops(out) == ops(model)
    assert skips(report) == {"scale 's' of BatchNormalization -> 'y' is not a constant": 1}
    assert [i.name for i in out.graph.input] == [i.name for i in model.graph.input]
    assert {t.name: t.SerializeToString() for t in out.graph.initializer} == {
        t.name: t.SerializeToString() for t in model.graph.initializer}
    feeds = runtime.random_feeds(model, rng)  # overriding a default still works
    feeds["s"] = rng.standard_normal(4).astype(np.float32)
    np.testing.assert_allclose(runtime.run(out, feeds)["y"], runtime.run(model, feeds)["y"])


# ------------------------------------------------------------------------------ structure

TWO = """
    g (float[N,3,8,8] x) => (float[N,4,8,8] y, float[N,4,8,8] z) {
        c = Conv<pads=[1,1,1,1]>(x, W)
        y = BatchNormalization(c, s, b, mean, var)
        c2 = Conv<pads=[1,1,1,1]>(x, W2)
        z = BatchNormalization(c2, s2, b2, mean2, var2)
    }"""
TWO_PARAMS = {"W2": (4, 3, 3, 3), "s2": (4,), "b2": (4,), "mean2": (4,), "var2": (4,), **PARAMS}


@pytest.mark.parametrize("names", [["n", "n", "n", "n"], ["", "", "", ""]])
def test_duplicate_and_empty_node_names(names, rng):
    model = make_model(TWO, rng, **TWO_PARAMS)
    for node, name in zip(model.graph.node, names, strict=True):
        node.name = name
    check(model)
    out, report = optimized(model, rng)
    assert ops(out) == {"Conv": 2} and report.rewrites("fold-batchnorm") == 2
    initializers = [t.name for t in out.graph.initializer]
    assert len(set(initializers)) == len(initializers) == 4
    assert [n.name for n in out.graph.node] == names[:2]  # the user's names are kept
    if names[0]:
        # Regression: onnxruntime refuses repeated node names, so validation could not run
        assert report.notes == [("node names repeat ('n' x4): valid ONNX, but onnxruntime "
                                 "refuses such a model; fuser's sessions used unique names, "
                                 "the output keeps the original ones")]
        assert [n.name for n in model.graph.node] == names  # restored after the sessions


def test_weight_shared_across_convs_is_cloned(rng):
    model = make_model(TWO.replace("(x, W2)", "(x, W)"), rng,
                       **{k: v for k, v in TWO_PARAMS.items() if k != "W2"})
    out, report = optimized(model, rng)
    assert ops(out) == {"Conv": 2} and report.rewrites("fold-batchnorm") == 2
    fold = next(r for r in report.passes if r.name == "fold-batchnorm")
    assert fold.stats == {"shared weight cloned": 1}
    weights = [n.input[1] for n in out.graph.node]
    assert len(set(weights)) == 2 and "W" not in weights
    out, report = optimized(model, rng, options={"fold-batchnorm": {"clone_shared": False}})
    assert ops(out) == ops(model)
    assert skips(report) == {"weight 'W' of Conv -> 'c' is shared with 1 other node(s)": 1,
                             "weight 'W' of Conv -> 'c2' is shared with 1 other node(s)": 1}


def test_graph_outputs_that_are_also_intermediate_values(rng):
    model = make_model("""
        g (float[N,3,8,8] x) => (float[N,4,8,8] c, float[N,4,8,8] y, float[N,4,8,8] r) {
            c = Conv<pads=[1,1,1,1]>(x, W)
            d = BatchNormalization(c, s, b, mean, var)
            c2 = Conv<pads=[1,1,1,1]>(d, W2)
            y = BatchNormalization(c2, s2, b2, mean2, var2)
            r = Relu(y)
        }""", rng, **{**TWO_PARAMS, "W2": (4, 4, 3, 3)})
    out, report = optimized(model, rng)
    # 'c' is read by the user: its BN cannot fold; 'y' stays an output, now made by the Conv
    assert ops(out) == {"Conv": 2, "BatchNormalization": 1, "Relu": 1}
    assert skips(report) == {
        "tensor 'c' is a graph output": 1,
        "BatchNormalization -> 'd' shifts the input of padded Conv -> 'y' (the shift would "
        "leak into the zero padding)": 1}
    assert [o.name for o in out.graph.output] == ["c", "y", "r"]
    assert next(n for n in out.graph.node if "y" in n.output).op_type == "Conv"


def test_qdq_quantized_model_is_left_alone(rng):
    model = make_model("""
        g (float[N,3,8,8] x) => (float[N,4,8,8] y) {
            q = QuantizeLinear(x, xs, xz)
            dq = DequantizeLinear(q, xs, xz)
            w = DequantizeLinear(Wq, ws, wz)
            c = Conv<pads=[1,1,1,1]>(dq, w, B)
            y = BatchNormalization(c, s, b, mean, var)
        }""", rng, Wq=rng.integers(-100, 100, (4, 3, 3, 3)).astype(np.int8),
        ws=np.array(0.02, np.float32), wz=np.array(0, np.int8), xs=np.array(0.05, np.float32),
        xz=np.array(0, np.uint8), B=(4,), s=(4,), b=(4,), mean=(4,), var=(4,))
    out, report = optimized(model, rng, rtol=0, atol=0)
    assert ops(out) == ops(model)
    assert report.rewrites() == 0
    assert skips(report) == {"weight 'w' of Conv -> 'c' is not a constant": 1}
    assert {t.name: t.SerializeToString() for t in out.graph.initializer} == {
        t.name: t.SerializeToString() for t in model.graph.initializer}


NESTED_IF = HEADER + """
    g (float[1,3,8,8] x, bool cond) => (float[1,4,8,8] z) {
        z = If(cond) <
            then_branch = t () => (float[1,4,8,8] zt) {
                zt = If(cond) <
                    then_branch = tt () => (float[1,4,8,8] u) {
                        uc = Conv<pads=[1,1,1,1]>(x, W)
                        u = BatchNormalization(uc, s, b, mean, var)
                    },
                    else_branch = te () => (float[1,4,8,8] v) {
                        v = Conv<pads=[1,1,1,1]>(x, W)
                    }
                >
            },
            else_branch = e () => (float[1,4,8,8] ze) { ze = Conv<pads=[1,1,1,1]>(x, W) }
        >
    }"""


def test_a_conv_and_bn_in_a_nested_branch_fold_with_names_unique_across_scopes(rng):
    from fuser import ir as graph_io
    from fuser.passes.match import Names

    model = _with_initializers(onnx.parser.parse_model(NESTED_IF), rng, **PARAMS)
    graph = graph_io.to_graph(model)
    assert {"uc", "u", "v", "ze"} <= Names(graph).taken  # every scope's names are taken
    out, report = fuser.optimize(model)
    assert report.passed and report.rewrites("fold-batchnorm") == 1
    inner = out.graph.node[0].attribute[0].g.node[0].attribute[0].g
    assert [n.op_type for n in inner.node] == ["Conv"]
    check(out)
    for cond in (True, False):
        feeds = {"x": rng.standard_normal((1, 3, 8, 8)).astype(np.float32),
                 "cond": np.array(cond)}
        np.testing.assert_allclose(runtime.run(out, feeds)["z"], runtime.run(model, feeds)["z"],
                                   rtol=1e-4, atol=1e-5)

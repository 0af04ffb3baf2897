"""float16 folds: weights and biases computed in float64 from the original values and rounded
to float16 once, also when several folds land on one node (issue 25).

The reference is the original model in float32 (its float16 weights upcast, exactly),
onnxruntime with optimizations off. Each positive case asserts:

- the folded weight and bias equal ``(the fold computed in float64).astype(float16)``, with
  the float64 fold taken from the original model's values (one rounding, not one per fold);
- the rewrite count and the op histogram (no BatchNormalization left), onnx.checker;
- the folded float16 model against the float32 reference, per element, within one float16
  rounding of every weight and of every node's output:
  ``|y - ref| <= u (|ref| + nodes * (|x| |W'| + |b'|))`` with ``u = 2^-11``.

Why not "no worse than the original float16 model": onnxruntime's CPU kernels run a float16
Conv -> BatchNormalization in float32 and round the output once (the original's outputs equal
the float32 reference rounded to float16), so the only error the original has is that last
rounding. Storing ``s W`` in float16 adds one rounding per weight, an error of the same size:
the folded model's RMS error is about sqrt(2) times the original's, whatever the fold does.
Before this test, chained folds (``Conv -> BN -> Mul -> Add``, ``BN -> Conv -> BN``) rounded
the bias (and with fold-into-next-conv, the weight) once per fold: RMS error up to 1.8x.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from fuser import ir as graph_io
from fuser.passes import get_pass
from fuser.passes.manager import PassManager
from fuser.runtime import sessions as runtime
from tests.helpers import HEADER, assert_same_outputs, assert_skipped, check, make_model, ops

#: float16's unit roundoff (round to nearest) and smallest normal number.
U, TINY = 2.0 ** -11, 2.0 ** -14
F16 = onnx.TensorProto.FLOAT16
EPS = 1e-5  # BatchNormalization's default epsilon
TYPE = {np.float16: "float16", np.float32: "float"}  # as ONNX text spells them


def bn(c: int, p: str = "") -> dict:
    return {f"s{p}": (c,), f"b{p}": (c,), f"mean{p}": (c,), f"var{p}": (c,)}


def fold(model: onnx.ModelProto, *names: str) -> tuple[onnx.ModelProto, int]:
    """Run the passes on one graph as the pipeline does (sweeps to a fixed point, checked
    after each pass); return the exported model and the rewrites."""
    graph = graph_io.to_graph(model)
    graph_io.annotate(graph, graph_io.infer_shapes(model))
    records = PassManager([get_pass(n) for n in names], check_each=True,
                          template=model).run(graph)
    graph.cleanup(remove_unused_graph_inputs=False).toposort()
    return graph_io.to_model(graph, template=model), sum(r.rewrites for r in records)


def values(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def f64(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """The initializers as float64 (exact: float16 and float32 upcast without rounding)."""
    return {k: v.astype(np.float64) for k, v in values(model).items()}


def affine(p: dict, suffix: str = "") -> tuple[np.ndarray, np.ndarray]:
    """BatchNormalization's (s, t) in float64 from the original parameters."""
    s = p[f"s{suffix}"] / np.sqrt(p[f"var{suffix}"] + EPS)
    return s, p[f"b{suffix}"] - p[f"mean{suffix}"] * s


def once(values: np.ndarray, dtype: type = np.float16) -> np.ndarray:
    """float64 values rounded to ``dtype`` once, then float32/64 denormals flushed to zero
    (the folds' policy: ``match.cast_back``; float16 denormals are kept)."""
    out = np.asarray(values).astype(dtype)
    if out.dtype != np.float16:
        out[np.abs(out) < np.finfo(dtype).tiny] = 0
    return out


def upcast(model: onnx.ModelProto, magnitude: bool = False) -> onnx.ModelProto:
    """The model in float32. ``magnitude``: every initializer replaced by its absolute value,
    so that on ``|x|`` a linear model computes ``|x| |W| + |b|``; a 0 by ``TINY / U``, as a
    weight flushed to 0 may have been anything below float16's smallest normal."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for t in out.graph.initializer:
        array = numpy_helper.to_array(t).astype(np.float32)
        if magnitude:
            array = np.where(array == 0, np.float32(TINY / U), np.abs(array))
        t.CopyFrom(numpy_helper.from_array(array, t.name))
    for v in [*out.graph.input, *out.graph.output, *out.graph.value_info]:
        if v.type.tensor_type.elem_type == F16:
            v.type.tensor_type.elem_type = onnx.TensorProto.FLOAT
    return out


def assert_within_one_rounding(model: onnx.ModelProto, out: onnx.ModelProto,
                               rng: np.random.Generator) -> None:
    """The folded float16 model against the original in float32, elementwise."""
    feeds = runtime.random_feeds(model, rng, dynamic=2)
    up = {k: v.astype(np.float32) for k, v in feeds.items()}
    ref = runtime.run(upcast(model), up)
    got = runtime.run(out, feeds)
    mag = runtime.run(upcast(out, magnitude=True), {k: np.abs(v) for k, v in up.items()})
    for name, want in ref.items():
        assert got[name].dtype == np.float16
        err = np.abs(got[name].astype(np.float64) - want)
        bound = U * (np.abs(want) + len(out.graph.node) * mag[name]) * 1.01 + 2.0 ** -24
        assert np.all(err <= bound), f"{name}: worst error {np.max(err / bound):.2f}x the bound"


def assert_folded(model: onnx.ModelProto, rng: np.random.Generator, passes: list[str],
                  expect_ops: dict[str, int], rewrites: int, w_want: np.ndarray,
                  b_want: np.ndarray, dtype: type = np.float16) -> onnx.ModelProto:
    """Structure, validity, the weight and bias (float64 ``*_want`` rounded once) and the
    numerics of the folded model."""
    out, done = fold(model, *passes)
    assert done == rewrites
    assert ops(out) == expect_ops
    check(out)
    got = values(out)
    node = next(n for n in out.graph.node if n.op_type in LINEAR)
    bias = node.input[2] if len(node.input) > 2 else next(  # a MatMul's: its Add's constant
        i for n in out.graph.node if n.op_type == "Add" for i in n.input if i in got)
    for name, want in ((node.input[1], w_want), (bias, b_want)):
        assert got[name].dtype == dtype, name
        np.testing.assert_array_equal(got[name], once(want, dtype), err_msg=name)
    if dtype == np.float16:
        assert_within_one_rounding(model, out, rng)
    else:
        assert_same_outputs(model, out, rng, rtol=1e-5, atol=1e-5)
    return out


LINEAR = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def spread(v: np.ndarray, rank: int, axis: int = 0) -> np.ndarray:
    """A per-channel vector shaped to broadcast on ``axis`` of a rank-``rank`` weight."""
    shape = [1] * rank
    shape[axis] = -1
    return v.reshape(shape)


def twice_differs(exact: np.ndarray, rounded_between: np.ndarray) -> bool:
    """Whether rounding in between changes the float16 result (the case can tell)."""
    return not np.array_equal(once(exact), once(rounded_between))


@pytest.mark.parametrize("group", [1, 2, 16], ids=["dense", "grouped", "depthwise"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
def test_conv_bn_rounds_once(rng, group, bias):
    inputs = "x, W, B" if bias else "x, W"
    model = make_model(f"""
        g (float16[N,16,8,8] x) => (float16[N,32,8,8] y) {{
            c = Conv<group={group}, pads=[1,1,1,1]>({inputs})
            y = BatchNormalization(c, s, b, mean, var)
        }}""", rng, dtype=np.float16, W=(32, 16 // group, 3, 3),
        **({"B": (32,)} if bias else {}), **bn(32))
    p = f64(model)
    s, t = affine(p)
    assert_folded(model, rng, ["fold-batchnorm"], {"Conv": 1}, 1, p["W"] * spread(s, 4),
                  p["B"] * s + t if bias else t)


def test_conv_transpose_bn_rounds_once_per_group(rng):
    model = make_model("""
        g (float16[N,8,5,5] x) => (float16[N,12,10,10] y) {
            c = ConvTranspose<group=2, strides=[2,2], pads=[1,1,1,1], output_padding=[1,1]>(
                x, W, B)
            y = BatchNormalization(c, s, b, mean, var)
        }""", rng, dtype=np.float16, W=(8, 6, 3, 3), B=(12,), **bn(12))
    p = f64(model)
    s, t = affine(p)
    w = (p["W"].reshape(2, 4, 6, 3, 3) * s.reshape(2, 1, 6, 1, 1)).reshape(8, 6, 3, 3)
    assert_folded(model, rng, ["fold-batchnorm"], {"ConvTranspose": 1}, 1, w, p["B"] * s + t)


@pytest.mark.parametrize("trans_b", [0, 1])
def test_gemm_bn_rounds_once(rng, trans_b):
    model = make_model(f"""
        g (float16[N,64] x) => (float16[N,32] y) {{
            c = Gemm<transB={trans_b}, alpha=0.5, beta=2.0>(x, W, C)
            y = BatchNormalization(c, s, b, mean, var)
        }}""", rng, dtype=np.float16, W=(32, 64) if trans_b else (64, 32), C=(32,), **bn(32))
    p = f64(model)
    s, t = affine(p)
    out = assert_folded(model, rng, ["fold-batchnorm"], {"Gemm": 1}, 1,
                        p["W"] * spread(s, 2, 0 if trans_b else 1), 2.0 * p["C"] * s + t)
    beta = next(a for a in out.graph.node[0].attribute if a.name == "beta")
    assert onnx.helper.get_attribute_value(beta) == 1.0


@pytest.mark.parametrize("bias", [True, False], ids=["matmul-add", "matmul"])
def test_matmul_bn_rounds_once(rng, bias):
    body = "m = MatMul(x, W)\n c = Add(m, B)" if bias else "c = MatMul(x, W)"
    model = make_model(f"""
        g (float16[N,64] x) => (float16[N,32] y) {{
            {body}
            y = BatchNormalization(c, s, b, mean, var)
        }}""", rng, dtype=np.float16, W=(64, 32), **({"B": (32,)} if bias else {}), **bn(32))
    p = f64(model)
    s, t = affine(p)
    assert_folded(model, rng, ["fold-batchnorm"], {"MatMul": 1, "Add": 1}, 1,
                  p["W"] * s[None, :], p["B"] * s + t if bias else t)


def test_conv_mul_add_per_channel_rounds_once(rng):
    model = make_model("""
        g (float16[N,16,8,8] x) => (float16[N,32,8,8] y) {
            c = Conv<pads=[1,1,1,1]>(x, W, B)
            d = Mul(c, k)
            y = Add(d, a)
        }""", rng, dtype=np.float16, W=(32, 16, 3, 3), B=(32,), k=(32, 1, 1), a=(32, 1, 1))
    p = f64(model)
    k, a = p["k"].reshape(-1), p["a"].reshape(-1)
    assert_folded(model, rng, ["fold-affine"], {"Conv": 1}, 2, p["W"] * spread(k, 4),
                  p["B"] * k + a)


# Chains: a second fold into the same node starts from the first one's float64 results.


@pytest.mark.parametrize("dtype", [np.float16, np.float32], ids=["float16", "float32"])
def test_conv_bn_mul_add_rounds_the_bias_once(rng, dtype):
    model = make_model("""
        g (float16[N,16,8,8] x) => (float16[N,32,8,8] y) {
            c = Conv<pads=[1,1,1,1]>(x, W, B)
            e = BatchNormalization(c, s, b, mean, var)
            d = Mul(e, k)
            y = Add(d, a)
        }""".replace("float16", TYPE[dtype]), rng, dtype=dtype, W=(32, 16, 3, 3),
        B=(32,), k=(32, 1, 1), a=(32, 1, 1), **bn(32))
    p = f64(model)
    s, t = affine(p)
    k, a = p["k"].reshape(-1), p["a"].reshape(-1)
    b_once = (p["B"] * s + t) * k + a
    if dtype == np.float16:  # the bias rounded after the BN fold, as before the fix
        assert twice_differs(b_once, (p["B"] * s + t).astype(dtype) * k + a)
    assert_folded(model, rng, ["fold-batchnorm", "fold-affine"], {"Conv": 1}, 3,
                  p["W"] * spread(s * k, 4), b_once, dtype)


@pytest.mark.parametrize("dtype", [np.float16, np.float32], ids=["float16", "float32"])
def test_bn_conv_bn_rounds_the_weight_once(rng, dtype):
    """fold-batchnorm scales the Conv's outputs, then fold-into-next-conv its inputs: the
    second scales the original weight by both factors (it rounded the first's result)."""
    model = make_model("""
        g (float16[N,16,8,8] x) => (float16[N,32,6,6] y) {
            d = BatchNormalization(x, s, b, mean, var)
            c = Conv(d, W, B)
            y = BatchNormalization(c, s2, b2, mean2, var2)
        }""".replace("float16", TYPE[dtype]), rng, dtype=dtype, W=(32, 16, 3, 3),
        B=(32,), **bn(16), **bn(32, "2"))
    p = f64(model)
    (s1, t1), (s2, t2) = affine(p), affine(p, "2")
    w2 = p["W"] * spread(s2, 4)
    w_once = w2 * spread(s1, 4, 1)
    b_once = p["B"] * s2 + t2 + (w2.sum(axis=(2, 3)) * t1).sum(axis=1)
    if dtype == np.float16:
        assert twice_differs(w_once, w2.astype(dtype) * spread(s1, 4, 1))
    assert_folded(model, rng, ["fold-batchnorm", "fold-into-next-conv"], {"Conv": 1}, 2,
                  w_once, b_once, dtype)


def test_bn_mul_into_next_conv_rounds_once(rng):
    """Two folds into the next Conv (the Mul, then the BN): one rounding."""
    model = make_model("""
        g (float16[N,16,8,8] x) => (float16[N,32,6,6] y) {
            r = Relu(x)
            d = BatchNormalization(r, s, b, mean, var)
            e = Mul(d, k)
            y = Conv(e, W, B)
        }""", rng, dtype=np.float16, W=(32, 16, 3, 3), B=(32,), k=(16, 1, 1), **bn(16))
    p = f64(model)
    s, t = affine(p)
    k = p["k"].reshape(-1)
    w1 = p["W"] * spread(k, 4, 1)
    assert twice_differs(w1 * spread(s, 4, 1), w1.astype(np.float16) * spread(s, 4, 1))
    assert_folded(model, rng, ["fold-into-next-conv"], {"Relu": 1, "Conv": 1}, 2,
                  w1 * spread(s, 4, 1), p["B"] + (w1.sum(axis=(2, 3)) * t).sum(axis=1))


def test_batchnorm_to_affine_then_next_conv_rounds_once(rng):
    """batchnorm-to-affine rounds s and t to float16 for its Mul and Add; folded on into the
    next Conv, they are taken before that rounding."""
    model = make_model("""
        g (float16[N,16,8,8] x) => (float16[N,32,6,6] y) {
            r = Relu(x)
            d = BatchNormalization(r, s, b, mean, var)
            y = Conv(d, W, B)
        }""", rng, dtype=np.float16, W=(32, 16, 3, 3), B=(32,), **bn(16))
    p = f64(model)
    s, t = affine(p)
    assert twice_differs(p["W"] * spread(s, 4, 1),
                         p["W"] * spread(s.astype(np.float16), 4, 1))
    assert_folded(model, rng, ["batchnorm-to-affine", "fold-into-next-conv"],
                  {"Relu": 1, "Conv": 1}, 3, p["W"] * spread(s, 4, 1),
                  p["B"] + (p["W"].sum(axis=(2, 3)) * t).sum(axis=1))


def test_batchnorm_to_affine_rounds_s_and_t_once(rng):
    model = make_model("""
        g (float16[N,16,8,8] x) => (float16[N,16,8,8] y) {
            r = Relu(x)
            y = BatchNormalization(r, s, b, mean, var)
        }""", rng, dtype=np.float16, **bn(16))
    s, t = affine(f64(model))
    out, done = fold(model, "batchnorm-to-affine")
    assert done == 1 and ops(out) == {"Relu": 1, "Mul": 1, "Add": 1}
    check(out)
    got = values(out)
    mul, add = (next(n for n in out.graph.node if n.op_type == op) for op in ("Mul", "Add"))
    np.testing.assert_array_equal(got[mul.input[1]].reshape(-1), once(s))
    np.testing.assert_array_equal(got[add.input[1]].reshape(-1), once(t))
    assert_within_one_rounding(model, out, rng)


def test_float32_batchnorm_parameters_fold_into_float16_weights_once(rng):
    """Since opset 15 BN's parameters may be float32 under float16 data: the fold reads them
    as they are and rounds W' and b' to the weight's float16 once."""
    f32 = {n: rng.standard_normal(32).astype(np.float32) for n in ("s", "b", "mean")}
    model = make_model("""
        g (float16[N,16,8,8] x) => (float16[N,32,8,8] y) {
            c = Conv<pads=[1,1,1,1]>(x, W, B)
            y = BatchNormalization(c, s, b, mean, var)
        }""", rng, W=rng.standard_normal((32, 16, 3, 3)).astype(np.float16),
        B=rng.standard_normal(32).astype(np.float16),
        var=rng.uniform(0.5, 1.5, 32).astype(np.float32), **f32)
    p = f64(model)
    s, t = affine(p)
    assert values(model)["s"].dtype == np.float32
    assert_folded(model, rng, ["fold-batchnorm"], {"Conv": 1}, 1, p["W"] * spread(s, 4),
                  p["B"] * s + t)


def test_float64_fold_beats_float16_arithmetic(rng):
    """Why float64: the same fold done in float16 arithmetic (s, t, s W, s b + t each rounded)
    is further from the float32 reference than the fold rounded once."""
    model = make_model("""
        g (float16[N,16,8,8] x) => (float16[N,32,8,8] y) {
            c = Conv<pads=[1,1,1,1]>(x, W, B)
            y = BatchNormalization(c, s, b, mean, var)
        }""", rng, dtype=np.float16, W=(32, 16, 3, 3), B=(32,), **bn(32))
    out, _ = fold(model, "fold-batchnorm")
    p = values(model)  # float16: every operation below rounds
    s = p["s"] / np.sqrt(p["var"] + np.float16(EPS))
    naive = onnx.ModelProto()
    naive.CopyFrom(out)
    w_name, b_name = out.graph.node[0].input[1:3]
    del naive.graph.initializer[:]
    naive.graph.initializer.extend([
        numpy_helper.from_array(p["W"] * spread(s, 4), w_name),
        numpy_helper.from_array(p["B"] * s + (p["b"] - p["mean"] * s), b_name)])
    feeds = runtime.random_feeds(model, rng, dynamic=4)
    ref = runtime.run(upcast(model), {k: v.astype(np.float32) for k, v in feeds.items()})["y"]

    def rms(m: onnx.ModelProto) -> float:
        return float(np.sqrt(np.mean((runtime.run(m, feeds)["y"] - ref.astype(np.float64)) ** 2)))

    assert rms(out) < 0.9 * rms(naive)


# Preconditions.


@pytest.mark.parametrize("params", ["bfloat16", "float"])
def test_bfloat16_is_left_alone_with_a_reason(params):
    """bfloat16 has no numpy dtype the folds compute in: skipped, naming the tensor."""
    import ml_dtypes

    model = onnx.parser.parse_model(f"""{HEADER}
        g (bfloat16[N,8] x) => (bfloat16[N,4] y) {{
            c = Gemm<transB=1>(x, W)
            y = BatchNormalization(c, s, b, mean, var)
        }}""")
    for name, shape in {"W": (4, 8), "s": (4,), "b": (4,), "mean": (4,), "var": (4,)}.items():
        array = np.linspace(0.5, 1.5, int(np.prod(shape)), dtype=np.float32).reshape(shape)
        if name == "W" or params == "bfloat16":
            array = array.astype(ml_dtypes.bfloat16)
        model.graph.initializer.append(numpy_helper.from_array(array, name))
    check(model)
    what = "scale 's' of BatchNormalization -> 'y'" if params == "bfloat16" \
        else "weight 'W' of Gemm -> 'c'"
    out, _ = assert_skipped("fold-batchnorm", model,
                            f"{what} has dtype bfloat16, not float16/32/64")
    check(out)
    assert {t.data_type for t in out.graph.initializer} >= {onnx.TensorProto.BFLOAT16}

"""INT8 under the guard (``fuser.search.int8``, ``qdq``, ``lossy``): regions, the quantizer,
the latency gate, the ladder, the CLI and the two methods together."""

from __future__ import annotations

import collections
import json

import numpy as np
import onnx
import pytest

from fuser import ir as graph_io
from fuser.cli import main
from fuser.errors import FuserError
from fuser.runtime import sessions as runtime
from fuser.search import lossy, qdq
from fuser.search.config import Search
from fuser.search.int8 import quantize
from fuser.search.int8_ranking import layer_errors
from fuser.search.latency import LatencyTable
from tests.helpers import check, make_model

NET = """
    g (float[N,3,16,16] x) => (float[N,10] y) {
        a = Conv<kernel_shape=[3,3], pads=[1,1,1,1]>(x, W1, B1)
        r = Relu(a)
        b = Conv<kernel_shape=[3,3], pads=[1,1,1,1]>(r, W2, B2)
        s = Relu(b)
        p = GlobalAveragePool(s)
        f = Flatten(p)
        y = Gemm<transB=1>(f, W3, B3)
    }"""


def _net(rng: np.random.Generator, opset: int = 17) -> onnx.ModelProto:
    header = f'< ir_version: 8, opset_import: ["" : {opset}] >'
    model = make_model(NET, rng, header=header, W1=(16, 3, 3, 3), B1=(16,), W2=(16, 16, 3, 3),
                       B2=(16,), W3=(10, 16), B3=np.zeros(10, np.float32))
    for k, node in enumerate(model.graph.node):
        node.name = f"{node.op_type.lower()}{k}"
    return model


def _batches(count: int = 256, size: int = 16, seed: int = 0) -> list[dict]:
    draw = np.random.default_rng(seed)
    x = draw.standard_normal((count, 3, 16, 16)) + draw.uniform(-3, 3, (count, 3, 1, 1))
    x = x.astype(np.float32)
    return [{"x": x[i:i + size]} for i in range(0, count, size)]


def _outputs(model: onnx.ModelProto, batches: list[dict]) -> np.ndarray:
    sess = runtime.session(model, level="disable")
    return np.concatenate([sess.run(None, b)[0] for b in batches])


def _ops(model: onnx.ModelProto) -> collections.Counter:
    return collections.Counter(n.op_type for n in model.graph.node)


@pytest.fixture
def faster_int8(monkeypatch, tmp_path):
    """int8 timed twice as fast as float (a CPU provider with int8 kernels), whatever the
    machine's load."""
    monkeypatch.setenv("FUSER_CACHE", str(tmp_path))
    monkeypatch.setattr(LatencyTable, "compare", lambda self, a, b, feeds: (
        _planted_ms(a), _planted_ms(b)))


def _planted_ms(model: onnx.ModelProto) -> float:
    quantized = sum(n.op_type == "QuantizeLinear" for n in model.graph.node)
    return 2.0 / (1.0 + min(quantized, 4) / 4)


def test_regions_give_each_node_to_the_layer_it_reads_from(rng):
    regions = qdq.regions(_net(rng))
    assert regions == {"conv0": ["conv0", "relu1"],
                       "conv2": ["conv2", "relu3", "globalaveragepool4", "flatten5"],
                       "gemm6": ["gemm6"]}


def test_nodes_before_the_first_layer_belong_to_none(rng):
    model = make_model("""
        g (float[N,3,8,8] x) => (float[N,4,8,8] y) {
            s = Sigmoid(x)
            y = Conv<kernel_shape=[1,1]>(s, W)
        }""", rng, W=(4, 3, 1, 1))
    model.graph.node[0].name, model.graph.node[1].name = "sig", "conv"
    assert qdq.regions(model) == {"conv": ["conv"]}


def test_the_quantizer_makes_a_valid_qdq_model_close_to_the_float_one(rng):
    model, batches = _net(rng), _batches()
    quantizer = qdq.Quantizer(model, batches[:8], "minmax")
    assert quantizer.layers == ["conv0", "conv2", "gemm6"]
    whole = quantizer.quantized()
    check(whole)
    ops = _ops(whole)
    assert ops["QuantizeLinear"] >= 3 and ops["DequantizeLinear"] >= 6
    assert ops["Conv"] == 2 and ops["Gemm"] == 1  # QDQ form: the float ops stay, fed by DQ
    ref, new = _outputs(model, batches[8:]), _outputs(whole, batches[8:])
    assert np.linalg.norm(new - ref) / np.linalg.norm(ref) < 0.05


def test_a_layer_kept_float_keeps_its_region_float(rng):
    model, batches = _net(rng), _batches()
    quantizer = qdq.Quantizer(model, batches[:8], "minmax")
    mixed = quantizer.quantized({"conv2"})
    check(mixed)
    nodes = {n.name: n for n in mixed.graph.node}
    weights = {t.name for t in mixed.graph.initializer}
    assert nodes["conv2"].input[1] in weights  # float weights, no DequantizeLinear
    assert not nodes["relu3"].input[0].endswith("DequantizeLinear_Output")
    assert nodes["conv0"].input[1].endswith("DequantizeLinear_Output")
    ref = _outputs(model, batches[8:])
    error = np.linalg.norm(_outputs(mixed, batches[8:]) - ref) / np.linalg.norm(ref)
    assert error < 0.05


@pytest.mark.parametrize("method", ["minmax", "entropy", "percentile"])
def test_every_calibrator_of_onnxruntime_serves(rng, method):
    model, batches = _net(rng), _batches(64)
    whole = qdq.Quantizer(model, batches[:2], method).quantized()
    check(whole)
    assert _ops(whole)["QuantizeLinear"] >= 3


def test_an_unknown_calibrator_is_refused(rng):
    with pytest.raises(FuserError, match="calibration method must be one of"):
        qdq.Quantizer(_net(rng), _batches(16), "kl")
    with pytest.raises(FuserError, match="calibration method must be auto or one of"):
        Search(methods=("int8",), calibration_method="kl")


def test_an_old_opset_is_converted_for_per_channel_weights(rng):
    model, batches = _net(rng, opset=11), _batches(64)
    quantizer = qdq.Quantizer(model, batches[:2], "minmax")
    assert graph_io.opset(quantizer.model) >= qdq.MIN_OPSET
    whole = quantizer.quantized()
    check(whole)
    assert any(a.name == "axis" for n in whole.graph.node if n.op_type == "DequantizeLinear"
               for a in n.attribute)
    assert graph_io.opset(model) == 11  # the caller's model is not changed


def test_a_model_the_converter_cannot_take_is_refused_in_one_line(rng, monkeypatch):
    def fail(model, target):
        raise RuntimeError("No Adapter For Resize\nmore")

    monkeypatch.setattr(qdq.version_converter, "convert_version", fail)
    with pytest.raises(FuserError, match=r"int8 needs opset 13.*from opset 11: No Adapter "
                                         r"For Resize$"):
        qdq.upgraded(_net(rng, opset=11))


def test_layer_errors_rank_a_float_layer_below_its_quantized_self(rng):
    model, batches = _net(rng), _batches(64)
    quantizer = qdq.Quantizer(model, batches[:2], "minmax")
    whole = layer_errors(quantizer.model, quantizer.quantized(), quantizer.regions, batches[:2])
    mixed = layer_errors(quantizer.model, quantizer.quantized({"gemm6"}), quantizer.regions,
                         batches[:2])
    assert all(e >= 0 for e in whole) and whole[0] > 0 and whole[2] > 0
    assert mixed[2] < 0.5 * whole[2]  # its input's rounding is its producer's


def _search(**changes) -> Search:
    settings = {"budget": "accuracy=0.1", "max_accuracy_drop": 0.1, "methods": ("int8",),
                "calibration_method": "minmax", "search_time": 60, "fit_samples": 32,
                "progress": False}
    return Search(**{**settings, **changes})


def test_int8_is_delivered_where_it_is_faster_and_within_the_drop(rng, faster_int8):
    model, batches = _net(rng), _batches()
    out, record = quantize(model, batches, _search())
    check(out)
    assert record.methods == ["int8"] and record.calibration_method == "minmax"
    assert record.passed is True and "within 10.00%" in record.guard
    chosen = [row for row in record.layers if row.method == "int8"]
    assert chosen and all(row.rank == 8 for row in chosen)
    assert _ops(out)["QuantizeLinear"] >= 1
    assert record.speedup is not None and record.speedup > 1
    assert record.relative_error < 0.1
    ref = _outputs(model, batches[2:])
    assert np.mean(_outputs(out, batches[2:]).argmax(1) == ref.argmax(1)) > 0.9


def test_a_provider_without_int8_kernels_gets_no_int8(rng, monkeypatch, tmp_path):
    """CUDA's provider runs a QDQ Conv as DequantizeLinear and a float Conv: timed slower,
    int8 is not offered and the input comes back (the timing is planted: no GPU here)."""
    monkeypatch.setenv("FUSER_CACHE", str(tmp_path))
    monkeypatch.setattr(LatencyTable, "compare", lambda self, a, b, feeds: (
        1.0, 1.0 + 0.5 * any(n.op_type == "QuantizeLinear" for n in b.graph.node)))
    model = _net(rng)
    out, record = quantize(model, _batches(), _search())
    assert out is model
    assert record.layers == [] and record.guard == "no layer in int8: the model is the input"
    assert any(n.startswith("int8 not offered: every layer in int8 ran 1.500 ms against "
                            "1.000 ms") for n in record.notes)


def test_the_guard_keeps_float_what_the_metric_refuses(rng, faster_int8):
    """A metric that any rounding fails (every sample within 1e-6 relative error): each rung
    is refused, the input comes back."""
    model = _net(rng)
    out, record = quantize(model, _batches(), _search(metric="rel-error:0.000001"))
    assert out is model
    assert not any(row.method == "int8" for row in record.layers)
    assert any(n.startswith("refused ") for n in record.notes)


def test_lowrank_then_int8_judges_against_the_original(rng, faster_int8, monkeypatch):
    monkeypatch.setattr(LatencyTable, "_time", lambda self, model: 1e-6 * (
        graph_io.mac_count(model) or 0) + 1e-3)
    model, batches = _net(rng), _batches()
    out, record = lossy.run(model, batches, _search(methods=("lowrank", "int8")))
    check(out)
    assert record.methods == ["lowrank", "int8"]
    assert any(p.startswith("lowrank ") for p in record.phases)
    assert any(p.startswith("int8 ") for p in record.phases)
    if any(row.method == "int8" for row in record.layers):  # judged against the original
        ref = _outputs(model, batches[2:])
        assert np.mean(_outputs(out, batches[2:]).argmax(1) == ref.argmax(1)) > 0.85


def test_lowrank_then_int8_runs_the_original_on_the_held_out_samples_once(
        rng, faster_int8, monkeypatch):
    """The int8 stage judges against the same original on the same held-out batches as the
    low-rank stage: it reuses those outputs (tempocnn-cnn's took 19 s a stage)."""
    from fuser.search import looks

    monkeypatch.setattr(LatencyTable, "_time", lambda self, model: 1e-6 * (
        graph_io.mac_count(model) or 0) + 1e-3)
    model, batches = _net(rng), _batches()
    runs: list[int] = []  # id of each batch the original ran on
    real = looks.runtime.session

    class Counted:
        def __init__(self, sess):
            self.sess = sess

        def get_outputs(self):
            return self.sess.get_outputs()

        def run(self, names, feeds):
            runs.append(id(next(iter(feeds.values()))))
            return self.sess.run(names, feeds)

    monkeypatch.setattr(looks.runtime, "session", lambda m, **kw: Counted(real(m, **kw))
                        if m is model else real(m, **kw))
    lossy.run(model, batches, _search(methods=("lowrank", "int8")))
    held = {id(b["x"]) for b in batches[2:]}  # fit_samples=32: two batches of 16 fit
    runs = [r for r in runs if r in held]
    assert runs and len(runs) == len(set(runs))
    one = looks.Originals(model, batches[2:])
    assert one.serves(model, [dict(b) for b in batches[2:]])  # equal arrays, new dicts
    assert not one.serves(model, batches[3:]) and not one.serves(_net(rng), batches[2:])


def test_the_cli_runs_int8_and_reports_it(rng, tmp_path, faster_int8, capsys):
    model = _net(rng)
    graph_io.save(model, tmp_path / "m.onnx")
    x = np.concatenate([b["x"] for b in _batches()])
    np.savez(tmp_path / "cal.npz", x=x)
    code = main(["optimize", str(tmp_path / "m.onnx"), "-o", str(tmp_path / "o.onnx"),
                 "--no-bench", "--lossy", "int8", "--calibration", str(tmp_path / "cal.npz"),
                 "--max-accuracy-drop", "0.1", "--int8-calibration", "minmax",
                 "--int8-equalize", "--int8-bias-correction",
                 "--search-time", "60", "--report", str(tmp_path / "r.json")])
    assert code == 0, capsys.readouterr().err
    out = onnx.load(tmp_path / "o.onnx")
    assert _ops(out)["QuantizeLinear"] >= 1
    record = json.loads((tmp_path / "r.json").read_text())["lowrank"]
    assert record["methods"] == ["int8"] and record["calibration_method"] == "minmax"
    assert "cross-layer equalization: 1 Conv pair(s)" in record["notes"]
    assert "bias correction: 3 of 3 layers (a bias read by one layer alone)" in record["notes"]
    assert onnx.load(tmp_path / "m.onnx") == model  # the input file is not modified


def test_the_cli_refuses_an_unknown_lossy_method(rng, tmp_path, capsys):
    graph_io.save(_net(rng), tmp_path / "m.onnx")
    assert main(["optimize", str(tmp_path / "m.onnx"), "-o", str(tmp_path / "o.onnx"),
                 "--lossy", "int4", "--calibration", "c.npz"]) == 2
    assert "invalid choice: 'int4'" in capsys.readouterr().err


def test_equalization_keeps_the_float_model_and_evens_the_ranges(rng):
    from fuser.search.equalize import conv_pairs, equalized

    model = _net(rng)
    weights = {t.name: onnx.numpy_helper.to_array(t).copy() for t in model.graph.initializer}
    weights["W1"][:4] *= 20  # four wide channels
    model.graph.initializer[0].CopyFrom(onnx.numpy_helper.from_array(weights["W1"], "W1"))
    assert [(a.name, b.name) for a, b in conv_pairs(model)] == [("conv0", "conv2")]
    out, pairs = equalized(model)
    check(out)
    assert pairs == 1 and _ops(out) == _ops(model)
    batches = _batches(64)
    ref = _outputs(model, batches)
    assert np.allclose(_outputs(out, batches), ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    new = {t.name: onnx.numpy_helper.to_array(t) for t in out.graph.initializer}
    r1 = np.abs(new["W1"]).reshape(16, -1).max(1)
    r2 = np.abs(new["W2"]).transpose(1, 0, 2, 3).reshape(16, -1).max(1)
    assert np.allclose(r1, r2, rtol=1e-3)
    assert np.array_equal(onnx.numpy_helper.to_array(model.graph.initializer[0]), weights["W1"])


@pytest.mark.parametrize("between", ["Clip", "Sigmoid"])
def test_no_pair_through_an_op_that_is_not_homogeneous(rng, between):
    from fuser.search.equalize import conv_pairs

    model = make_model(f"""
        g (float[N,3,8,8] x) => (float[N,4,8,8] y) {{
            a = Conv<kernel_shape=[1,1]>(x, W1)
            r = {between}(a)
            y = Conv<kernel_shape=[1,1]>(r, W2)
        }}""", rng, W1=(4, 3, 1, 1), W2=(4, 4, 1, 1))
    assert conv_pairs(model) == []


def test_no_pair_when_the_weight_is_shared(rng):
    from fuser.search.equalize import conv_pairs

    model = make_model("""
        g (float[N,4,8,8] x) => (float[N,4,8,8] y, float[N,4,8,8] z) {
            a = Conv<kernel_shape=[1,1]>(x, W1)
            r = Relu(a)
            y = Conv<kernel_shape=[1,1]>(r, W2)
            z = Conv<kernel_shape=[1,1]>(x, W2)
        }""", rng, W1=(4, 4, 1, 1), W2=(4, 4, 1, 1))
    assert conv_pairs(model) == []


def test_bias_correction_moves_the_biases_of_quantized_layers_only(rng):
    model, batches = _net(rng), _batches()
    quantizer = qdq.Quantizer(model, batches[:8], "minmax", correct_bias=True)
    assert set(quantizer.shifts) == {"conv0", "conv2", "gemm6"}
    original = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    for bias, corrected in quantizer.shifts.values():
        assert corrected.shape == original[bias].shape
    mixed = quantizer.quantized({"conv2"})
    check(mixed)
    kept = {t.name: t for t in mixed.graph.initializer}
    assert np.array_equal(onnx.numpy_helper.to_array(kept["B2"]), original["B2"])
    ref = _outputs(model, batches[8:])
    error = np.linalg.norm(_outputs(quantizer.quantized(), batches[8:]) - ref) / \
        np.linalg.norm(ref)
    assert error < 0.05


def test_the_api_takes_int8_as_a_lossy_method(rng, faster_int8):
    import fuser

    model, batches = _net(rng), _batches()
    out, report = fuser.optimize(model, validate=False, lossy=fuser.api.Lossy(
        batches, max_accuracy_drop=0.1, methods=("int8",), calibration_method="minmax",
        search_time=60, progress=False))
    check(out)
    assert report.lowrank.methods == ["int8"]
    assert any(row.method == "int8" for row in report.lowrank.layers)
    assert "lossy int8 (accuracy=0.1)" in report.to_text()


@pytest.mark.parametrize(("factored_ms", "kept"), [(0.5, True), (1.0, False)])
def test_int8_starts_from_the_low_rank_result_only_where_that_is_faster_in_int8(
        rng, monkeypatch, tmp_path, factored_ms, kept):
    monkeypatch.setenv("FUSER_CACHE", str(tmp_path))
    monkeypatch.setattr(LatencyTable, "compare", lambda self, a, b, feeds: (1.0, factored_ms))
    model = _net(rng)
    factored = onnx.ModelProto()
    factored.CopyFrom(model)
    base, note = lossy._base(model, factored, _batches(64), _search(), LatencyTable())
    assert (base is factored) == kept
    assert (note == "") == kept
    if not kept:
        assert note.startswith("low-rank result not kept: in int8 it ran 1.000 ms against "
                               "1.000 ms for the original in int8")


def test_the_metric_puts_last_the_layer_whose_float_copy_gains(rng):
    """A planted quantizer: the all-int8 model is the net with a shifted output bias, and
    keeping gemm6 float gives the float net back. The metric (every sample within 1e-6)
    then gains by gemm6 alone: it goes last, though its own error is the smallest."""
    from fuser.search import sensitivity
    from fuser.search.int8_ranking import metric_order
    from fuser.search.metric import resolve

    model, batches = _net(rng), _batches(32)
    shifted = onnx.ModelProto()
    shifted.CopyFrom(model)
    bias = next(t for t in shifted.graph.initializer if t.name == "B3")
    bias.CopyFrom(onnx.numpy_helper.from_array(np.full(10, 0.5, np.float32), "B3"))

    class Planted:
        layers = ("conv0", "conv2", "gemm6")

        def quantized(self, keep_float=frozenset()):
            return model if "gemm6" in keep_float else shifted

    probe = sensitivity.probe(model, batches, None, 16)
    metric = resolve("rel-error:0.000001", probe.reference, None)
    order, gains = metric_order(Planted(), [0.3, 0.2, 0.1], probe, metric, None)
    assert gains[2] > 0 and gains[0] == gains[1] == 0
    assert order == [1, 0, 2]


def test_an_int8_model_onnxruntime_cannot_load_is_not_offered(rng, faster_int8, monkeypatch):
    """onnxruntime's quantizer gave basic-pitch's export a Transpose it cannot load: the
    input comes back with the reason, not a failed run."""
    model = _net(rng)
    bad = onnx.ModelProto()
    bad.CopyFrom(model)
    bad.graph.node[1].op_type = "Transpose"  # relu1 -> a Transpose whose perm is rank 5
    bad.graph.node[1].attribute.append(onnx.helper.make_attribute("perm", [0, 2, 3, 1, 4]))
    monkeypatch.setattr(qdq.Quantizer, "quantized", lambda self, keep_float=frozenset(): bad)
    out, record = quantize(model, _batches(), _search())
    assert out is model and record.guard == "no layer in int8: the model is the input"
    assert any(n.startswith("int8 not offered: the int8 model: onnxruntime cannot run it")
               for n in record.notes)


def test_a_failing_quantizer_is_a_note_not_a_crash(rng, faster_int8, monkeypatch):
    import onnxruntime.quantization

    def fail(*args, **kwargs):
        raise ValueError("Quantization parameter shared mode is not supported for weight yet")

    monkeypatch.setattr(onnxruntime.quantization, "quantize_static", fail)
    model = _net(rng)
    out, record = quantize(model, _batches(), _search())
    assert out is model
    assert "int8 not offered: onnxruntime's quantizer failed: Quantization parameter shared " \
           "mode is not supported for weight yet" in record.notes


@pytest.mark.parametrize(("held", "drop"), [(1000, 0.005), (384, 0.01)])
def test_low_rank_gets_half_the_drop_only_where_the_held_out_set_resolves_it(held, drop):
    first = lossy._first(_search(budget="accuracy=0.01", max_accuracy_drop=0.01,
                                 methods=("lowrank", "int8")), held)
    assert first.methods == ("lowrank",) and first.max_accuracy_drop == pytest.approx(drop)
    assert first.budget == f"accuracy={drop:g}" and first.search_time == 30


def test_auto_keeps_the_calibrator_that_loses_least_on_the_fitting_samples(rng, faster_int8):
    import re

    model = _net(rng)
    _, record = quantize(model, _batches(), _search(calibration_method="auto"))
    note = next(n for n in record.notes if n.startswith("int8 ranges from the "))
    read = {m: (float(d), float(e)) for m, d, e in re.findall(
        r"(minmax|entropy|percentile) drop ([-0-9.e]+), output error ([-0-9.e]+)", note)}
    assert set(read) == {"minmax", "entropy", "percentile"}
    chosen = note.removeprefix("int8 ranges from the ").split(" ", 1)[0]
    assert read[chosen] == min(read.values())  # drop first, output error on ties


def test_the_low_rank_probe_runs_under_the_default_auto_calibrator(rng, monkeypatch, tmp_path):
    """``auto`` is not a calibrator the quantizer takes: the probe must not fail on it (it
    did, silently keeping the low-rank result)."""
    monkeypatch.setenv("FUSER_CACHE", str(tmp_path))
    monkeypatch.setattr(LatencyTable, "compare", lambda self, a, b, feeds: (1.0, 1.0))
    model = _net(rng)
    factored = onnx.ModelProto()
    factored.CopyFrom(model)
    base, note = lossy._base(model, factored, _batches(64),
                             _search(calibration_method="auto"), LatencyTable())
    assert base is model and note.startswith("low-rank result not kept")


def test_a_weight_and_bias_shared_by_two_layers_are_copied_for_the_quantizer(rng):
    # basic-pitch's tf2onnx export runs one CQT kernel and one zero bias through 18 Convs.
    # onnxruntime's quantizer copies a shared bias as "B" + a number, here "B0": the name of
    # the first Conv's output, which Neg then read in its place (a wrong, loadable model).
    model = make_model("""
        g (float[N,3,8,8] x) => (float[N,4,8,8] y, float[N,8,8,4] z) {
            B0 = Conv<kernel_shape=[1,1]>(x, W, B)
            y = Neg(B0)
            s = Sigmoid(x)
            B1 = Conv<kernel_shape=[1,1]>(s, W, B)
            t = Transpose<perm=[0,2,3,1]>(B1)
            z = Neg(t)
        }""", rng, W=(4, 3, 1, 1), B=(4,))
    draw = np.random.default_rng(1)
    batches = [{"x": draw.standard_normal((8, 3, 8, 8)).astype(np.float32)} for _ in range(4)]
    quantizer = qdq.Quantizer(model, batches[:2], "minmax")
    assert len(quantizer.layers) == 2
    convs = [n for n in quantizer.model.graph.node if n.op_type == "Conv"]
    assert len({n.input[1] for n in convs}) == 2 and len({n.input[2] for n in convs}) == 2
    assert {n.input[2] for n in model.graph.node if n.op_type == "Conv"} == {"B"}  # input kept
    whole = quantizer.quantized()
    check(whole)
    ops = _ops(whole)
    assert ops["Conv"] == 2 and ops["DequantizeLinear"] >= 6
    sess = runtime.session(whole, level="all")
    ref = runtime.session(model, level="disable")
    for feeds in batches[2:]:
        for a, b in zip(ref.run(None, feeds), sess.run(None, feeds), strict=True):
            assert a.shape == b.shape
            assert np.linalg.norm(b - a) / np.linalg.norm(a) < 0.05


def test_a_weight_read_by_one_layer_alone_is_not_copied(rng):
    model = _net(rng)
    quantizer = qdq.Quantizer(model, _batches(32)[:2], "minmax")
    assert len(quantizer.model.graph.initializer) == len(model.graph.initializer)

"""Bad input refused the same way at every entry point: from the CLI, exit code 2 and one line
on stderr naming the problem, no traceback unless -v, no output file, the input untouched;
from the Python API, a FuserError subclass with the same message."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest

import fuser
from fuser import ir as graph_io
from fuser.api import Validation
from fuser.cli import main
from fuser.errors import FuserError
from tests.helpers import HEADER, assert_same_outputs, check, make_model, ops

MODEL = """
    g (float[N,3,8,8] x) => (float[N,4,8,8] y) {
        c = Conv<pads=[1,1,1,1]>(x, W)
        y = BatchNormalization(c, s, b, mean, var)
    }"""
PARAMS = {"W": (4, 3, 3, 3), "s": (4,), "b": (4,), "mean": (4,), "var": (4,)}
CUSTOM = """
    g (float[N,3,8,8] x) => (float[N,4,8,8] y) {
        c = Conv<pads=[1,1,1,1]>(x, W)
        d = BatchNormalization(c, s, b, mean, var)
        y = my.ops.Foo<alpha=1.0>(d)
    }"""
CUSTOM_HEADER = '< ir_version: 8, opset_import: ["" : 17, "my.ops" : 1] >'


def _digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def refused(args: list[str], folder: Path, capsys, message: str) -> str:
    """Run the CLI: exit 2, one stderr line containing ``message``, no traceback, and no file
    in ``folder`` created, changed or removed. Returns the message without the prefix."""
    before = _digests(folder)
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert message in err and "Traceback" not in err, err
    assert _digests(folder) == before
    prefix = "onnx-fuser: error: "
    assert err.startswith(prefix)
    return err[len(prefix):]


def api_refuses(call, expected: str) -> None:
    """The Python API raises a FuserError subclass with exactly the CLI's message."""
    with pytest.raises(FuserError) as info:
        call()
    assert str(info.value) == expected


@pytest.fixture
def good(tmp_path, rng) -> Path:
    path = tmp_path / "in.onnx"
    graph_io.save(make_model(MODEL, rng, **PARAMS), path)
    return path


def _optimize_args(model: Path | str, out: Path, *extra: str) -> list[str]:
    return ["optimize", str(model), "-o", str(out), "--no-bench", *extra]


# ------------------------------------------------------------------------- unreadable files


def _keras_zip(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as archive:  # the layout of a Keras 3 .keras file
        archive.writestr("metadata.json", '{"keras_version": "3.15.1"}')
        archive.writestr("config.json", '{"class_name": "Sequential"}')
        archive.writestr("model.weights.h5", b"\x89HDF\r\n\x1a\n" + bytes(64))


UNREADABLE = {
    "missing": (lambda p, good: None, "no such file"),
    "directory": (lambda p, good: p.mkdir(), "is a directory, not an ONNX file"),
    "random bytes": (lambda p, good: p.write_bytes(np.random.default_rng(1).bytes(4096)),
                     "not a readable ONNX model"),
    "text file": (lambda p, good: p.write_text("input: x\nlayers:\n  - conv 3x3\n"),
                  "not a readable ONNX model"),
    "keras .keras": (lambda p, good: _keras_zip(p), "a zip archive, not an ONNX model (a Keras"),
    "keras .h5": (lambda p, good: p.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(512)),
                  "an HDF5 file, not an ONNX model (a Keras"),
    "truncated protobuf": (lambda p, good: p.write_bytes(good.read_bytes()[:200]),
                           "not a readable ONNX model"),
}


@pytest.mark.parametrize("case", list(UNREADABLE))
def test_unreadable_model_is_refused(case, good, tmp_path, capsys):
    make, message = UNREADABLE[case]
    path = tmp_path / ("model.keras" if case == "keras .keras" else "model.onnx")
    make(path, good)
    line = refused(_optimize_args(path, tmp_path / "out.onnx"), tmp_path, capsys, message)
    assert line.startswith(f"{path}: ")
    api_refuses(lambda: fuser.optimize(path), line)
    refused(["validate", str(good), str(path)], tmp_path, capsys, message)
    refused(["bench", str(path)], tmp_path, capsys, message)


def test_every_truncation_of_a_model_is_refused(good, tmp_path):
    """Cut anywhere, a protobuf may still parse (at a field boundary): never a crash, always
    a FuserError naming the file."""
    data = good.read_bytes()
    path = tmp_path / "cut.onnx"
    reasons = set()
    for cut in range(len(data)):
        path.write_bytes(data[:cut])
        with pytest.raises(FuserError) as info:
            fuser.optimize(path, validate=False)
        assert str(info.value).startswith(f"{path}: ")
        reasons.add(str(info.value).split(": ")[1].split(" (")[0])
    assert reasons == {"not a readable ONNX model", "not an ONNX model"}


def test_verbose_logs_the_traceback(tmp_path, capsys, caplog):
    path = tmp_path / "model.onnx"
    path.write_text("not onnx")
    assert main(["-v", "optimize", str(path), "-o", str(tmp_path / "o.onnx")]) == 2
    assert "not a readable ONNX model" in capsys.readouterr().err
    logged = [r for r in caplog.records if r.exc_info]  # -v logs the exception with its stack
    assert len(logged) == 1 and isinstance(logged[0].exc_info[1], FuserError)


def test_check_refuses_an_unreadable_model(tmp_path, capsys):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(64))
    refused(["check", str(path), "--baseline", str(tmp_path / "b.json"), "--update"],
            tmp_path, capsys, "an HDF5 file, not an ONNX model")


# ------------------------------------------------------------------- invalid or unsupported


def test_model_failing_the_checker_is_refused_before_any_pass(tmp_path, capsys):
    """Regression: the checker ran only on the result, so its message named no file."""
    path = tmp_path / "bad.onnx"
    model = onnx.parser.parse_model(f"{HEADER} g (float[1,3] x) => (float[1,3] y) "
                                    "{ y = Relu(x, x) }")
    path.write_bytes(model.SerializeToString())
    line = refused(_optimize_args(path, tmp_path / "o.onnx"), tmp_path, capsys,
                   f"{path}: invalid model: Node with schema(::Relu:14) has input size 2")
    api_refuses(lambda: fuser.optimize(path), line)


def test_opset_newer_than_onnx_knows_is_refused(good, tmp_path, capsys):
    """Regression: opset 99 passed the checker and crashed in onnxruntime with a traceback."""
    model = graph_io.load(good)
    model.opset_import[0].version = 99
    path = tmp_path / "new.onnx"
    path.write_bytes(model.SerializeToString())
    newest = onnx.defs.onnx_opset_version()
    line = refused(_optimize_args(path, tmp_path / "o.onnx"), tmp_path, capsys,
                   f"{path}: opset 99 of domain 'ai.onnx' is newer than onnx "
                   f"{onnx.__version__} supports ({newest})")
    api_refuses(lambda: fuser.optimize(path), line)
    api_refuses(lambda: fuser.optimize(model), line.replace(str(path), "g"))


# --------------------------------------------------------------------------- custom ops


@pytest.fixture
def custom(tmp_path, rng) -> Path:
    path = tmp_path / "custom.onnx"
    graph_io.save(make_model(CUSTOM, rng, header=CUSTOM_HEADER, **PARAMS), path)
    return path


def test_unknown_custom_op_skips_validation_and_timing_with_a_note(custom, tmp_path, capsys):
    """Regression: onnxruntime's refusal of the original crashed optimize with a traceback.
    Decision: the custom op passes through and the rest is optimized; what onnxruntime cannot
    run is neither validated nor timed, and the report and the last line say so (exit 0).
    ``bench`` and ``validate``, whose only job needs onnxruntime, refuse (exit 2)."""
    out = tmp_path / "o.onnx"
    assert main(["optimize", str(custom), "-o", str(out)]) == 0
    text = capsys.readouterr().out
    reason = "Fatal error: my.ops:Foo(-1) is not a registered function/op"
    assert f"note: not validated: onnxruntime cannot run {custom} ({reason})" in text
    assert f"note: not timed: onnxruntime cannot run {custom} ({reason})" in text
    assert text.splitlines()[-1].startswith("NOT VALIDATED | ")  # never PASSED (issue 25)
    assert text.splitlines()[-1].endswith(
        "not validated (onnxruntime cannot run the input: see the notes)")
    assert ops(graph_io.load(out)) == {"Conv": 1, "Foo": 1}
    model, report = fuser.optimize(custom)
    assert report.validation is None and report.passed
    assert report.notes[0].startswith(f"not validated: onnxruntime cannot run {custom} (")
    assert ops(model) == {"Conv": 1, "Foo": 1}
    out.unlink()
    refused(["bench", str(custom)], tmp_path, capsys,
            f"{custom.name}: onnxruntime cannot run it (Fatal error: my.ops:Foo(-1)")
    refused(["validate", str(custom), str(custom)], tmp_path, capsys,
            f"{custom}: onnxruntime cannot run it")


def test_unknown_custom_op_passes_through_untouched(custom, tmp_path, rng, capsys):
    """No pass needs the custom op: the BN before it folds, the op stays byte for byte."""
    out = tmp_path / "o.onnx"
    assert main(["optimize", str(custom), "-o", str(out), "--no-validate", "--no-bench"]) == 0
    last = capsys.readouterr().out.splitlines()[-1]  # PASSED only when something was checked
    assert last.startswith("NOT VALIDATED |") and "not validated" in last
    original, optimized = graph_io.load(custom), graph_io.load(out)
    assert ops(original) == {"Conv": 1, "BatchNormalization": 1, "Foo": 1}
    assert ops(optimized) == {"Conv": 1, "Foo": 1}
    foo = [n for n in optimized.graph.node if n.op_type == "Foo"]
    assert [n.SerializeToString() for n in foo] == [
        n.SerializeToString() for n in original.graph.node if n.op_type == "Foo"]
    assert {(o.domain, o.version) for o in optimized.opset_import} == {("", 17), ("my.ops", 1)}
    check(optimized)
    # numerics of everything else: stand an Identity in for the op onnxruntime lacks
    for model in (original, optimized):
        node = next(n for n in model.graph.node if n.op_type == "Foo")
        node.op_type, node.domain = "Identity", ""
        node.ClearField("attribute")
    assert_same_outputs(original, optimized, rng, rtol=1e-4)


# ------------------------------------------------------------------------------ shapes


@pytest.fixture
def dynamic(tmp_path, rng) -> Path:
    path = tmp_path / "dyn.onnx"
    graph_io.save(make_model(MODEL.replace("N,3,8,8", "N,3,H,W").replace("N,4,8,8", "N,4,H,W"),
                             rng, **PARAMS), path)
    return path


def test_dynamic_dims_without_input_shape(dynamic, tmp_path, capsys):
    message = "input 'x' dimension 2 (H) is dynamic: give --input-shape x:?x3x?x?"
    line = refused(_optimize_args(dynamic, tmp_path / "o.onnx"), tmp_path, capsys, message)
    api_refuses(lambda: fuser.optimize(dynamic), line)
    # with --no-validate the timing needs the shape too: refused before the file is written
    refused(["optimize", str(dynamic), "-o", str(tmp_path / "o.onnx"), "--no-validate"],
            tmp_path, capsys, message)
    refused(["bench", str(dynamic)], tmp_path, capsys, message)
    refused(["validate", str(dynamic), str(dynamic)], tmp_path, capsys, message)
    assert main(_optimize_args(dynamic, tmp_path / "o.onnx", "--input-shape", "x:1x3x6x6")) == 0


def test_input_shape_naming_a_missing_input(good, tmp_path, capsys):
    message = "--input-shape names 'image', but the model's inputs are: x"
    line = refused(_optimize_args(good, tmp_path / "o.onnx", "--input-shape", "image:1x3x8x8"),
                   tmp_path, capsys, message)
    api_refuses(lambda: fuser.optimize(good, validate=Validation(
        input_shapes={"image": (1, 3, 8, 8)})), line)
    refused(["validate", str(good), str(good), "--input-shape", "image:1x3x8x8"], tmp_path,
            capsys, message)
    refused(["bench", str(good), "--input-shape", "image:1x3x8x8"], tmp_path, capsys, message)


# ----------------------------------------------------------------------------- outputs


def test_output_in_a_missing_folder(good, tmp_path, capsys):
    target = tmp_path / "nope" / "o.onnx"
    line = refused(_optimize_args(good, target), tmp_path, capsys,
                   f"{target}: folder {target.parent} does not exist")
    model, _ = fuser.optimize(good, validate=False)
    api_refuses(lambda: fuser.save(model, target), line)


@pytest.mark.parametrize("spelling", ["same", "relative", "symlink"])
def test_output_equal_to_the_input(good, tmp_path, capsys, monkeypatch, spelling):
    """The API has no output path in optimize (fuser.save writes where it is told)."""
    target = {"same": str(good), "relative": "./in.onnx", "symlink": str(tmp_path / "ln.onnx")}
    if spelling == "symlink":
        (tmp_path / "ln.onnx").symlink_to(good)
    monkeypatch.chdir(tmp_path)
    refused(["optimize", str(good), "-o", target[spelling]], tmp_path, capsys,
            "output path is the input path; the input is never overwritten")


def test_output_that_would_overwrite_the_inputs_external_data(tmp_path, rng, capsys):
    """Regression: -o IN.onnx.data (or an output whose OUTPUT.data is the input's data file)
    passed the same-path check and destroyed the input's weights."""
    model = make_model(MODEL.replace("4,8,8", "64,8,8"), rng, W=(64, 3, 3, 3), s=(64,),
                       b=(64,), mean=(64,), var=(64,))  # a weight big enough to go external
    graph_io.save(model, tmp_path / "shared.onnx", external_data=True)
    source = tmp_path / "in.onnx"  # reads shared.onnx.data
    (tmp_path / "shared.onnx").rename(source)
    data = tmp_path / "shared.onnx.data"
    refused(_optimize_args(source, data), tmp_path, capsys,
            f"{data}: the input {source} reads this file; the input is never overwritten")
    refused(_optimize_args(source, tmp_path / "shared.onnx", "--external-data"), tmp_path,
            capsys, f"{data}: the input {source} reads this file")
    assert main(_optimize_args(source, tmp_path / "other.onnx", "--external-data")) == 0
    assert (tmp_path / "other.onnx.data").exists()


# ------------------------------------------------------------------------ calibration data


def _lossy(good: Path, out: Path, data: Path) -> list[str]:
    return _optimize_args(good, out, "--lossy", "lowrank", "--calibration", str(data))


CALIBRATION = {
    "wrong shape": (lambda p, rng: np.savez(p, x=rng.standard_normal((8, 3, 5, 5))),
                    "'x' has shape [8, 3, 5, 5], the model takes [N, 3, 8, 8]"),
    "wrong rank": (lambda p, rng: np.savez(p, x=rng.standard_normal((8, 3, 8))),
                   "'x' has shape [8, 3, 8], the model takes [N, 3, 8, 8]"),
    "wrong dtype": (lambda p, rng: np.savez(p, x=rng.integers(0, 9, (8, 3, 8, 8))),
                    "'x' is int64, the model takes float32"),
    "wrong name": (lambda p, rng: np.savez(p, image=rng.standard_normal((8, 3, 8, 8)),
                                           mask=rng.standard_normal((8, 1))),
                   "no array for input(s) x (it holds image, mask)"),
    "empty npz": (lambda p, rng: np.savez(p), "no array for input(s) x (it holds nothing)"),
    "empty folder": (lambda p, rng: p.mkdir(), "no images (.bmp, .gif"),
}


@pytest.mark.parametrize("case", list(CALIBRATION))
def test_bad_calibration_data(case, good, tmp_path, rng, capsys):
    make, message = CALIBRATION[case]
    data = tmp_path / ("calib" if case == "empty folder" else "calib.npz")
    make(data, rng)
    line = refused(_lossy(good, tmp_path / "o.onnx", data), tmp_path, capsys, message)
    assert line.startswith(f"{data}: ")
    # the same data as validation inputs, from the CLI and from the API
    refused(_optimize_args(good, tmp_path / "o.onnx", "--inputs", str(data)), tmp_path, capsys,
            line)
    refused(["validate", str(good), str(good), "--inputs", str(data)], tmp_path, capsys, line)
    api_refuses(lambda: fuser.optimize(good, validate=Validation(inputs=str(data))), line)

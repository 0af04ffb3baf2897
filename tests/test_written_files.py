"""Files fuser writes: created with the user's umask like the models (issue 16, item 7), and
a baseline's missing folder created by ``check --update`` (item 6)."""

from __future__ import annotations

import json
import os
import stat

import pytest

from fuser import ir as graph_io
from fuser.cli import main
from fuser.ir.io import write_text_atomic
from tests.helpers import make_model

MODEL = """
    g (float[N,3,8,8] x) => (float[N,4,8,8] y) {
        c = Conv<pads=[1,1,1,1]>(x, W)
        y = BatchNormalization(c, s, b, mean, var)
    }"""


@pytest.fixture
def model_path(tmp_path, rng):
    path = tmp_path / "in.onnx"
    graph_io.save(make_model(MODEL, rng, W=(4, 3, 3, 3), s=(4,), b=(4,), mean=(4,), var=(4,)),
                  path)
    return path


@pytest.fixture(params=[0o022, 0o027])
def umask(request):
    previous = os.umask(request.param)
    yield request.param
    os.umask(previous)


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_reports_baselines_and_junit_get_the_umask_mode_like_models(model_path, tmp_path,
                                                                    umask):
    expected = 0o666 & ~umask
    out = tmp_path / "out"
    out.mkdir()
    assert main(["optimize", str(model_path), "-o", str(out / "m.onnx"), "--no-bench",
                 "--report", str(out / "r.json")]) == 0
    assert main(["optimize", str(model_path), "-o", str(out / "m2.onnx"), "--no-bench",
                 "--report", str(out / "r.md")]) == 0
    assert main(["check", str(model_path), "--baseline", str(out / "b.json"), "--update",
                 "--junit", str(out / "j.xml")]) == 0
    write_text_atomic(out / "demo.md", "# demo\n")  # what the demo writes its files with
    written = sorted(p.name for p in out.iterdir())
    assert written == ["b.json", "b.npz", "demo.md", "j.xml", "m.onnx", "m2.onnx", "r.json",
                       "r.md"]  # no temporary file left behind
    assert {p.name: mode(p) for p in out.iterdir()} == {name: expected for name in written}


def test_check_update_creates_the_baseline_folder(model_path, tmp_path, capsys):
    baseline = tmp_path / "baselines" / "nested" / "m.json"
    assert main(["check", str(model_path), "--baseline", str(baseline), "--update"]) == 0
    assert json.loads(baseline.read_text())["schema"] == 1
    assert baseline.with_suffix(".npz").exists()
    capsys.readouterr()
    assert main(["check", str(model_path), "--baseline", str(baseline)]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("PASSED")


def test_check_without_update_does_not_create_a_folder(model_path, tmp_path, capsys):
    baseline = tmp_path / "none" / "m.json"
    assert main(["check", str(model_path), "--baseline", str(baseline)]) == 2
    assert "no baseline (write one with --update)" in capsys.readouterr().err
    assert not baseline.parent.exists()


def test_a_model_without_external_data_is_not_parsed_to_find_the_files_it_reads(
        rng, tmp_path, monkeypatch):
    model = make_model("""
        g (float[N,512] x) => (float[N,512] y) { y = Add(x, W) }""", rng, W=(512,))
    plain, split = tmp_path / "plain.onnx", tmp_path / "split.onnx"
    graph_io.save(model, plain)
    graph_io.save(model, split, external_data=True)
    assert graph_io.referenced_files(split) == [split, tmp_path / "split.onnx.data"]
    import onnx

    def refuse(*args, **kwargs):
        raise AssertionError("parsed")

    monkeypatch.setattr(onnx, "load", refuse)
    assert graph_io.referenced_files(plain) == [plain]
    with pytest.raises(AssertionError, match="parsed"):
        graph_io.referenced_files(split)  # holds "location": parsed

"""A model and its external data are replaced as a pair; a kill never leaves a model that
reads another run's weights, and the temporaries a killed run left are removed by the next
write (issue 25). Subgraph weights move to the data file like the main graph's."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
import pytest

from fuser import ir as graph_io
from fuser.cli import main
from fuser.ir import files
from fuser.runtime import sessions as runtime
from tests.helpers import make_model

ROOT = Path(__file__).resolve().parents[2]

CONV = """
    g (float[N,3,8,8] x) => (float[N,16,8,8] y) {
        y = Conv<pads=[1,1,1,1]>(x, W)
    }"""


def _conv(value: float) -> onnx.ModelProto:
    """A conv whose 16x3x3x3 weights (1.7 kB, so they go external) are all ``value``."""
    return make_model(CONV, None, W=np.full((16, 3, 3, 3), value, np.float32))


def _weight(path) -> float:
    """The first weight of the model at ``path``, read with its external data."""
    return float(onnx.numpy_helper.to_array(onnx.load(str(path)).graph.initializer[0]).flat[0])


def _data_files(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".data"))


def test_a_second_save_writes_fresh_data_then_removes_the_old(tmp_path):
    """The old model reads out.onnx.data: the new data gets a fresh name, the old file goes
    only after the model's rename; the third save takes the plain name back."""
    target = tmp_path / "out.onnx"
    graph_io.save(_conv(1.0), target, external_data=True)
    assert _data_files(tmp_path) == ["out.onnx.data"] and _weight(target) == 1.0
    graph_io.save(_conv(2.0), target, external_data=True)
    (fresh,) = _data_files(tmp_path)
    assert fresh != "out.onnx.data" and fresh.startswith("out.onnx.") and _weight(target) == 2.0
    graph_io.save(_conv(3.0), target, external_data=True)
    assert _data_files(tmp_path) == ["out.onnx.data"] and _weight(target) == 3.0
    graph_io.save(_conv(4.0), target)  # small enough for one protobuf: no data file at all
    assert _data_files(tmp_path) == [] and _weight(target) == 4.0
    assert [p.name for p in tmp_path.iterdir()] == ["out.onnx"]


def test_a_failure_between_the_renames_leaves_the_old_pair_intact(tmp_path, monkeypatch):
    """The old bug: OUT.data was renamed into place, then OUT; a kill between the two left
    the old model reading the new weights (off by 19.1)."""
    target = tmp_path / "out.onnx"
    graph_io.save(_conv(1.0), target, external_data=True)
    real_replace = os.replace

    def replace(src, dst):
        if str(dst) == str(target):
            raise OSError("killed between the renames")
        real_replace(src, dst)

    monkeypatch.setattr(files.os, "replace", replace)
    with pytest.raises(OSError, match="killed"):
        graph_io.save(_conv(2.0), target, external_data=True)
    monkeypatch.undo()
    assert _weight(target) == 1.0  # the old model, with its own data
    onnx.checker.check_model(str(target))


def test_files_other_than_ours_are_never_removed(tmp_path):
    """The old model read a data file of another name (the user's): it stays."""
    model = _conv(1.0)
    graph_io.save(model, tmp_path / "theirs.onnx", external_data=True)
    (tmp_path / "theirs.onnx").rename(tmp_path / "out.onnx")  # out.onnx reads theirs.onnx.data
    graph_io.save(_conv(2.0), tmp_path / "out.onnx", external_data=True)
    assert _data_files(tmp_path) == ["out.onnx.data", "theirs.onnx.data"]
    assert _weight(tmp_path / "out.onnx") == 2.0


def test_the_cli_refuses_an_output_whose_old_data_the_input_reads(tmp_path, capsys):
    """A save removes the data files the old output read; when the input reads one of them
    (a copy of an earlier output), the CLI refuses before the work."""
    target = tmp_path / "out.onnx"
    graph_io.save(_conv(1.0), target, external_data=True)
    graph_io.save(_conv(2.0), target, external_data=True)  # reads out.onnx.<hex>.data now
    shutil.copy(target, tmp_path / "in.onnx")
    (fresh,) = _data_files(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(["optimize", str(tmp_path / "in.onnx"), "-o", str(target), "--no-bench"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{fresh}: the input" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == before


KILLED_SAVE = """
import os, signal, sys
import numpy as np
from fuser import ir as graph_io
from fuser.cli import main
from fuser.ir import files
from tests.helpers import make_model
from tests.robustness.test_atomic_writes import CONV
real = os.replace
def replace(src, dst):
    if str(dst).endswith("out.onnx"):
        os.kill(os.getpid(), signal.SIGKILL)  # kill -9 between the data and the model
    real(src, dst)
files.os.replace = replace
graph_io.save(make_model(CONV, None, W=np.full((16, 3, 3, 3), 2.0, np.float32)),
              sys.argv[1], external_data=True)
"""


def test_kill_9_during_a_save_leaves_the_old_model_and_a_folder_the_next_save_removes(
        tmp_path):
    target = tmp_path / "out.onnx"
    graph_io.save(_conv(1.0), target, external_data=True)
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(KILLED_SAVE), str(target)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == -9, done.stderr
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".out.onnx.fuser-")]
    assert len(leftovers) == 1 and (tmp_path / leftovers[0]).is_dir()
    assert _weight(target) == 1.0  # the old pair still reads its own data
    graph_io.save(_conv(3.0), target, external_data=True)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert _weight(target) == 3.0
    assert len(_data_files(tmp_path)) == 1  # the killed run's data file went with the old


def test_temporaries_of_a_running_process_are_kept(tmp_path):
    """Only a dead process's temporaries are removed: a concurrent writer's stay."""
    alive = tmp_path / f".out.onnx.fuser-{os.getpid()}-abc"
    alive.mkdir()
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True)
    dead_pid = int(finished.stdout)
    dead = tmp_path / f".out.onnx.fuser-{dead_pid}-abc.tmp"
    dead.write_text("half a report")
    unrelated = tmp_path / ".out.onnx.mine"
    unrelated.write_text("the user's")
    files.write_text_atomic(tmp_path / "out.onnx", "text")
    assert alive.is_dir() and unrelated.exists() and not dead.exists()


IF_MODEL = """
    g (bool c, float[4,256] x) => (float[4,256] y) {
        y = If(c) <
            then_branch = t () => (float[4,256] a) {
                a = Add(x, Wt)
            },
            else_branch = e () => (float[4,256] b) {
                b = Mul(x, We)
            }
        >
    }"""


def _if_model(rng) -> onnx.ModelProto:
    """An If whose two branches hold 1 kB weights of their own."""
    model = onnx.parser.parse_model('< ir_version: 8, opset_import: ["" : 17] >\n' + IF_MODEL)
    for branch, name in zip(model.graph.node[0].attribute, ("Wt", "We"), strict=True):
        branch.g.initializer.append(onnx.numpy_helper.from_array(
            rng.standard_normal((256,)).astype(np.float32), name))
    onnx.checker.check_model(model, full_check=True)
    return model


def test_subgraph_weights_move_to_external_data(tmp_path, rng):
    """The size count includes subgraphs; so does the move (else protobuf's 2 GB limit
    raises EncodeError for a big If branch). The model is unchanged after the save."""
    model = _if_model(rng)
    before = model.SerializeToString()
    graph_io.save(model, tmp_path / "if.onnx", external_data=True)
    assert model.SerializeToString() == before
    header = onnx.load(str(tmp_path / "if.onnx"), load_external_data=False)
    branches = [a.g.initializer[0] for a in header.graph.node[0].attribute]
    assert [t.data_location for t in branches] == [onnx.TensorProto.EXTERNAL] * 2
    assert os.path.getsize(tmp_path / "if.onnx.data") >= 2 * 1024
    onnx.checker.check_model(str(tmp_path / "if.onnx"))
    x = rng.standard_normal((4, 256)).astype(np.float32)
    import onnxruntime as ort

    session = ort.InferenceSession(str(tmp_path / "if.onnx"),
                                   providers=["CPUExecutionProvider"])
    for flag in (True, False):
        feeds = {"c": np.array(flag), "x": x}
        (got,) = session.run(None, feeds)
        np.testing.assert_array_equal(got, runtime.run(model, feeds)["y"])


def test_subgraph_weights_count_towards_the_automatic_switch(tmp_path, rng, monkeypatch):
    """Past the protobuf limit (lowered here) the save goes external by itself, subgraph
    weights included; under it, one file."""
    graph_io.save(_if_model(rng), tmp_path / "small.onnx")
    assert _data_files(tmp_path) == []
    monkeypatch.setattr(files, "PROTOBUF_LIMIT", 64 * 2**20 + 1024)
    graph_io.save(_if_model(rng), tmp_path / "big.onnx")
    assert _data_files(tmp_path) == ["big.onnx.data"]


def test_a_model_written_in_pieces_parses_to_the_same_model(tmp_path, rng):
    """``write_serialized`` writes the model without its graph, then the graph's field
    (its length a varint of several bytes here) with each initializer serialized alone: the
    file parses to the same model as ``SerializeToString`` gives, metadata, functions and a
    subgraph's weights included, and onnxruntime runs it."""
    model = make_model(CONV.replace("16,8,8", "64,8,8").replace("(x, W)", "(x, W, b)"), rng,
                       W=(64, 3, 3, 3), b=(64,))
    model.metadata_props.add(key="author", value="fuser")
    model.functions.add(name="f", domain="custom.local")
    model.functions[0].node.add(op_type="Identity", input=["a"], output=["b"])
    model.functions[0].input.append("a")
    model.functions[0].output.append("b")
    model.functions[0].opset_import.add(domain="", version=model.opset_import[0].version)
    model.opset_import.add(domain="custom.local", version=1)
    path = tmp_path / "m.onnx"
    with open(path, "wb") as f:
        files.write_serialized(model, f)
    data = path.read_bytes()
    assert len(data) == model.ByteSize() and data != model.SerializeToString()  # reordered
    parsed = onnx.ModelProto()
    parsed.ParseFromString(data)
    assert parsed == model
    assert len(model.graph.initializer) == 2
    onnx.checker.check_model(str(path))
    x = rng.standard_normal((1, 3, 8, 8)).astype(np.float32)
    expected = runtime.session(model).run(None, {"x": x})
    got = runtime.session(onnx.load(str(path))).run(None, {"x": x})
    np.testing.assert_array_equal(got[0], expected[0])


def test_an_empty_graph_written_in_pieces(tmp_path):
    """No initializer, no node: still the same model."""
    model = onnx.helper.make_model(onnx.helper.make_graph([], "empty", [], []))
    path = tmp_path / "e.onnx"
    with open(path, "wb") as f:
        files.write_serialized(model, f)
    assert onnx.load(str(path)) == model


def test_a_failure_inside_writing_leaves_the_old_model_and_no_temporary(tmp_path):
    """``ir.writing`` writes beside the target and renames only when the block ends well:
    the CLI renders the report inside it, so a report that cannot be made leaves the old
    model (and its data) in place, and no temporary behind."""
    path = tmp_path / "m.onnx"
    graph_io.save(_conv(1.0), path, external_data=True)
    with pytest.raises(RuntimeError, match="report broken"), \
            graph_io.writing(_conv(2.0), path, external_data=True) as seconds:
        assert seconds >= 0
        raise RuntimeError("report broken")
    assert _weight(path) == 1.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "m.onnx.data"]
    with graph_io.writing(_conv(3.0), path, external_data=True):
        assert _weight(path) == 1.0  # not in place before the block ends
    assert _weight(path) == 3.0

"""Models over 2 GB (protobuf's limit): load, optimize, check and save with external data.

Moved here from tests/test_graph.py and made quicker: the source's data file is written
sparse (no 2 GB array is built, serialized or written), and the result's size is read from
its protobuf without loading its weights. Every file is removed at the end.
"""

from __future__ import annotations

import os
import shutil

import numpy as np
import onnx
import pytest

import fuser
from fuser import ir as graph_io
from fuser.ir.proto import point_at_file
from fuser.runtime import sessions as runtime
from tests.helpers import make_model

#: just over 2 GiB of float32
BIG = 2**29 + 2**10


def _sparse_data(tensor: onnx.TensorProto, path) -> None:
    """Point ``tensor`` (BIG floats) at a sparse file at ``path`` whose first values are
    1, 2, 3, 4 (the rest reads as zeros): no 2 GB array is built or written."""
    point_at_file(tensor, os.path.basename(path), 0, 4 * BIG)
    with open(path, "wb") as data:
        data.write(np.arange(1, 5, dtype=np.float32).tobytes())
        data.truncate(4 * BIG)


def _write_big_model(folder, rng) -> tuple[str, onnx.ModelProto]:
    """Conv + BN next to a Slice of a 2.1 GB constant whose first values are 1, 2, 3, 4."""
    model = make_model("""
        g (float[N,3,8,8] x, float[4] i) => (float[N,4,8,8] y, float[4] z) {
            c = Conv<pads=[1,1,1,1]>(x, W)
            y = BatchNormalization(c, s, b, mean, var)
            sl = Slice(big, st, en)
            z = Add(sl, i)
        }""", rng, W=(4, 3, 3, 3), s=(4,), b=(4,), mean=(4,), var=(4,),
        st=np.array([0]), en=np.array([4]), big=np.zeros((4,), np.float32))
    small = onnx.ModelProto()
    small.CopyFrom(model)  # the same model with a 4-element 'big', for the reference outputs
    small.graph.initializer[-1].CopyFrom(
        onnx.numpy_helper.from_array(np.arange(1, 5, dtype=np.float32), "big"))
    big = model.graph.initializer[-1]
    del big.dims[:]
    big.dims.append(BIG)
    _sparse_data(big, os.path.join(folder, "big.onnx.data"))
    path = os.path.join(folder, "big.onnx")
    with open(path, "wb") as f:
        f.write(model.SerializeToString())
    return path, small


@pytest.mark.slow
def test_models_over_2gb_optimize_and_save_with_external_data(tmp_path, rng):
    folder = tmp_path / "big"
    folder.mkdir()
    try:
        source, small = _write_big_model(folder, rng)
        out, report = fuser.optimize(source, validate=False)
        assert report.rewrites("fold-batchnorm") == 1
        assert report.after.ops == {"Add": 1, "Conv": 1, "Slice": 1}
        assert graph_io.weights_nbytes(out) > 2**31
        target = folder / "big.opt.onnx"
        graph_io.save(out, target)
        assert os.path.getsize(target) < 2**20
        assert os.path.getsize(folder / "big.opt.onnx.data") >= 4 * BIG
        header = onnx.load(str(target), load_external_data=False)
        onnx.checker.check_model(str(target))  # the checker reads a path, weights on disk
        assert graph_io.weights_nbytes(header) > 2**31
        # numerics: the saved result with the same 4-element stand-in for 'big' as the original
        for tensor in header.graph.initializer:
            if tensor.name == "big":
                tensor.CopyFrom(small.graph.initializer[-1])
        feeds = runtime.random_feeds(small, rng)
        want, got = runtime.run(small, feeds), runtime.run(header, feeds)
        for name in want:
            np.testing.assert_allclose(got[name], want[name], rtol=1e-4, atol=1e-5)
    finally:
        shutil.rmtree(folder)  # 4+ GB: do not leave it to pytest's tmp retention


IF_BRANCH = """
    g (bool c, float[4] x) => (float[4] y) {
        y = If(c) <
            then_branch = t () => (float[4] a) {
                st = Constant<value = int64[1] {0}>()
                en = Constant<value = int64[1] {4}>()
                sl = Slice(Wt, st, en)
                a = Add(x, sl)
            },
            else_branch = e () => (float[4] b) { b = Neg(x) }
        >
    }"""


@pytest.mark.slow
def test_over_2gb_inside_an_if_branch_is_optimized_validated_and_saved(tmp_path):
    """Issue 25: the size count included subgraphs but only main-graph weights moved to
    external data (save raised EncodeError), and copying a node over 2 GB with protobuf's
    ``extend`` serialized it (EncodeError in the checker's skeleton). The branch's weight is a
    sparse 2.1 GB file whose first values are 1, 2, 3, 4."""
    folder = tmp_path / "bigif"
    folder.mkdir()
    try:
        model = onnx.parser.parse_model('< ir_version: 8, opset_import: ["" : 17] >\n'
                                        + IF_BRANCH)
        weight = model.graph.node[0].attribute[0].g.initializer.add()
        weight.name, weight.data_type = "Wt", onnx.TensorProto.FLOAT
        weight.dims.append(BIG)
        _sparse_data(weight, folder / "in.onnx.data")
        onnx.save(model, folder / "in.onnx")
        out, report = fuser.optimize(str(folder / "in.onnx"), input_shapes={"x": [4]})
        assert report.validation is not None and report.validation.passed
        graph_io.save(out, folder / "out.onnx")
        assert os.path.getsize(folder / "out.onnx") < 2**20
        assert os.path.getsize(folder / "out.onnx.data") >= 4 * BIG
        header = onnx.load(str(folder / "out.onnx"), load_external_data=False)
        branch = header.graph.node[0].attribute[0].g.initializer[0]
        assert branch.data_location == onnx.TensorProto.EXTERNAL
        import onnxruntime as ort

        del out
        session = ort.InferenceSession(str(folder / "out.onnx"),
                                       providers=["CPUExecutionProvider"])
        x = np.array([10, 20, 30, 40], np.float32)
        (y,) = session.run(None, {"c": np.array(True), "x": x})
        np.testing.assert_array_equal(y, x + [1, 2, 3, 4])
    finally:
        shutil.rmtree(folder)

"""The shape arithmetic real exporters write, folded: torch ``F.pad``, ``x.view(x.size(0), -1)``,
``F.interpolate(scale_factor=2)``, Keras ``Reshape``/``Flatten``, a dynamic batch."""

from __future__ import annotations

import numpy as np
import pytest

import fuser
from fuser.runtime import sessions as runtime
from tests.helpers import check, ops

torch = pytest.importorskip("torch")
nn, F = torch.nn, torch.nn.functional


class PadNet(nn.Module):
    """A 1-D audio-style block: computed F.pad before each conv, then view(x.size(0), -1)."""

    def __init__(self) -> None:
        super().__init__()
        self.c1, self.b1 = nn.Conv1d(1, 8, 9), nn.BatchNorm1d(8)
        self.c2, self.b2 = nn.Conv1d(8, 8, 5), nn.BatchNorm1d(8)
        self.fc = nn.Linear(8 * 16, 3)

    def forward(self, x):
        x = x.unsqueeze(1)
        x = F.max_pool1d(F.relu(self.b1(self.c1(F.pad(x, (4, 4))))), 2)
        x = F.max_pool1d(F.relu(self.b2(self.c2(F.pad(x, (2, 2))))), 2)
        return self.fc(x.view(x.size(0), -1))


class UpNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x):
        return self.c2(F.interpolate(self.c1(x), scale_factor=2))


def _export(module, shape):
    from fuser.frontends.torch import export

    torch.manual_seed(0)
    return export(module.eval(), shape).model


def _same_at_batch(original, optimized, shape, batch, rng):
    feeds = {"input": rng.standard_normal((batch, *shape[1:])).astype(np.float32)}
    want, got = runtime.run(original, feeds), runtime.run(optimized, feeds)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-4, atol=1e-5)


def test_torch_pad_with_computed_amounts_folds_into_the_convs(rng):
    model = _export(PadNet(), (2, 64))
    assert ops(model)["Pad"] == 2 and ops(model)["ConstantOfShape"] == 2
    out, report = fuser.optimize(model)
    assert report.passed and report.rewrites("fold-pad-into-conv") == 2
    assert "Pad" not in ops(out) and "ConstantOfShape" not in ops(out)
    assert report.after.layer_shapes == {"Conv": [2, 2], "Gemm": [1, 1]}
    assert report.after.macs == 8 * 64 * 9 + 8 * 32 * 8 * 5 + 8 * 16 * 3
    check(out)
    _same_at_batch(model, out, (2, 64), 7, rng)  # the batch stays dynamic


def test_view_of_the_batch_folds_only_with_static_shapes(rng):
    model = _export(PadNet(), (2, 64))
    kept, report = fuser.optimize(model, input_shapes={"input": (4, 64)})
    assert ops(kept)["Shape"] == 1
    assert any("--static-shapes" in note for note in report.notes)
    fixed, report = fuser.optimize(model, input_shapes={"input": (4, 64)}, static_shapes=True)
    assert report.passed
    assert ops(fixed) == {"Unsqueeze": 1, "Conv": 2, "Relu": 2, "MaxPool": 2, "Reshape": 1,
                          "Gemm": 1}
    check(fixed)
    _same_at_batch(model, fixed, (4, 64), 4, rng)


def test_interpolate_with_a_scale_factor(rng):
    model = _export(UpNet(), (1, 3, 8, 8))
    out, report = fuser.optimize(model, input_shapes={"input": (1, 3, 8, 8)},
                                 static_shapes=True)
    assert report.passed and ops(out) == {"Conv": 2, "Resize": 1}
    assert report.after.macs_complete and report.after.macs == 4 * 64 * 27 + 4 * 256 * 36
    check(out)


def test_keras_reshape_and_flatten_with_a_dynamic_batch(rng):
    keras = pytest.importorskip("keras")
    from fuser.frontends.keras import export

    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same")(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Reshape((16, 16))(x)
    x = keras.layers.Flatten()(x)
    net = keras.Model(inputs, keras.layers.Dense(5)(x))
    model = export(net).model
    out, report = fuser.optimize(model)
    assert report.passed and report.after.macs_complete
    assert ops(out).get("BatchNormalization", 0) == 0 and "Shape" not in ops(out)
    assert ops(out)["Gemm"] == 1 and "MatMul" not in ops(out)
    check(out)
    feeds = {model.graph.input[0].name: rng.standard_normal((3, 8, 8, 3)).astype(np.float32)}
    want, got = runtime.run(model, feeds), runtime.run(out, feeds)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-4, atol=1e-5)

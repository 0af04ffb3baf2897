"""A torch model exported with BatchNormalization kept folds completely and still matches
torch (the issue's acceptance test for the spine; the frontends come later)."""

from __future__ import annotations

import io

import numpy as np
import onnx
import pytest

import fuser
from fuser import ir as graph_io
from fuser.runtime import sessions as runtime

torch = pytest.importorskip("torch")
nn = torch.nn


class Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                   nn.BatchNorm2d(cout)) if stride != 1 or cin != cout \
            else nn.Identity()

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + self.short(x))


def tiny_resnet() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, 1, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
        Block(8, 8, 1), Block(8, 16, 2), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(16, 10), nn.BatchNorm1d(10))
    for m in model.modules():  # trained-looking statistics, not the identity defaults
        if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return model.eval()


def export_keeping_bn(model: nn.Module, x) -> onnx.ModelProto:
    buffer = io.BytesIO()
    torch.onnx.export(model, (x,), buffer, dynamo=False, opset_version=17,
                      training=torch.onnx.TrainingMode.PRESERVE, input_names=["x"],
                      output_names=["logits"], dynamic_axes={"x": {0: "N"}, "logits": {0: "N"}})
    return onnx.load_from_string(buffer.getvalue())


def test_torch_resnet_with_bn_kept_folds_every_bn_and_matches_torch():
    model = tiny_resnet()
    x = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    exported = export_keeping_bn(model, x)
    bn_before = graph_io.op_histogram(exported)["BatchNormalization"]
    assert bn_before == 7  # the exporter kept every BN

    optimized, report = fuser.optimize(exported, check_each=True)
    assert "BatchNormalization" not in graph_io.op_histogram(optimized)
    assert report.rewrites("fold-batchnorm") == bn_before
    assert len([n for r in report.passes for n in r.notes if "BatchNormalization" in n]) == 7

    with torch.no_grad():
        want = model(x).numpy()
    feeds = {"x": x.numpy()}
    original = runtime.run(exported, feeds)["logits"]
    got = runtime.run(optimized, feeds)["logits"]
    np.testing.assert_allclose(original, want, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)

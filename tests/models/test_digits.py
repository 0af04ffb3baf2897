"""The trained digits zoo: tiny nets train in seconds to high accuracy, and exporting plus
fuser's exact pipeline leaves every prediction unchanged, in both frameworks."""

from __future__ import annotations

import numpy as np
import pytest

import fuser
from fuser.runtime import sessions as runtime

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")
from fuser.zoo import digits  # noqa: E402


@pytest.fixture(scope="session")
def data():
    return digits.load(16)


@pytest.fixture(scope="session")
def trained_resnet(data):
    arch, params, size, epochs = digits.TINY_ZOO["resnet"]
    return digits.train(arch, params, size, epochs, data=data)


def test_the_split_and_the_jitter(data):
    assert data.train_x.shape == (1437, 1, 16, 16) and data.test_x.shape == (360, 1, 16, 16)
    assert data.jitter_x.shape == data.test_x.shape
    assert 0 <= data.test_x.min() and data.test_x.max() <= 1
    assert np.abs(data.jitter_x - data.test_x).mean() > 0.05  # really harder


def test_a_tiny_resnet_trains_to_high_accuracy(trained_resnet):
    _, metrics = trained_resnet
    assert metrics["test"] >= 0.95 and metrics["jitter"] >= 0.8


def test_training_is_reproducible(data):
    arch, params, size, _ = digits.TINY_ZOO["vgg"]
    first, _ = digits.train(arch, params, size, 1, data=data)
    second, _ = digits.train(arch, params, size, 1, data=data)
    for a, b in zip(first.state_dict().values(), second.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_exact_pipeline_keeps_every_prediction(trained_resnet, data):
    from fuser.frontends import torch as torch_frontend

    net, metrics = trained_resnet
    exported = torch_frontend.export(net, (1, 1, 16, 16)).model
    optimized, report = fuser.optimize(exported, validate=False)
    assert "BatchNormalization" not in report.after.ops
    before = runtime.run(exported, {"input": data.test_x})["output"].argmax(1)
    after = runtime.run(optimized, {"input": data.test_x})["output"].argmax(1)
    assert np.array_equal(before, after)
    assert np.mean(after == data.test_y) == pytest.approx(metrics["test"])


def test_committed_weights_load_in_both_frameworks(data):
    keras = pytest.importorskip("keras")
    name = "digits_resnet"
    if not (digits.WEIGHTS / f"{name}.npz").exists():
        pytest.fail("the committed digits weights are missing")
    net = digits.load_trained(name, "torch")
    model = digits.load_trained(name, "keras")
    test = digits.load(32)
    torch_acc = digits.accuracy(net, test.test_x, test.test_y)
    keras_logits = np.asarray(model(test.test_x.transpose(0, 2, 3, 1), training=False))
    assert torch_acc >= 0.97
    assert np.mean(keras_logits.argmax(1) == test.test_y) == pytest.approx(torch_acc)
    assert keras is not None

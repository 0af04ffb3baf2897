"""The zoo: every architecture builds in PyTorch and Keras, and with transferred weights
both compute the same function."""

from __future__ import annotations

import numpy as np
import pytest

from fuser.zoo import TINY, build
from fuser.zoo.transfer import torch_to_keras

torch = pytest.importorskip("torch")
pytest.importorskip("keras")


@pytest.mark.parametrize("name", list(TINY))
def test_torch_and_keras_builds_compute_the_same_function(name, rng):
    arch, params = TINY[name]
    torch_net = build(arch, "torch", **params)
    keras_model = build(arch, "keras", **params)
    x = rng.standard_normal((2, 3, 32, 32)).astype(np.float32)
    with torch.no_grad():
        want = torch_net(torch.from_numpy(x)).numpy()
    got = np.asarray(keras_model(x.transpose(0, 2, 3, 1), training=False))
    assert want.shape == got.shape == (2, 10)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    bn = sum(isinstance(m, torch.nn.BatchNorm2d) for m in torch_net.modules())
    assert bn == sum(type(layer).__name__ == "BatchNormalization" for layer in keras_model.layers)
    assert bn > 0


def test_transfer_refuses_mismatched_shapes():
    arch, params = TINY["resnet10"]
    wider = build(arch, "torch", **{**params, "width": 16})
    with pytest.raises(ValueError, match="Keras expects"):
        torch_to_keras(wider, build(arch, "keras", **params))


def test_unknown_architecture_and_framework_are_user_errors():
    from fuser.errors import FuserError

    with pytest.raises(FuserError, match="unknown architecture"):
        build("alexnet", "torch")
    with pytest.raises(FuserError, match="unknown framework"):
        build("vgg", "jax", depth=11, width=8)


def test_full_size_resnet50_has_the_published_parameter_count():
    net = build("resnet", "torch", depth=50, num_classes=1000, image_size=224)
    assert sum(p.numel() for p in net.parameters()) == 25_557_032  # torchvision's resnet50

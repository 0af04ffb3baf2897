"""Built-in models.

- ``fuser.zoo.synthetic``: ResNet-style ONNX graphs built directly (no framework).
- The zoo: VGG, ResNet (basic/bottleneck, post/pre-activation), SE-ResNet, All-CNN-C and
  MobileNet, defined once (``architectures``) and built in PyTorch or Keras with the same
  layer names, so weights transfer between them (``transfer``).

``build("resnet", "torch", depth=18, width=16, image_size=32, num_classes=10)`` gives a
torch module in eval mode; ``build(..., "keras", ...)`` the Keras model (NHWC), its weights
copied from the torch build of the same seed so both compute the same function.
"""

from __future__ import annotations

from typing import Any

from fuser.errors import FuserError, MissingDependencyError
from fuser.frontends.tensorflow_import import import_tensorflow
from fuser.zoo.architectures import ARCHITECTURES

#: Tiny variants for tests and the quick demo: name -> (architecture, parameters).
TINY: dict[str, tuple[str, dict[str, Any]]] = {
    "vgg11": ("vgg", {"depth": 11, "width": 8}),
    "resnet10": ("resnet", {"depth": 10, "width": 8, "stem_stride": 1}),
    "preact_resnet10": ("resnet", {"depth": 10, "width": 8, "stem_stride": 1, "preact": True}),
    "resnet50": ("resnet", {"depth": 50, "width": 4, "stem_stride": 1}),
    "se_resnet10": ("se_resnet", {"depth": 10, "width": 8, "stem_stride": 1}),
    "allcnn_c": ("allcnn_c", {"width": 8}),
    "mobilenet": ("mobilenet", {"width": 0.25, "blocks": 5}),
}


def build(arch: str, framework: str, *, image_size: int = 32, in_channels: int = 3,
          num_classes: int = 10, seed: int = 0, **params: Any) -> Any:
    """A zoo network in ``torch`` or ``keras`` (see ``ARCHITECTURES`` for the names)."""
    if arch not in ARCHITECTURES:
        raise FuserError(f"unknown architecture {arch!r} (known: {', '.join(ARCHITECTURES)})")
    function = ARCHITECTURES[arch]
    params = {"num_classes": num_classes, **params}
    torch_net = _torch_backend().build(function, in_channels=in_channels, seed=seed, **params)
    if framework == "torch":
        return torch_net
    if framework == "keras":
        from fuser.zoo import transfer

        model = _keras_backend().build(function, image_size, in_channels, **params)
        transfer.torch_to_keras(torch_net, model)
        return model
    raise FuserError(f"unknown framework {framework!r} (torch or keras)")


def _torch_backend():
    try:
        from fuser.zoo import torch_backend
    except ImportError as exc:
        raise MissingDependencyError(
            "the PyTorch zoo needs torch: pip install 'onnx-fuser[torch]'") from exc
    return torch_backend


def _keras_backend():
    try:
        import_tensorflow()  # quietly: TensorFlow's import-time log lines filtered
        from fuser.zoo import keras_backend
    except ImportError as exc:
        raise MissingDependencyError(
            "the Keras zoo needs keras and tensorflow: pip install 'onnx-fuser[keras]'") from exc
    return keras_backend


__all__ = ["ARCHITECTURES", "TINY", "build"]

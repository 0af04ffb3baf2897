"""The Keras 3 builder: an architecture's calls become a functional ``keras.Model`` (NHWC).

Layer names match the PyTorch builder's, so ``transfer.torch_to_keras`` can copy weights.
Padding is an explicit ``ZeroPadding2D(k // 2)`` before a 'valid' conv: Keras 'same' pads
asymmetrically at stride 2, PyTorch symmetrically.
"""

from __future__ import annotations

from typing import Any

import keras

Handle = tuple[Any, int]  # (keras tensor, channels)


class KerasBuilder:
    """Builds a functional Keras model from an architecture function."""

    def __init__(self, image_size: int, in_channels: int = 3) -> None:
        self.inputs = keras.Input((image_size, image_size, in_channels), name="input")
        self.in_channels = in_channels
        self._count = 0

    def _auto(self, kind: str) -> str:
        self._count += 1
        return f"{kind}{self._count}"

    def input(self) -> Handle:
        return (self.inputs, self.in_channels)

    def conv(self, x: Handle, cout: int, k: int, name: str, stride: int = 1, groups: int = 1,
             bias: bool = False, pad: bool = True) -> Handle:
        tensor = x[0]
        if pad and k // 2:
            tensor = keras.layers.ZeroPadding2D(k // 2, name=f"{name}_pad")(tensor)
        if groups > 1 and groups == x[1] == cout:
            layer = keras.layers.DepthwiseConv2D(k, stride, use_bias=bias, name=name)
        else:
            layer = keras.layers.Conv2D(cout, k, stride, groups=groups, use_bias=bias, name=name)
        return (layer(tensor), cout)

    def bn(self, x: Handle, name: str) -> Handle:
        return (keras.layers.BatchNormalization(epsilon=1e-5, name=name)(x[0]), x[1])

    def relu(self, x: Handle) -> Handle:
        return (keras.layers.ReLU(name=self._auto("relu"))(x[0]), x[1])

    def sigmoid(self, x: Handle) -> Handle:
        return (keras.layers.Activation("sigmoid", name=self._auto("sigmoid"))(x[0]), x[1])

    def add(self, a: Handle, b: Handle) -> Handle:
        return (keras.layers.Add(name=self._auto("add"))([a[0], b[0]]), a[1])

    def scale_channels(self, x: Handle, s: Handle) -> Handle:
        s4 = keras.layers.Reshape((1, 1, s[1]), name=self._auto("reshape"))(s[0])
        return (keras.layers.Multiply(name=self._auto("scale"))([x[0], s4]), x[1])

    def maxpool(self, x: Handle, k: int, stride: int) -> Handle:
        tensor = x[0]
        if (k - 1) // 2:  # zero padding equals -inf padding here: pools follow a Relu
            tensor = keras.layers.ZeroPadding2D((k - 1) // 2, name=self._auto("poolpad"))(tensor)
        return (keras.layers.MaxPooling2D(k, stride, name=self._auto("pool"))(tensor), x[1])

    def gap(self, x: Handle) -> Handle:
        return (keras.layers.GlobalAveragePooling2D(name=self._auto("gap"))(x[0]), x[1])

    def dense(self, x: Handle, units: int, name: str) -> Handle:
        return (keras.layers.Dense(units, name=name)(x[0]), units)

    def channels(self, x: Handle) -> int:
        return x[1]


def build(arch: Any, image_size: int, in_channels: int = 3, **params: Any) -> keras.Model:
    """An architecture function as a Keras model (NHWC input named ``input``)."""
    builder = KerasBuilder(image_size, in_channels)
    out = arch(builder, **params)
    return keras.Model(builder.inputs, out[0], name=getattr(arch, "__name__", "zoo"))

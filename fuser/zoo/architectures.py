"""The zoo's architectures, written once against a small builder interface.

Each architecture is a function ``arch(b, **params)`` that calls a *builder* (``b.conv``,
``b.bn``, ``b.add``, ...). The PyTorch builder turns the calls into an ``nn.Module``, the
Keras builder into a functional ``keras.Model``; both name every layer the same way, so one
definition gives the same network in both frameworks and weights move between them by name.

Conventions: 2-D images, odd kernels with symmetric zero padding ``k // 2`` (Keras gets an
explicit ZeroPadding2D, so both frameworks pad alike even at stride 2), BatchNormalization
with epsilon 1e-5, global average pooling before the classifier (VGG included, so the head
does not depend on the channel layout).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

T = Any  # a builder's tensor handle


class Builder(Protocol):
    """What an architecture may call. ``name`` arguments must be unique in a model."""

    def input(self) -> T: ...
    def conv(self, x: T, cout: int, k: int, name: str, stride: int = 1, groups: int = 1,
             bias: bool = False, pad: bool = True) -> T: ...
    def bn(self, x: T, name: str) -> T: ...
    def relu(self, x: T) -> T: ...
    def sigmoid(self, x: T) -> T: ...
    def add(self, a: T, b: T) -> T: ...
    def scale_channels(self, x: T, s: T) -> T: ...
    def maxpool(self, x: T, k: int, stride: int) -> T: ...
    def gap(self, x: T) -> T: ...
    def dense(self, x: T, units: int, name: str) -> T: ...
    def channels(self, x: T) -> int: ...


def conv_bn(b: Builder, x: T, cout: int, k: int, name: str, stride: int = 1, groups: int = 1,
            relu: bool = True) -> T:
    """Conv (no bias) -> BatchNormalization [-> Relu]: the unit BN folding targets."""
    y = b.bn(b.conv(x, cout, k, f"{name}_conv", stride=stride, groups=groups), f"{name}_bn")
    return b.relu(y) if relu else y


# ---------------------------------------------------------------------------- VGG

VGG_CONFIGS = {
    11: (1, 1, 2, 2, 2),
    13: (2, 2, 2, 2, 2),
    16: (2, 2, 3, 3, 3),
    19: (2, 2, 4, 4, 4),
}


def vgg(b: Builder, depth: int = 16, width: int = 64, num_classes: int = 1000,
        stages: int = 5) -> T:
    """VGG with BN (Simonyan & Zisserman 2014): stages of 3x3 conv-BN-Relu, max pooling.

    ``depth`` 11/13/16/19 (any other: one conv per stage); ``stages`` < 5 drops the last
    stages (and their pooling) for small images."""
    per_stage = VGG_CONFIGS.get(depth, (1, 1, 1, 1, 1))[:stages]
    x = b.input()
    for stage, convs in enumerate(per_stage):
        channels = width * min(2**stage, 8)
        for i in range(convs):
            x = conv_bn(b, x, channels, 3, f"s{stage}_c{i}")
        x = b.maxpool(x, 2, 2)
    return b.dense(b.gap(x), num_classes, "fc")


# ---------------------------------------------------------------------------- ResNet family

RESNET_LAYERS = {
    10: ((1, 1, 1, 1), False),
    18: ((2, 2, 2, 2), False),
    34: ((3, 4, 6, 3), False),
    50: ((3, 4, 6, 3), True),
    101: ((3, 4, 23, 3), True),
    152: ((3, 8, 36, 3), True),
}


def _squeeze_excite(b: Builder, x: T, name: str, reduction: int = 16) -> T:
    """SE block (Hu et al. 2018): x * sigmoid(W2 relu(W1 gap(x)))."""
    c = b.channels(x)
    s = b.relu(b.dense(b.gap(x), max(c // reduction, 4), f"{name}_se1"))
    return b.scale_channels(x, b.sigmoid(b.dense(s, c, f"{name}_se2")))


def _block(b: Builder, x: T, width: int, stride: int, name: str, bottleneck: bool,
           preact: bool, se: bool) -> T:
    cin = b.channels(x)
    cout = width * 4 if bottleneck else width
    if preact:  # He et al. 2016 v2: BN-Relu before each conv, identity shortcut untouched
        pre = b.relu(b.bn(x, f"{name}_prebn"))
        shortcut = x if stride == 1 and cin == cout else \
            b.conv(pre, cout, 1, f"{name}_down_conv", stride=stride)
        if bottleneck:
            y = b.conv(pre, width, 1, f"{name}_conv1")
            y = b.conv(b.relu(b.bn(y, f"{name}_bn1")), width, 3, f"{name}_conv2", stride=stride)
            y = b.conv(b.relu(b.bn(y, f"{name}_bn2")), cout, 1, f"{name}_conv3")
        else:
            y = b.conv(pre, width, 3, f"{name}_conv1", stride=stride)
            y = b.conv(b.relu(b.bn(y, f"{name}_bn1")), cout, 3, f"{name}_conv2")
        if se:
            y = _squeeze_excite(b, y, name)
        return b.add(y, shortcut)
    if bottleneck:
        y = conv_bn(b, x, width, 1, f"{name}_1")
        y = conv_bn(b, y, width, 3, f"{name}_2", stride=stride)
        y = conv_bn(b, y, cout, 1, f"{name}_3", relu=False)
    else:
        y = conv_bn(b, x, width, 3, f"{name}_1", stride=stride)
        y = conv_bn(b, y, cout, 3, f"{name}_2", relu=False)
    if se:
        y = _squeeze_excite(b, y, name)
    shortcut = x if stride == 1 and cin == cout else \
        conv_bn(b, x, cout, 1, f"{name}_down", stride=stride, relu=False)
    return b.relu(b.add(y, shortcut))


def resnet(b: Builder, depth: int = 50, width: int = 64, num_classes: int = 1000,
           preact: bool = False, se: bool = False, stem_stride: int = 2) -> T:
    """ResNet (He et al. 2015), basic (10/18/34) or bottleneck (50/101/152) blocks;
    ``preact`` gives the pre-activation v2 form, ``se`` the SE-ResNet (SENet) form.
    ``stem_stride`` 1 drops the stem's downsampling and max pool (for small images)."""
    layers, bottleneck = RESNET_LAYERS[depth]
    x = b.input()
    if stem_stride == 1:
        x = conv_bn(b, x, width, 3, "stem")
    else:
        x = b.maxpool(conv_bn(b, x, width, 7, "stem", stride=2), 3, 2)
    for stage, blocks in enumerate(layers):
        for i in range(blocks):
            stride = 2 if stage > 0 and i == 0 else 1
            x = _block(b, x, width * 2**stage, stride, f"l{stage}_{i}", bottleneck, preact, se)
    if preact:
        x = b.relu(b.bn(x, "final_bn"))
    return b.dense(b.gap(x), num_classes, "fc")


def se_resnet(b: Builder, depth: int = 50, **params: Any) -> T:
    """SE-ResNet: ResNet with squeeze-and-excitation blocks."""
    return resnet(b, depth, se=True, **params)


# ---------------------------------------------------------------------------- small nets


def allcnn_c(b: Builder, width: int = 96, num_classes: int = 10) -> T:
    """All-CNN-C (Springenberg et al. 2014), with BN after every conv: strided convs in
    place of pooling, 1x1 convs as the classifier, global average pooling."""
    wide = width * 2
    x = b.input()
    x = conv_bn(b, x, width, 3, "c1")
    x = conv_bn(b, x, width, 3, "c2")
    x = conv_bn(b, x, width, 3, "c3", stride=2)
    x = conv_bn(b, x, wide, 3, "c4")
    x = conv_bn(b, x, wide, 3, "c5")
    x = conv_bn(b, x, wide, 3, "c6", stride=2)
    x = conv_bn(b, x, wide, 3, "c7")
    x = conv_bn(b, x, wide, 1, "c8")
    x = b.conv(x, num_classes, 1, "c9_conv", bias=True)
    return b.gap(x)


MOBILENET_STAGES = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
                    (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1))


def mobilenet(b: Builder, width: float = 1.0, num_classes: int = 1000, blocks: int = 13) -> T:
    """MobileNet v1 (Howard et al. 2017): depthwise-separable convs (depthwise 3x3-BN-Relu,
    pointwise 1x1-BN-Relu), ``width`` the channel multiplier, ``blocks`` how many of 13."""
    x = conv_bn(b, b.input(), max(int(32 * width), 8), 3, "stem", stride=2)
    for i, (channels, stride) in enumerate(MOBILENET_STAGES[:blocks]):
        cin = b.channels(x)
        x = conv_bn(b, x, cin, 3, f"b{i}_dw", stride=stride, groups=cin)
        x = conv_bn(b, x, max(int(channels * width), 8), 1, f"b{i}_pw")
    return b.dense(b.gap(x), num_classes, "fc")


ARCHITECTURES: dict[str, Callable[..., T]] = {
    "vgg": vgg, "resnet": resnet, "se_resnet": se_resnet, "allcnn_c": allcnn_c,
    "mobilenet": mobilenet,
}

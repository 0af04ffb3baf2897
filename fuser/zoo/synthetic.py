"""ResNet-style ONNX models with BatchNormalization kept, built directly with
onnx-graphsurgeon from seeded random weights (no framework needed).

They have the structure of torch exports with ``TrainingMode.PRESERVE`` (Conv without bias ->
BatchNormalization -> Relu, residual Add, global pooling, Gemm), so they exercise the exact
pipeline and time it at real sizes. Random weights: fine for exactness and speed, meaningless
for accuracy.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnx_graphsurgeon as gs

#: blocks per stage, and whether the blocks are bottlenecks
RESNETS = {
    "resnet18": ((2, 2, 2, 2), False),
    "resnet34": ((3, 4, 6, 3), False),
    "resnet50": ((3, 4, 6, 3), True),
    "resnet101": ((3, 4, 23, 3), True),
    "resnet152": ((3, 8, 36, 3), True),
}


class _Builder:
    def __init__(self, graph: gs.Graph, rng: np.random.Generator) -> None:
        self.graph, self.rng, self.count = graph, rng, 0

    def _name(self, kind: str) -> str:
        self.count += 1
        return f"{kind}_{self.count}"

    def conv_bn(self, x: gs.Variable, cin: int, cout: int, k: int, stride: int = 1,
                relu: bool = True) -> gs.Variable:
        name = self._name("conv")
        fan_in = cin * k * k
        w = (self.rng.standard_normal((cout, cin, k, k)) * np.sqrt(2.0 / fan_in)).astype(np.float32)
        y = self.graph.layer(op="Conv", name=name, inputs=[x, gs.Constant(f"{name}.weight", w)],
                             outputs=[f"{name}_out"], attrs={
                                 "kernel_shape": [k, k], "strides": [stride, stride],
                                 "pads": [k // 2] * 4})[0]
        bn = name.replace("conv", "bn")
        params = [
            self.rng.uniform(0.5, 1.5, cout), self.rng.normal(0, 0.1, cout),
            self.rng.normal(0, 0.1, cout), self.rng.uniform(0.5, 1.5, cout)]
        y = self.graph.layer(op="BatchNormalization", name=bn, inputs=[y] + [
            gs.Constant(f"{bn}.{p}", v.astype(np.float32))
            for p, v in zip(("weight", "bias", "running_mean", "running_var"), params, strict=True)
        ], outputs=[f"{bn}_out"], attrs={"epsilon": 1e-5})[0]
        if relu:
            y = self.graph.layer(op="Relu", inputs=[y], outputs=[f"{bn}_relu"])[0]
        return y

    def block(self, x: gs.Variable, cin: int, width: int, stride: int,
              bottleneck: bool) -> tuple[gs.Variable, int]:
        cout = width * 4 if bottleneck else width
        if bottleneck:
            y = self.conv_bn(x, cin, width, 1)
            y = self.conv_bn(y, width, width, 3, stride)
            y = self.conv_bn(y, width, cout, 1, relu=False)
        else:
            y = self.conv_bn(x, cin, width, 3, stride)
            y = self.conv_bn(y, width, cout, 3, relu=False)
        shortcut = x if stride == 1 and cin == cout else self.conv_bn(x, cin, cout, 1, stride,
                                                                       relu=False)
        add = self.graph.layer(op="Add", inputs=[y, shortcut], outputs=[self._name("add")])[0]
        return self.graph.layer(op="Relu", inputs=[add], outputs=[self._name("relu")])[0], cout


def resnet(arch: str = "resnet50", *, image_size: int = 224, num_classes: int = 1000,
           width: int = 64, batch: int | str = "N", seed: int = 0) -> onnx.ModelProto:
    """A ResNet (``resnet18`` ... ``resnet152``) as ONNX with BatchNormalization kept.

    ``batch`` is a fixed size or a symbol (dynamic batch).
    """
    stages, bottleneck = RESNETS[arch]
    x = gs.Variable("input", dtype=np.float32, shape=[batch, 3, image_size, image_size])
    graph = gs.Graph(inputs=[x], opset=17, name=arch)
    build = _Builder(graph, np.random.default_rng(seed))
    y = build.conv_bn(x, 3, width, 7, stride=2)
    y = graph.layer(op="MaxPool", inputs=[y], outputs=["pool"], attrs={
        "kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]})[0]
    channels = width
    for stage, blocks in enumerate(stages):
        for i in range(blocks):
            stride = 2 if stage > 0 and i == 0 else 1
            y, channels = build.block(y, channels, width * 2**stage, stride, bottleneck)
    y = graph.layer(op="GlobalAveragePool", inputs=[y], outputs=["gap"])[0]
    y = graph.layer(op="Flatten", inputs=[y], outputs=["flat"], attrs={"axis": 1})[0]
    fc_w = (build.rng.standard_normal((num_classes, channels)) / np.sqrt(channels))
    y = graph.layer(op="Gemm", inputs=[
        y, gs.Constant("fc.weight", fc_w.astype(np.float32)),
        gs.Constant("fc.bias", np.zeros(num_classes, np.float32))],
        outputs=["logits"], attrs={"transB": 1})[0]
    y.name, y.dtype, y.shape = "logits", np.float32, [batch, num_classes]
    graph.outputs = [y]
    model = gs.export_onnx(graph, do_type_check=False)
    model.ir_version = 8
    return model

"""The PyTorch builder: an architecture's calls become an ``nn.Module``.

Layers are stored by name in a ``ModuleDict``; ``forward`` replays the recorded program
(a list of steps), so the module traces and exports like any hand-written one.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

Handle = tuple[int, int]  # (slot, channels)


class ZooNet(nn.Module):
    """A network recorded from an architecture function (see ``architectures``)."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.layers = nn.ModuleDict()
        self.program: list[tuple[str, tuple[int, ...], str | None]] = []
        self.output_slot = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        slots = [x]
        for op, args, layer in self.program:
            values = [slots[i] for i in args]
            if layer is not None:
                slots.append(self.layers[layer](values[0]))
            elif op == "relu":
                slots.append(torch.relu(values[0]))
            elif op == "sigmoid":
                slots.append(torch.sigmoid(values[0]))
            elif op == "add":
                slots.append(values[0] + values[1])
            elif op == "scale":
                slots.append(values[0] * values[1][:, :, None, None])
            elif op == "gap":
                slots.append(torch.flatten(nn.functional.adaptive_avg_pool2d(values[0], 1), 1))
            else:  # pragma: no cover - programs are built by TorchBuilder only
                raise ValueError(op)
        return slots[self.output_slot]


class TorchBuilder:
    """Records an architecture into a ``ZooNet``."""

    def __init__(self, in_channels: int = 3) -> None:
        self.net = ZooNet(in_channels)
        self._slots = 1

    def _step(self, op: str, args: tuple[int, ...], channels: int,
              layer: nn.Module | None = None, name: str | None = None) -> Handle:
        if layer is not None:
            if name in self.net.layers:
                raise ValueError(f"duplicate layer name {name!r}")
            self.net.layers[name] = layer
        self.net.program.append((op, args, name if layer is not None else None))
        self._slots += 1
        return (self._slots - 1, channels)

    def input(self) -> Handle:
        return (0, self.net.in_channels)

    def conv(self, x: Handle, cout: int, k: int, name: str, stride: int = 1, groups: int = 1,
             bias: bool = False, pad: bool = True) -> Handle:
        layer = nn.Conv2d(x[1], cout, k, stride, k // 2 if pad else 0, groups=groups,
                          bias=bias)
        return self._step("layer", (x[0],), cout, layer, name)

    def bn(self, x: Handle, name: str) -> Handle:
        return self._step("layer", (x[0],), x[1], nn.BatchNorm2d(x[1], eps=1e-5), name)

    def relu(self, x: Handle) -> Handle:
        return self._step("relu", (x[0],), x[1])

    def sigmoid(self, x: Handle) -> Handle:
        return self._step("sigmoid", (x[0],), x[1])

    def add(self, a: Handle, b: Handle) -> Handle:
        return self._step("add", (a[0], b[0]), a[1])

    def scale_channels(self, x: Handle, s: Handle) -> Handle:
        return self._step("scale", (x[0], s[0]), x[1])

    def maxpool(self, x: Handle, k: int, stride: int) -> Handle:
        return self._step("layer", (x[0],), x[1], nn.MaxPool2d(k, stride, padding=(k - 1) // 2),
                          f"pool{self._slots}")

    def gap(self, x: Handle) -> Handle:
        return self._step("gap", (x[0],), x[1])

    def dense(self, x: Handle, units: int, name: str) -> Handle:
        return self._step("layer", (x[0],), units, nn.Linear(x[1], units), name)

    def channels(self, x: Handle) -> int:
        return x[1]


def build(arch: Any, in_channels: int = 3, seed: int = 0, **params: Any) -> ZooNet:
    """An architecture function as a torch module in eval mode, with seeded weights and
    non-trivial BatchNorm statistics (so folding is exercised, not a no-op)."""
    torch.manual_seed(seed)
    builder = TorchBuilder(in_channels)
    out = arch(builder, **params)
    net = builder.net
    net.output_slot = out[0]
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, nn.BatchNorm2d):
                c = module.num_features
                module.running_mean.copy_(torch.rand(c, generator=generator) - 0.5)
                module.running_var.copy_(torch.rand(c, generator=generator) + 0.5)
                module.weight.copy_(torch.rand(c, generator=generator) + 0.5)
                module.bias.copy_(torch.rand(c, generator=generator) * 0.2 - 0.1)
    return net.eval()

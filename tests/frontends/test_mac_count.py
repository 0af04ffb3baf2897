"""MACs in the report against an independent count: PyTorch's own FLOP counter
(``torch.utils.flop_counter``, 2 FLOPs per multiply-accumulate) on the same modules."""

from __future__ import annotations

import pytest

import fuser

torch = pytest.importorskip("torch")

ZOO = [("vgg", {"depth": 11}), ("resnet", {"depth": 18}), ("se_resnet", {"depth": 18}),
       ("mobilenet", {"width": 0.5}), ("allcnn_c", {"width": 32})]


@pytest.mark.parametrize(("arch", "params"), ZOO, ids=[a for a, _ in ZOO])
def test_report_macs_match_torch_flop_counter(arch, params):
    from torch.utils.flop_counter import FlopCounterMode

    from fuser.frontends.torch import export
    from fuser.zoo import build

    net = build(arch, "torch", image_size=32, **params).eval()
    example = torch.randn(1, 3, 32, 32)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        net(example)
    independent = counter.get_total_flops() // 2
    _, report = fuser.optimize(export(net, example).model, validate=False)
    assert report.after.macs_complete and report.before.macs_complete
    assert report.after.macs == pytest.approx(independent, rel=0.01)
    assert report.before.macs == report.after.macs  # the exact pipeline keeps every MAC

"""PyTorch frontend: BN kept for fuser, eager == ORT(original) == ORT(optimized)."""

from __future__ import annotations

import numpy as np
import pytest

import fuser
from fuser import ir as graph_io
from fuser.runtime import sessions as runtime
from fuser.zoo import TINY, build

torch = pytest.importorskip("torch")
from fuser.frontends import torch as torch_frontend  # noqa: E402


@pytest.mark.parametrize("name", list(TINY))
def test_export_keeps_bn_and_fuser_folds_it(name, rng):
    arch, params = TINY[name]
    net = build(arch, "torch", **params)
    result = torch_frontend.export(net, (2, 3, 32, 32))
    bn_layers = sum(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    assert result.batchnorm_layers == result.batchnorm_nodes == bn_layers
    assert result.max_abs_diff < 1e-5
    optimized, report = fuser.optimize(result.model, validate=fuser.Validation(batch=2))
    after_conv = _bn_after_conv(result.model)
    assert report.passed and report.rewrites("fold-batchnorm") == after_conv
    # pre-activation BN (after an Add, before a Relu) has no linear node to fold into
    left = graph_io.op_histogram(optimized).get("BatchNormalization", 0)
    assert left == bn_layers - after_conv
    assert (left > 0) == bool(params.get("preact"))
    assert sum(report.skipped("fold-batchnorm").values()) == left
    x = rng.standard_normal((3, 3, 32, 32)).astype(np.float32)
    with torch.no_grad():
        eager = net(torch.from_numpy(x)).numpy()
    for model in (result.model, optimized):  # dynamic batch: 3 works though exported with 2
        np.testing.assert_allclose(runtime.run(model, {"input": x})["output"], eager,
                                   rtol=1e-4, atol=1e-5)


def _bn_after_conv(model) -> int:
    producers = {o: n.op_type for n in model.graph.node for o in n.output}
    return sum(n.op_type == "BatchNormalization" and producers.get(n.input[0]) == "Conv"
               for n in model.graph.node)


def test_fold_in_exporter_leaves_no_batchnorm():
    arch, params = TINY["resnet10"]
    result = torch_frontend.export(build(arch, "torch", **params), (1, 3, 32, 32),
                                   keep_batchnorm=False)
    assert result.batchnorm_nodes == 0 and result.batchnorm_layers == 12
    assert "EVAL" in result.exporter


def test_identity_nodes_from_deduplicated_tensors_are_removed():
    """Untrained BN layers share equal tensors; the exporter de-duplicates them into
    Identity nodes, which the frontend removes."""
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4),
                              torch.nn.Conv2d(4, 4, 3), torch.nn.BatchNorm2d(4))
    result = torch_frontend.export(net, (1, 3, 8, 8))
    assert "Identity" not in graph_io.op_histogram(result.model)
    assert any("Identity" in note for note in result.notes)
    assert result.batchnorm_nodes == 2 and result.max_abs_diff < 1e-5


def test_static_batch_and_a_written_file(tmp_path):
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4)).eval()
    result = torch_frontend.export(net, torch.zeros(2, 3, 8, 8), tmp_path / "m.onnx",
                                   dynamic_batch=False)
    dims = result.model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_value == 2
    assert graph_io.load(tmp_path / "m.onnx") == result.model


def test_bad_arguments_are_user_errors():
    from fuser.errors import FuserError

    with pytest.raises(FuserError, match="expected a torch.nn.Module"):
        torch_frontend.export("not a module", (1, 3, 8, 8))
    with pytest.raises(FuserError, match="example_inputs"):
        torch_frontend.export(torch.nn.ReLU(), "1x3x8x8")


def test_missing_torch_gives_install_advice(monkeypatch):
    import builtins

    from fuser.errors import MissingDependencyError

    real_import = builtins.__import__

    def no_torch(name, *args, **kwargs):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("No module named 'torch'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_torch)
    with pytest.raises(MissingDependencyError, match=r"pip install 'onnx-fuser\[torch\]'"):
        torch_frontend.export(None, (1, 3, 8, 8))

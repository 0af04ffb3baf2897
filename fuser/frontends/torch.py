"""PyTorch frontend: ``torch.onnx.export`` with BatchNormalization kept.

Exporter choice: the TorchScript exporter with ``training=TrainingMode.PRESERVE``. On a
module in eval mode it writes ``BatchNormalization(training_mode=0)`` nodes and otherwise
the same clean graph as a normal export; with EVAL (``keep_batchnorm=False``) its
``eval_peephole`` pass folds Conv+BN during export (pytorch/pytorch#49226). The dynamo
exporter keeps BN only with ``optimize=False``, which leaves Expand/Shape/CastLike chains
that need onnxscript's constant folding to clean: more moving parts for the same graph.
Untrained modules make the exporter de-duplicate equal tensors into Identity nodes; they are
removed here (fuser's ``eliminate-identity`` pass) so the exported file is clean.
"""

from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from fuser import api
from fuser import ir as graph_io
from fuser.errors import FuserError, MissingDependencyError
from fuser.frontends import ExportResult, count_batchnorm
from fuser.runtime import sessions as runtime

logger = logging.getLogger(__name__)


def _torch():
    try:
        import torch
    except ImportError as exc:
        raise MissingDependencyError(
            "exporting PyTorch models needs torch: pip install 'onnx-fuser[torch]'") from exc
    return torch


def export(  # noqa: PLR0913  (the public API: keyword settings)
        module: Any, example_inputs: Any, path: str | Path | None = None, *,
           opset: int | None = None, dynamic_batch: bool = True, keep_batchnorm: bool = True,
           check: bool = True, input_names: Sequence[str] | None = None,
           output_names: Sequence[str] | None = None) -> ExportResult:
    """Export ``module`` (put in eval mode) to ONNX.

    Args:
        module: a ``torch.nn.Module``.
        example_inputs: a tensor or a tuple of tensors (a shape tuple of ints makes a
            seeded normal tensor).
        path: also write the model there (atomically).
        opset: ONNX opset (default 17).
        dynamic_batch: make the first dimension of inputs and outputs symbolic.
        keep_batchnorm: keep BatchNormalization for fuser to fold (else torch folds it).
        check: compare the module's eager output with onnxruntime's (optimizations off).
    """
    torch = _torch()
    if not isinstance(module, torch.nn.Module):
        raise FuserError(f"expected a torch.nn.Module, got {type(module).__name__}")
    inputs = _as_inputs(torch, example_inputs)
    module = module.eval()
    names_in = list(input_names or (["input"] if len(inputs) == 1 else
                                    [f"input{i}" for i in range(len(inputs))]))
    with torch.no_grad():
        eager = module(*inputs)
    eager_outputs = eager if isinstance(eager, tuple | list) else (eager,)
    names_out = list(output_names or (["output"] if len(eager_outputs) == 1 else
                                      [f"output{i}" for i in range(len(eager_outputs))]))
    axes = {n: {0: "batch"} for n in names_in + names_out} if dynamic_batch else None
    mode = torch.onnx.TrainingMode.PRESERVE if keep_batchnorm else torch.onnx.TrainingMode.EVAL
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter warns on every call
        torch.onnx.export(module, inputs, buffer, dynamo=False, opset_version=opset or 17,
                          training=mode, input_names=names_in, output_names=names_out,
                          dynamic_axes=axes, do_constant_folding=True)
    model = onnx.load_from_string(buffer.getvalue())
    notes = []
    identities = sum(n.op_type == "Identity" for n in model.graph.node)
    if identities:
        model, _ = api.optimize(model, ["eliminate-identity"], validate=False)
        notes.append(f"{identities} Identity node(s) from de-duplicated tensors removed")
    bn_layers = sum(isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
                    for m in module.modules())
    diff = scale = None
    if check:
        feeds = {n: t.detach().cpu().numpy() for n, t in zip(names_in, inputs, strict=True)}
        diff, scale = _difference(model, feeds, [t.detach().cpu().numpy()
                                                 for t in eager_outputs], names_out)
    if path is not None:
        graph_io.save(model, path)
    return ExportResult(model, "torch", "torch.onnx TorchScript, TrainingMode."
                        f"{'PRESERVE' if keep_batchnorm else 'EVAL'}", bn_layers,
                        count_batchnorm(model), diff, scale, notes)


def _as_inputs(torch: Any, example: Any) -> tuple:
    if isinstance(example, torch.Tensor):
        return (example,)
    if isinstance(example, tuple | list) and example and all(isinstance(d, int) for d in example):
        generator = torch.Generator().manual_seed(0)
        return (torch.randn(*example, generator=generator),)
    if isinstance(example, tuple | list) and all(isinstance(t, torch.Tensor) for t in example):
        return tuple(example)
    raise FuserError("example_inputs must be a tensor, a tuple of tensors, or a shape")


def _difference(model: onnx.ModelProto, feeds: dict, expected: list[np.ndarray],
                names: list[str]) -> tuple[float, float]:
    got = runtime.run(model, feeds)
    diff = max(float(np.abs(got[n] - e).max()) for n, e in zip(names, expected, strict=True))
    scale = max(float(np.abs(e).max()) for e in expected)
    return diff, scale

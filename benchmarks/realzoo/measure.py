"""What the real-zoo benchmark measures on one model: node counts after fuser and its peers
(all at the same fixed input shapes), MACs counted independently of fuser, and the task
metric of a model on its task data (run with onnxruntime, in chunks of ``run_batch``)."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnx

Shapes = Mapping[str, tuple[int, ...]]


def first_line(exc: BaseException) -> str:
    """``Type: first line of the message`` (at most 300 characters of it)."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:300] if lines else ''}"


def run_fuser(path: Path, shapes: Shapes, *, static: bool = True, timed: bool = False
              ) -> tuple[onnx.ModelProto | None, dict]:
    """fuser's exact pipeline at the fixed shapes, written into the model with ``static``
    (as onnxsim's ``overwrite_input_shapes``), else with the symbolic dims kept; ``timed``:
    with the speed check of the CLI's default (``Timing()``: both levels, batch 1, slower
    passes rolled back); the error text instead of raising."""
    import fuser

    info: dict[str, Any] = {}
    start = time.perf_counter()
    try:
        model, report = fuser.optimize(str(path), validate=False, input_shapes=dict(shapes),
                                       static_shapes=static,
                                       timing=fuser.Timing() if timed else None)
        info["call"] = (f"optimize(validate=False, input_shapes=..., static_shapes={static}"
                        + (", timing=Timing())" if timed else ")"))
        if report.speed is not None:
            info["speed_check"] = report.speed.to_dict()
    except Exception as exc:  # noqa: BLE001 (fuser's failure is a result here)
        info.update(error=first_line(exc),
                    seconds=time.perf_counter() - start)
        return None, info
    info["seconds"] = time.perf_counter() - start
    info["notes"] = [str(n)[:200] for n in getattr(report, "notes", [])][:5]
    return model, info


def run_onnxsim(model: onnx.ModelProto, shapes: Shapes) -> tuple[onnx.ModelProto | None, dict]:
    """onnxsim with ``overwrite_input_shapes``."""
    import onnxsim

    start = time.perf_counter()
    try:
        out, ok = onnxsim.simplify(model, overwrite_input_shapes={k: list(v)
                                                                  for k, v in shapes.items()})
    except Exception as exc:  # noqa: BLE001 (recorded per model)
        return None, {"error": first_line(exc)}
    return out, {"seconds": time.perf_counter() - start, "check": bool(ok)}


def run_onnxslim(model: onnx.ModelProto, shapes: Shapes) -> tuple[onnx.ModelProto | None, dict]:
    """onnxslim with ``input_shapes`` ("name:d0,d1,...")."""
    import onnxslim

    start = time.perf_counter()
    try:
        out = onnxslim.slim(model, input_shapes=[f"{k}:{','.join(map(str, v))}"
                                                 for k, v in shapes.items()])
    except Exception as exc:  # noqa: BLE001 (recorded per model)
        return None, {"error": first_line(exc)}
    return out, {"seconds": time.perf_counter() - start}


def nodes(model: onnx.ModelProto | None) -> int | None:
    return None if model is None else len(model.graph.node)


def count_ops(model: onnx.ModelProto, ops: tuple[str, ...]) -> int:
    return sum(n.op_type in ops for n in model.graph.node)


def _shapes(model: onnx.ModelProto) -> dict[str, list[int]]:
    inferred = onnx.shape_inference.infer_shapes(model)
    out = {}
    for value in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]:
        dims = value.type.tensor_type.shape.dim
        if dims and all(d.HasField("dim_value") for d in dims):
            out[value.name] = [d.dim_value for d in dims]
    for tensor in inferred.graph.initializer:
        out[tensor.name] = list(tensor.dims)
    return out


def macs(model: onnx.ModelProto) -> dict[str, Any]:
    """Multiply-accumulates of Conv, ConvTranspose, MatMul, Gemm and LSTM/GRU from ONNX shape
    inference on a fixed-shape model (give it onnxsim's output: folded Pad/Reshape chains
    have shapes). Nodes whose shapes stay unknown are counted in ``unknown``."""
    shape = _shapes(model)
    total = conv = 0
    unknown: list[str] = []
    for node in model.graph.node:
        op = node.op_type
        if op not in ("Conv", "ConvTranspose", "MatMul", "Gemm", "LSTM", "GRU"):
            continue
        ins = [shape.get(name) for name in node.input]
        out = shape.get(node.output[0]) if node.output else None
        if ins[:2].count(None) or (out is None and op != "LSTM"):
            unknown.append(f"{op} {node.name}")
            continue
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if op == "Conv":
            count = math.prod(out) * math.prod(ins[1][1:])
        elif op == "ConvTranspose":
            count = math.prod(ins[0]) * math.prod(ins[1][1:])
        elif op == "Gemm":
            count = math.prod(out) * ins[0][0 if attrs.get("transA") else 1]
        elif op == "MatMul":
            count = math.prod(out) * ins[0][-1]
        else:  # LSTM / GRU: gates x hidden x (input + hidden) per step and direction
            gates = 4 if op == "LSTM" else 3
            seq, batch, features = ins[0]
            directions, hidden = ins[1][0], attrs["hidden_size"]
            count = directions * seq * batch * gates * hidden * (features + hidden)
        total += count
        conv += count if op in ("Conv", "ConvTranspose") else 0
    return {"macs": total, "conv_share": conv / total if total else None, "unknown": unknown}


def run_model(path_or_model: Path | onnx.ModelProto, feeds: dict[str, np.ndarray],
              run_batch: int, threads: int = 2) -> dict[str, np.ndarray]:
    """The model's outputs on ``feeds`` (leading axis = samples), ``run_batch`` at a time,
    concatenated along axis 0 (onnxruntime, CPU, default graph optimizations)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    source = path_or_model.SerializeToString() if isinstance(path_or_model, onnx.ModelProto) \
        else str(path_or_model)
    session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    count = len(next(iter(feeds.values())))
    chunks: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for start in range(0, count, run_batch):
        part = {k: v[start:start + run_batch] for k, v in feeds.items()}
        for name, value in zip(names, session.run(names, part), strict=True):
            chunks[name].append(value)
    return {n: np.concatenate(v, axis=0) for n, v in chunks.items()}


def speed(original: Path, delivered: onnx.ModelProto, shapes: Shapes, batches: list[int],
          time_budget: float = 10.0) -> dict[str, Any]:
    """The delivered model against the original file at ORT_ENABLE_ALL, CPU, per batch size
    (a symbolic first dim set to it; a fixed one timed once): interleaved rounds until the
    95 % interval is 5 % wide or ``time_budget`` seconds per batch; the error text instead of
    raising."""
    from fuser.runtime import bench, inputs
    from fuser.runtime import speed as speeds

    model = onnx.load(original)
    feeds: dict[int, dict] = {}
    for batch in batches:
        given = {name: (batch, *shape[1:]) for name, shape in shapes.items()}
        sized = inputs.resolve_shapes(model, given, batch)
        batch_feeds = inputs.random_batches(model, sized, 1, 0)[0]
        feeds.setdefault(int(next(iter(batch_feeds.values())).shape[0]), batch_feeds)
    try:
        result = bench.benchmark({speeds.ORIGINAL: model, speeds.DELIVERED: delivered}, feeds,
                                 levels=("all",), provider="cpu", rounds=1000,
                                 time_budget=time_budget, resolve=0.05, progress=False)
    except Exception as exc:  # noqa: BLE001 (recorded per model)
        return {"error": first_line(exc)}
    return {"ratios": [r.to_dict() for r in speeds.ratios(result, "all")],
            "busy": result.busy}

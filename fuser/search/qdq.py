"""INT8 QDQ models from onnxruntime's quantization tool: its calibrators and its QDQ
conventions, not home-made ones.

A quantized layer computes ``y = DQ(Q(x)) * DQ(W_q)`` with per-tensor uint8 activations
``Q(x) = clip(round(x / s_x) + z_x, 0, 255)``, ``DQ(q) = s_x (q - z_x)``, and per-channel int8
weights ``W_q[n] = round(W[n] / s_w[n])``, ``s_w[n] = max |W[n]| / 127`` (63 with
``reduce_range``), bias in int32 at scale ``s_x s_w[n]``. onnxruntime's CPU provider fuses
``DQ -> Conv -> Q`` into ``QLinearConv`` at ORT_ENABLE_ALL, and drops a ``Relu``/``Clip``
whose output Q's zero point already clips (so regions of quantized layers run in uint8
from end to end: one layer quantized alone, between float ones, gains little).

``Quantizer`` calibrates once (``quantize_static``'s calibration cache: MinMax, Entropy or
Percentile ranges of every float tensor on the fitting samples) and then makes the model
with any set of layers kept float (``nodes_to_exclude``), each in about a second.
"""

from __future__ import annotations

import contextlib
import io
import logging
import platform
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper, version_converter

from fuser.errors import FuserError
from fuser.search.bias_shifts import own_shifts
from fuser.search.build import kept
from fuser.search.calibrate import Feeds
from fuser.search.config import CALIBRATIONS
from fuser.search.equalize import equalized

#: The ops whose weights are quantized: the search's int8 candidates.
WEIGHTED = ("Conv", "ConvTranspose", "Gemm", "MatMul")
#: Samples the histogram calibrators (entropy, percentile) see: they keep every activation
#: tensor of every batch until the end (MinMax keeps two numbers per tensor).
HISTOGRAM_SAMPLES = 32
#: Samples the bias correction measures each layer's shift on.
BIAS_SAMPLES = 32
#: Per-channel DequantizeLinear (its ``axis``) needs opset 13.
MIN_OPSET = 13


def reduce_range() -> bool:
    """7-bit weights on x86 CPUs without VNNI, as onnxruntime advises: their u8 x s8 dot
    products saturate int16 intermediates otherwise. Full range elsewhere."""
    if platform.machine().lower() not in ("x86_64", "amd64", "i686", "x86"):
        return False
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return True
    return not any(f in flags for f in ("avx512_vnni", "avx_vnni", "amx_int8"))


def upgraded(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` at opset 13 at least (onnx's version converter); FuserError if it cannot."""
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset >= MIN_OPSET:
        return model
    try:
        return version_converter.convert_version(model, MIN_OPSET)
    except Exception as error:  # noqa: BLE001  (the converter raises bare RuntimeErrors)
        raise FuserError(f"int8 needs opset {MIN_OPSET} (per-channel DequantizeLinear); "
                         f"onnx could not convert the model from opset {opset}: "
                         f"{str(error).splitlines()[0]}") from None


def regions(model: onnx.ModelProto) -> dict[str, list[str]]:
    """Each weighted layer's region: its node and the nodes after it up to the next layers
    (each node goes to the layer its first computed input comes from), by node name.

    A layer kept float keeps its region float: its activations (a hardswish's Add, Clip,
    Mul and Div, a Sigmoid) are where int8 costs most, and a float layer amid quantized
    activations pays both the rounding and the Q/DQ. Nodes before any layer belong to
    none (they stay float)."""
    weights = {t.name for t in model.graph.initializer}
    owner: dict[str, str] = {}  # tensor -> layer
    out: dict[str, list[str]] = {}
    for node in model.graph.node:
        if node.op_type in WEIGHTED and len(node.input) > 1 and node.input[1] in weights:
            layer = node.name
            out[layer] = []
        else:
            layer = next((owner[t] for t in node.input if t in owner), None)
        if layer is None:
            continue
        out[layer].append(node.name)
        owner.update((t, layer) for t in node.output)
    return out


def _named(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` with a unique name on every node (the quantizer excludes nodes by name)."""
    seen: set[str] = set()
    for k, node in enumerate(model.graph.node):
        if not node.name or node.name in seen:
            node.name = f"{node.op_type}_{k}"
            while node.name in seen:
                node.name += "_"
        seen.add(node.name)
    return model


def _unshared(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` with its own copy of every weight or bias a layer shares with another node
    (basic-pitch's tf2onnx export runs one CQT kernel and one zero bias through 18 Convs).
    onnxruntime's quantizer refuses a shared weight ("shared mode is not supported for
    weight"), and a shared bias cannot be: its int32 scale is each layer's ``s_x s_w``."""
    weights = {t.name: t for t in model.graph.initializer}
    readers: dict[str, int] = {}
    for node in model.graph.node:
        for name in node.input:
            readers[name] = readers.get(name, 0) + 1
    taken = set(weights) | {t for n in model.graph.node for t in n.output}
    for k, node in enumerate(model.graph.node):
        if node.op_type not in WEIGHTED or len(node.input) < 2 or node.input[1] not in weights:
            continue
        for slot in range(1, len(node.input)):
            name = node.input[slot]
            if name not in weights or readers[name] < 2:
                continue
            copy = f"{name}_{k}"
            while copy in taken:
                copy += "_"
            taken.add(copy)
            model.graph.initializer.append(weights[name])
            model.graph.initializer[-1].name = copy
            node.input[slot] = copy
            readers[name] -= 1
    return model


def first_batches(batches: Sequence[Feeds], count: int) -> list[Feeds]:
    """The first batches holding ``count`` samples (one batch at least)."""
    out, taken = [], 0
    for feeds in batches:
        if out and taken >= count:
            break
        out.append(feeds)
        taken += len(next(iter(feeds.values())))
    return out


class _Reader:
    """onnxruntime's ``CalibrationDataReader`` over the fitting batches."""

    def __init__(self, batches: Sequence[Feeds]) -> None:
        self._batches = iter(batches)

    def get_next(self) -> dict | None:
        return dict(next(self._batches, None) or {}) or None

    def __iter__(self) -> Iterator[dict]:
        return iter(self.get_next, None)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """onnxruntime's quantizer warns on the root logger ("consider pre-processing"), and its
    percentile calibrator prints to stdout."""
    logging.disable(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logging.disable(logging.NOTSET)


@contextlib.contextmanager
def _failing_as_fuser_errors() -> Iterator[None]:
    """onnxruntime's quantizer raises bare ValueErrors and RuntimeErrors on graphs it does not
    support ("Quantization parameter shared mode is not supported for weight yet"): one line,
    as a FuserError the int8 search turns into a note."""
    try:
        yield
    except (ValueError, RuntimeError, KeyError, AssertionError, TypeError) as error:
        line = next((x for x in str(error).splitlines() if x.strip()), type(error).__name__)
        raise FuserError(f"onnxruntime's quantizer failed: {line}") from error


class Quantizer:
    """A model's QDQ INT8 versions, from ranges calibrated once on ``batches``."""

    def __init__(self, model: onnx.ModelProto, batches: Sequence[Feeds],
                 method: str = "minmax", reduce: bool | None = None,
                 correct_bias: bool = False, equalize: bool = False) -> None:
        if method not in CALIBRATIONS:
            raise FuserError(f"calibration method must be one of {', '.join(CALIBRATIONS)}, "
                             f"not {method!r}")
        converted = upgraded(model)
        self.model = _unshared(_named(converted if converted is not model else kept(model)))
        self.equalized = 0  # Conv pairs equalized (``equalize.equalized``)
        if equalize:
            self.model, self.equalized = equalized(self.model)
        self.method = method
        self.reduce_range = reduce_range() if reduce is None else reduce
        self._dir = tempfile.TemporaryDirectory(prefix="fuser-int8-")
        self._cache = Path(self._dir.name) / "ranges.json"
        self._path = Path(self._dir.name) / "model.onnx"  # the quantizer edits a proto it is given
        onnx.save(self.model, self._path, save_as_external_data=self.model.ByteSize() > 1 << 30)
        self.regions = regions(self.model)
        self.layers = list(self.regions)
        self._orphans = {n.name for n in self.model.graph.node} - {
            name for region in self.regions.values() for name in region}
        calibration = batches if method == "minmax" else first_batches(batches, HISTOGRAM_SAMPLES)
        # (histograms keep whole tensors: their memory grows with the samples)
        self._quantize(set(self._orphans), _Reader(calibration))  # fills the range cache
        self.shifts: dict[str, tuple[str, np.ndarray]] = {}  # layer -> (bias, corrected)
        if correct_bias:
            self._correct(first_batches(batches, BIAS_SAMPLES))

    def quantized(self, keep_float: set[str] = frozenset()) -> onnx.ModelProto:
        """The model with every layer quantized but those named in ``keep_float`` (each
        with its region); the quantized layers' biases corrected (``_correct``)."""
        floats = set(self._orphans)
        for layer in keep_float:
            floats.update(self.regions[layer])
        if self.shifts:
            model = kept(self.model)
            weights = {t.name: t for t in model.graph.initializer}
            for layer, (bias, corrected) in self.shifts.items():
                if layer not in keep_float:
                    weights[bias].CopyFrom(numpy_helper.from_array(corrected, bias))
            onnx.save(model, self._path, save_as_external_data=model.ByteSize() > 1 << 30)
        return self._quantize(floats, None)

    def _correct(self, batches: Sequence[Feeds]) -> None:
        """Empirical bias correction (Nagel et al. 2019; NNCF's fast bias correction): a
        quantized layer's output is shifted on average, ``E[y_int8 - y]`` per output channel,
        by its weights' rounding and its input's; its float bias minus that shift, quantized
        again, cancels it. Shifts from the model with every layer in int8, on the first
        ``BIAS_SAMPLES`` samples; a bias another node reads too is left alone."""
        whole = self._quantize(set(self._orphans), None)
        readers: dict[str, int] = {}
        for node in self.model.graph.node:
            for name in node.input:
                readers[name] = readers.get(name, 0) + 1
        weights = {t.name: t for t in self.model.graph.initializer}
        nodes = {n.name: n for n in self.model.graph.node}
        biased = {layer: nodes[layer].input[2] for layer in self.layers
                  if len(nodes[layer].input) > 2 and nodes[layer].input[2] in weights
                  and readers[nodes[layer].input[2]] == 1}
        for layer, shift in own_shifts(self.model, whole, list(biased), batches).items():
            bias = numpy_helper.to_array(weights[biased[layer]])
            if shift.shape == bias.shape:
                self.shifts[layer] = (biased[layer], (bias - shift).astype(bias.dtype))

    def _quantize(self, keep_float: set[str], reader: _Reader | None) -> onnx.ModelProto:
        from onnxruntime.quantization import (
            CalibrationMethod,
            QuantFormat,
            QuantType,
            quantize_static,
        )

        method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                  "percentile": CalibrationMethod.Percentile}[self.method]
        out = Path(self._dir.name) / "quantized.onnx"
        with _quiet(), _failing_as_fuser_errors():
            quantize_static(self._path, out, reader, quant_format=QuantFormat.QDQ,
                            per_channel=True, reduce_range=self.reduce_range,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            nodes_to_exclude=sorted(keep_float), calibrate_method=method,
                            calibration_cache_path=self._cache)
        return onnx.load(out)

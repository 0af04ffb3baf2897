"""Folded weights computed when the graph is exported, straight into the output model.

Folding ``s * (W x + b) + t`` needs ``W' = s W``, scaled along W's output channels. Computed
in the pass, every folded weight would be held in memory beside the original until the
export copies it into the output protobuf: for a model whose weights are nearly all folded
(a ResNet) that is the weights three times over and, on machines where fresh memory is slow
to touch, most of the optimizer's time. A ``ScaledWeight`` instead records the source
values and the factor; ``graph_export.to_model`` asks it for its bytes (``raw_bytes``): it reads
the source once, scales it block by block into one bytes object (float64, rounded once to
the weight's dtype, each block scanned for denormals and flushed while it is in cache), and
that object becomes the output tensor's raw data without a further copy. Each folded
weight then exists once, for the time it takes to copy it into the output.

A second fold on the same node (``Conv -> BN -> Mul``) multiplies the factors (``s2 (s1 W)
= (s2 s1) W``, rounded once). A pass that reads the values (a low-rank pass, say) gets them
computed, as for any lazily loaded constant; a later fold reads ``exact()``, the float64
values before rounding, so that it rounds once too. The denormals flushed are counted in the
stats of the pass that made the weight, once, when the weight is first computed.
"""

from __future__ import annotations

import collections
import io
import math
import sys

import numpy as np
import onnx
from onnx_graphsurgeon.ir.tensor import LazyValues

from fuser.ir.statistics import values_view
from fuser.passes.denormals import flush_denormals_in_place, mark_flushed

#: Elements per block when a weight is scaled (256 KB of float32, cache-sized).
BLOCK = 1 << 16


class ScaledWeight(LazyValues):
    """``source * factor``, with ``source`` viewed as ``layout`` (the output channels on
    one axis) and ``factor`` (float64) broadcast against that view; computed on demand.

    ``stats`` is the pass's counter, where the denormals flushed are added once.
    """

    def __init__(self, source: object, factor: np.ndarray, layout: tuple[int, ...],
                 stats: collections.Counter) -> None:
        factor = np.asarray(factor, dtype=np.float64)
        self.dtype = np.dtype(source.dtype)
        if isinstance(source, ScaledWeight):  # s2 (s1 W) = (s2 s1) W: one rounding
            if source.layout == layout:
                factor, source = factor * source.factor, source.source
            else:  # another view of the channels: from its float64 values, still one rounding
                source = source.exact()
        self.source, self.factor, self.layout, self.stats = source, factor, layout, stats
        self.shape = tuple(source.shape)
        self.nbytes = math.prod(self.shape) * self.dtype.itemsize
        # What code that expects gs's LazyValues reads: a data-less tensor of this type.
        self.tensor = onnx.TensorProto(data_type=onnx.helper.np_dtype_to_tensor_dtype(
            self.dtype), dims=self.shape)
        self._counted = False

    def raw_bytes(self) -> bytes:
        """The scaled weight's values as ONNX raw data (little-endian, C order)."""
        source = np.ascontiguousarray(values_view(self.source)).reshape(self.layout)
        factor = self.factor
        rows = source.shape[0]
        step = max(1, BLOCK // max(1, source[:1].size))
        out = _bytes_writer(self.nbytes)
        flushed = 0
        with out.getbuffer() as buffer:  # the result computed in place, block by block
            target = np.frombuffer(buffer, dtype=self.dtype).reshape(source.shape)
            block = target[:0]
            for i in range(0, rows, step):
                block = target[i:i + step]
                np.multiply(source[i:i + step],
                            factor[i:i + step] if factor.shape[0] > 1 else factor,
                            out=block, dtype=np.float64, casting="same_kind")
                flushed += flush_denormals_in_place(block)
            del target, block  # no view of the buffer stays: getvalue() need not copy
        if not self._counted:
            self._counted = True
            if flushed:
                self.stats["denormals flushed"] += flushed
        if sys.byteorder == "big":  # ONNX raw data is little-endian
            return np.frombuffer(out.getvalue(), dtype=self.dtype).byteswap().tobytes()
        return out.getvalue()

    def exact(self) -> np.ndarray:
        """The values before they are rounded to the weight's dtype: ``source * factor`` in
        float64, read-only (what a later fold of this weight starts from: ``match.unrounded``)."""
        values = np.array(values_view(self.source), dtype=np.float64).reshape(self.layout)
        values *= self.factor
        values.flags.writeable = False
        return values.reshape(self.shape)

    def load(self) -> np.ndarray:
        """The values as a read-only array (a view of ``raw_bytes``)."""
        dtype = self.dtype.newbyteorder("<")  # raw data's order, whatever the machine's
        return mark_flushed(np.frombuffer(self.raw_bytes(), dtype=dtype).reshape(self.shape))

    def __str__(self) -> str:
        return f"ScaledWeight (shape={self.shape}, dtype={self.dtype})"


def _bytes_writer(nbytes: int) -> io.BytesIO:
    """A stream over ``nbytes`` bytes allocated at once, positioned at its start. Written in
    full, its ``getvalue()`` hands over the bytes it holds without a copy (CPython's BytesIO
    does when no view of its buffer is open; elsewhere it copies, which is still correct)."""
    out = io.BytesIO()
    if nbytes:
        out.seek(nbytes - 1)
        out.write(b"\0")
        out.seek(0)
    return out

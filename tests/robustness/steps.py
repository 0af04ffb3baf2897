"""The steps of a fuzz graph: one method per op pattern, each appending nodes to the builder
and returning the new value with its shape (see ``graphs.py``)."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import strategies as st

from tests.robustness.builder import (
    BATCH,
    MAX_CHANNELS,
    MAX_ELEMENTS,
    Builder,
    Value,
    broadcast,
    numel,
)


class Steps(Builder):
    """A builder that knows the ops of the default pipeline's patterns."""

    def relu(self, x: Value) -> Value:
        return self.emit("Relu", [x.name], x.shape)

    def identity(self, x: Value) -> Value:
        return self.emit("Identity", [x.name], x.shape)

    def dropout(self, x: Value) -> Value:
        inputs, attrs = [x.name], {}
        if self.opset < 12:
            if self.maybe(50):
                attrs["ratio"] = 0.5
        elif self.maybe(50):
            inputs.append("" if self.maybe(20) else self.constant(
                "ratio", np.array(0.5, dtype=np.float32)))
            if self.maybe(50):
                inputs.append(self.constant("training", np.array(False)))
        mask = (self.fresh("mask"),) if self.maybe(30) else ()  # declared, never read
        return self.emit("Dropout", inputs, x.shape, extra_outputs=mask, **attrs)

    def conv(self, x: Value) -> Value:
        channels, spatial = x.shape[1], x.shape[2:]
        group = self.choice([g for g in range(1, channels + 1) if channels % g == 0])
        out_channels = group * self.integer(1, MAX_CHANNELS // group)
        kernel = [self.integer(1, min(3, d)) for d in spatial]
        dilation = [self.integer(1, 2) if 2 * (k - 1) + 1 <= d else 1
                    for k, d in zip(kernel, spatial, strict=True)]
        stride = [self.integer(1, 2) for _ in spatial]
        auto_pad = self.choice(["NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER"])
        if auto_pad.startswith("SAME") and any(d > 1 for d in dilation):
            # onnxruntime 1.31 refuses to run it (valid ONNX): "Dilation not supported for
            # AutoPadType::SAME_UPPER or AutoPadType::SAME_LOWER".
            auto_pad = "NOTSET"
        attrs: dict = {"strides": stride, "dilations": dilation}
        if self.maybe(80):
            attrs["kernel_shape"] = kernel
        if group > 1 or self.maybe(20):
            attrs["group"] = group
        extent = [dil * (k - 1) + 1 for dil, k in zip(dilation, kernel, strict=True)]
        if auto_pad == "NOTSET":
            begin = [self.integer(0, k - 1) for k in kernel]
            end = [self.integer(0, k - 1) for k in kernel]
            if any(begin + end) or self.maybe(30):
                attrs["pads"] = begin + end
            out = [(d + b + e - ext) // s + 1
                   for d, b, e, ext, s in zip(spatial, begin, end, extent, stride, strict=True)]
        else:
            attrs["auto_pad"] = auto_pad
            out = [(d - ext) // s + 1 if auto_pad == "VALID" else -(-d // s)
                   for d, ext, s in zip(spatial, extent, stride, strict=True)]
        w_shape = (out_channels, channels // group, *kernel)
        inputs = [x.name, self.weight(w_shape, math.prod(w_shape[1:]))]
        if self.maybe(50):
            inputs.append(self.vector("B", (out_channels,), "shift"))
        elif self.maybe(10):
            inputs.append("")  # the optional bias omitted by name
        described = f"<g={group} k={kernel} s={stride} d={dilation} " \
                    f"{attrs.get('pads', auto_pad if auto_pad != 'NOTSET' else '')}>"
        return self.emit("Conv", inputs, (x.shape[0], out_channels, *out), described, **attrs)

    def conv_transpose(self, x: Value) -> Value:
        channels, spatial = x.shape[1], x.shape[2:]
        group = self.choice([g for g in range(1, channels + 1) if channels % g == 0])
        out_channels = group * self.integer(1, MAX_CHANNELS // group)
        kernel = [self.integer(1, 3) for _ in spatial]
        stride = [self.integer(1, 2) for _ in spatial]
        dilation = [self.integer(1, 2) for _ in spatial]
        output_padding = [self.integer(0, s - 1) for s in stride]
        full = [s * (d - 1) + op + dil * (k - 1) + 1 for s, d, op, dil, k in
                zip(stride, spatial, output_padding, dilation, kernel, strict=True)]
        begin = [self.integer(0, min(k - 1, f - 1)) for k, f in zip(kernel, full, strict=True)]
        end = [self.integer(0, min(k - 1, f - 1 - b))
               for k, f, b in zip(kernel, full, begin, strict=True)]
        attrs: dict = {"strides": stride, "dilations": dilation, "kernel_shape": kernel}
        if any(begin + end):
            attrs["pads"] = begin + end
        if any(output_padding):
            attrs["output_padding"] = output_padding
        if group > 1:
            attrs["group"] = group
        out = [f - b - e for f, b, e in zip(full, begin, end, strict=True)]
        w_shape = (channels, out_channels // group, *kernel)
        fan_in = channels // group * math.prod(kernel)
        inputs = [x.name, self.weight(w_shape, fan_in)]
        if self.maybe(50):
            inputs.append(self.vector("B", (out_channels,), "shift"))
        elif self.maybe(10):
            inputs.append("")  # the optional bias omitted by name
        described = f"<g={group} k={kernel} s={stride} d={dilation} pads={begin + end} " \
                    f"out_pad={output_padding}>"
        return self.emit("ConvTranspose", inputs, (x.shape[0], out_channels, *out), described,
                         **attrs)

    def batchnorm(self, x: Value) -> Value:
        c = (x.shape[1],)
        key = ("BatchNormalization", c)
        if key in self.weights and self.maybe(20):  # parameters shared with an earlier BN
            params = self.weights[key]
        else:
            mean = self.graph_input("mean", c) if self.maybe(4) else self.vector("mean", c,
                                                                                 "shift")
            params = [self.vector("gamma", c, "scale"), self.vector("beta", c, "shift"), mean,
                      self.vector("var", c, "positive")]
            self.weights.setdefault(key, params)
        inputs = [x.name, *params]
        attrs: dict = {}
        if self.maybe(50):
            attrs["epsilon"] = self.choice([1e-3, 1e-1, 1e-5])
        if self.opset >= 14 and self.maybe(20):
            attrs["training_mode"] = 0
        return self.emit("BatchNormalization", inputs, x.shape, **attrs)

    def affine(self, x: Value, form: str | None = None) -> Value:
        """Mul/Add/Sub/Div by a constant of a drawn broadcastable shape: per channel (the
        foldable case), scalar, on the last axis, on other axes, one that grows the rank, or
        one that broadcasts a size-1 dimension of x (the output grows there)."""
        op = self.choice(["Mul", "Add", "Sub", "Div"])
        rank = len(x.shape)
        if form is None and x.shape[1] == 1 and self.maybe(50):
            form = "broadcast"  # a 1-channel x: the case fold-into-next-conv once got wrong
        form = form or self.choice(["channel", "channel-full", "scalar", "one", "last",
                                    "random", "broadcast"]
                                   + ([] if x.shape[0] == BATCH else ["grow"]))
        if form == "broadcast":
            shape = self._broadcasting(x)
        elif form == "channel":
            shape = (x.shape[1],) + (1,) * (rank - 2)
        elif form == "channel-full":
            shape = (1, x.shape[1]) + (1,) * (rank - 2)
        elif form == "scalar":
            shape = ()
        elif form == "one":
            shape = (1,)
        elif form == "last":
            shape = (x.shape[-1],)
        elif form == "random":
            shape = (1,) + tuple(d if self.maybe(50) else 1 for d in x.shape[1:])
            shape = shape[self.integer(0, rank - 1):]
        else:  # looks per channel, but one rank more than x: the output grows a dim
            shape = (1, 1, x.shape[1]) + (1,) * (rank - 2)
        shape = tuple(int(d) for d in shape)
        c = self.vector("c", shape, "scale" if op in ("Mul", "Div") else "shift")
        first = op != "Div" and self.maybe(30)  # c / x is not affine, and x may be 0
        out = broadcast(x.shape, shape)
        return self.emit(op, [c, x.name] if first else [x.name, c], out, f"<{form} {shape}>")

    def _broadcasting(self, x: Value) -> tuple:
        """A constant with k > 1 on an axis where x has size 1 (its channels, say): the output
        is larger than x there (``x[N,1,6,6] * k[1,4,1,1]`` has 4 channels). Falls back to a
        per-channel constant when x has no such axis or the output would be too large."""
        rank = len(x.shape)
        ones = [axis for axis in range(1, rank) if x.shape[axis] == 1]
        most = MAX_ELEMENTS // max(numel(x.shape), 1)
        if not ones or most < 2:
            return (1, x.shape[1]) + (1,) * (rank - 2)
        axis = 1 if 1 in ones and self.maybe(60) else ones[self.integer(0, len(ones) - 1)]
        shape = [1] * rank
        shape[axis] = self.integer(2, min(MAX_CHANNELS, most))
        return tuple(shape[self.integer(0, axis):])  # leading 1s may be left out

    def binary(self, x: Value) -> Value:
        op = "Mul" if self.binary_muls < 2 and self.maybe(30) else "Add"
        self.binary_muls += op == "Mul"
        same = [v for v in self.values if v.shape == x.shape]
        other = same[self.integer(0, len(same) - 1)] if same else x
        inputs = [x.name, other.name] if self.maybe(50) else [other.name, x.name]
        return self.emit(op, inputs, x.shape)

    def concat(self, x: Value) -> Value:
        rank = len(x.shape)
        axis = 1 if rank == 2 or not self.maybe(20) else self.integer(2, rank - 1)
        fits = [v for v in self.values if len(v.shape) == rank and all(
            a == b for i, (a, b) in enumerate(zip(v.shape, x.shape, strict=True)) if i != axis)]
        parts = [x] + [fits[self.integer(0, len(fits) - 1)] for _ in range(self.integer(1, 2))]
        shape = list(x.shape)
        shape[axis] = sum(p.shape[axis] for p in parts)
        written = axis - rank if self.opset >= 11 and self.maybe(20) else axis
        return self.emit("Concat", [p.name for p in parts], tuple(shape), f"<axis={written}>",
                         axis=written)

    def transpose(self, x: Value) -> Value:
        rank = len(x.shape)
        fixed = x.shape[0] == BATCH  # a symbolic batch stays first (convs need static dims)
        if not fixed and self.maybe(15):
            perm, attrs = list(reversed(range(rank))), {}
        else:
            rest = self.draw(st.permutations(list(range(1 if fixed else 0, rank))))
            perm = ([0] if fixed else []) + list(rest)
            attrs = {"perm": perm}
        y = self.emit("Transpose", [x.name], tuple(x.shape[p] for p in perm), f"<{perm}>",
                      **attrs)
        if self.maybe(40):  # its inverse, or another permutation right after it
            inverse = [perm.index(i) for i in range(rank)]
            second = inverse if self.maybe(60) or fixed else list(
                self.draw(st.permutations(list(range(rank)))))
            y = self.emit("Transpose", [y.name], tuple(y.shape[p] for p in second),
                          f"<{second}>", perm=second)
        return y

    def reshape(self, x: Value) -> Value:
        total = numel(x.shape[1:])
        dims = []
        remaining = total
        for _ in range(self.integer(1, 3) - 1):
            factor = self.choice([d for d in range(1, remaining + 1) if remaining % d == 0])
            dims.append(factor)
            remaining //= factor
        dims.append(remaining)
        written = list(dims)
        if self.maybe(30):
            written[self.integer(0, len(dims) - 1)] = -1
        first = 0 if x.shape[0] == BATCH or self.maybe(50) else x.shape[0]
        shape_name = self.ints("shape", [first, *written])
        return self.emit("Reshape", [x.name, shape_name], (x.shape[0], *dims), f"<{written}>")

    def flatten(self, x: Value) -> Value:
        return self.emit("Flatten", [x.name], (x.shape[0], numel(x.shape[1:])), axis=1)

    def gemm(self, x: Value) -> Value:
        trans_a = x.shape[0] != BATCH and self.maybe(15)  # A^T: x's first axis is reduced
        features, rows = (x.shape[0], x.shape[1]) if trans_a else (x.shape[1], x.shape[0])
        out = self.integer(1, MAX_CHANNELS)
        attrs: dict = {"transA": 1} if trans_a else {}
        trans_b = self.maybe(50)
        if trans_b:
            attrs["transB"] = 1
        if self.maybe(30):
            attrs["alpha"] = self.choice([0.5, 2.0])
        w_shape = (out, features) if trans_b else (features, out)
        inputs = [x.name, self.weight(w_shape, features)]
        if self.opset < 11 or self.maybe(60):  # C is optional since opset 11
            forms = [(out,), (1, out), ()] + ([(rows, out)] if rows != BATCH else [])
            inputs.append(self.vector("C", self.choice(forms), "shift"))
            if self.maybe(30):
                attrs["beta"] = self.choice([0.5, 2.0])
        elif self.maybe(10):
            inputs.append("")  # C omitted by name
        return self.emit("Gemm", inputs, (rows, out),
                         f"<transA={int(trans_a)} transB={int(trans_b)}>", **attrs)

    def matmul(self, x: Value) -> Value:
        if len(x.shape) == 2 and x.shape[0] != BATCH and self.maybe(15):
            # the constant on the left: W (out, N) @ x (N, F); not foldable
            rows = self.integer(1, MAX_CHANNELS)
            w = self.weight((rows, x.shape[0]), x.shape[0], share=False)
            return self.emit("MatMul", [w, x.name], (rows, x.shape[1]), "<constant left>")
        features = x.shape[-1]
        out = self.integer(1, MAX_CHANNELS)
        w = self.weight((features, out), features)
        y = self.emit("MatMul", [x.name, w], (*x.shape[:-1], out))
        if self.maybe(50):
            b = self.vector("bias", (out,), "shift")
            y = self.emit("Add", [y.name, b] if self.maybe(70) else [b, y.name], y.shape)
        return y

    def pad(self, x: Value) -> Value:
        rank = len(x.shape)
        mode = self.choice(["constant", "constant", "reflect", "edge"])
        pads = [0] * (2 * rank)
        for axis in range(2, rank):
            for side in (0, rank):
                limit = x.shape[axis] - 1 if mode == "reflect" else 2
                pads[side + axis] = self.integer(0, min(2, limit))
        if mode == "constant" and self.maybe(10):
            pads[1] = 1  # pads the channel axis: must not fold into a Conv
        if mode != "reflect" and self.maybe(10) and x.shape[-1] > 2:
            # crops. Not with reflect: onnxruntime bounds reflect pads by the cropped size
            # ("pre-pad (2) exceeds maximum allowed (1)"), which the spec does not define.
            pads[2 * rank - 1] = -1
        attrs = {"mode": mode} if mode != "constant" or self.maybe(20) else {}
        value = self.choice([0.0, 0.5]) if mode == "constant" and self.maybe(40) else None
        if self.opset < 11:  # pads and value are attributes
            inputs = [x.name]
            attrs["pads"] = pads
            if value is not None:
                attrs["value"] = value
        else:
            inputs = [x.name, self.ints("pads", pads)]
            if value is not None:
                inputs.append(self.constant("pad_value", np.array(value, dtype=np.float32)))
        shape = tuple(d + pads[i] + pads[rank + i] if i >= 1 else d
                      for i, d in enumerate(x.shape))
        y = self.emit("Pad", inputs, shape, f"<{mode} {pads} value={value}>", **attrs)
        return self.conv(y) if self.maybe(60) else y


"""Matching helpers and the safety checks that every rewrite needs, in one place (the
weights' values and dtypes, BN in inference mode, sole consumers); denormals and graph
surgery have modules of their own.

A matcher raises ``Skip(reason)`` to reject a candidate; the pass counts the reason. Reasons
name the node (``BatchNormalization 'bn3'``) so that a report can say exactly what was left
alone and why.
"""

from __future__ import annotations

import weakref

import numpy as np
import onnx_graphsurgeon as gs

from fuser.ir.statistics import constant_view
from fuser.passes.denormals import flush_denormals_in_place, mark_flushed

#: numpy dtypes whose weights passes may rewrite (bfloat16 and float8 have no numpy dtype).
FLOAT_DTYPES = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))


class Skip(Exception):
    """Raised by a matcher: the candidate is left alone for the reason in the message."""


class NotCandidate(Skip):
    """The node is not the pattern at all (a pass may leave such nodes out of its counts)."""


def describe(node: gs.Node) -> str:
    """``Conv 'name'``, or ``Conv -> 'output'`` for an unnamed node."""
    if node.name:
        return f"{node.op} '{node.name}'"
    out = node.outputs[0].name if node.outputs else "?"
    return f"{node.op} -> '{out}'"


def producer(tensor: gs.Tensor) -> gs.Node | None:
    """The node that computes ``tensor`` (None for graph inputs and constants)."""
    return tensor.inputs[0] if len(tensor.inputs) == 1 else None


def made_by(tensor: gs.Tensor, op: str) -> gs.Node | None:
    """The node of the standard domain and op ``op`` that computes ``tensor``, or None."""
    node = producer(tensor)
    return node if node is not None and node.op == op and node.domain in ("", "ai.onnx", None) \
        else None


def require_sole_consumer(tensor: gs.Tensor, graph: gs.Graph) -> None:
    """The tensor feeds exactly one node and is not a graph output (else the rewrite would
    change a value that someone else still reads)."""
    if tensor in graph.outputs:
        raise Skip(f"tensor '{tensor.name}' is a graph output")
    if len(tensor.outputs) != 1:
        raise Skip(f"tensor '{tensor.name}' has {len(tensor.outputs)} consumers")


def float_constant(tensor: gs.Tensor, what: str, node: gs.Node) -> gs.Constant:
    """``tensor`` when it is a constant of a float dtype passes may rewrite (nothing is read).

    Raises Skip when the tensor is computed, a graph input, or not a supported float dtype.
    """
    if not isinstance(tensor, gs.Constant):
        raise Skip(f"{what} '{tensor.name}' of {describe(node)} is not a constant")
    dtype = tensor.dtype
    if not isinstance(dtype, np.dtype | type) or np.dtype(dtype) not in FLOAT_DTYPES:
        raise Skip(f"{what} '{tensor.name}' of {describe(node)} has dtype "
                   f"{_dtype_name(dtype)}, not float16/32/64")
    return tensor


def constant(tensor: gs.Tensor, what: str, node: gs.Node, *,
             float64: bool = True) -> np.ndarray:
    """The values of a constant floating-point input, as float64 (``float64=False``: in their
    own dtype, without a copy where possible).

    Raises Skip when the tensor is computed, a graph input, or not a supported float dtype.
    """
    float_constant(tensor, what, node)
    if not float64:
        return constant_view(tensor)  # read-only; gs's cached copy of the values is not made
    # Not ``tensor.values``: onnx-graphsurgeon would cache a copy of the original weight in a
    # constant that the rewrite then drops, and tensors sit in reference cycles, so the copies
    # of every folded weight lived until the next garbage collection (+1x the model's size).
    return np.asarray(constant_view(tensor), dtype=np.float64)


def _dtype_name(dtype: object) -> str:
    if isinstance(dtype, int):
        import onnx

        return onnx.TensorProto.DataType.Name(dtype).lower()
    return np.dtype(dtype).name  # type: ignore[arg-type]


def weight_dtype(tensor: gs.Constant) -> np.dtype:
    return np.dtype(tensor.dtype)


def refuse_shared_weight(node: gs.Node) -> None:
    """Skip when the node's weight is also read by another node (used with cloning off)."""
    weight = node.inputs[1]
    if len(weight.outputs) > 1:
        raise Skip(f"weight '{weight.name}' of {describe(node)} is shared with "
                   f"{len(weight.outputs) - 1} other node(s)")


def batchnorm_affine(bn: gs.Node) -> tuple[np.ndarray, np.ndarray]:
    """BatchNormalization in inference mode as ``y = scale * x + shift`` per channel.

    ``scale = gamma / sqrt(var + eps)``, ``shift = beta - mean * scale`` (float64).
    Raises Skip for training mode, used optional outputs, non-constant parameters or
    ``spatial=0`` (opset 6-8: parameters per activation; the folds are per channel).
    """
    if bn.attrs.get("training_mode", 0):
        raise Skip(f"{describe(bn)} has training_mode=1")
    if len(bn.outputs) > 1 and any(t.outputs or t.name for t in bn.outputs[1:]):
        raise Skip(f"{describe(bn)} has optional outputs (running mean/var)")
    if bn.attrs.get("is_test", 1) == 0:  # opset <= 6 spelling of training mode
        raise Skip(f"{describe(bn)} has is_test=0 (training mode)")
    if bn.attrs.get("spatial", 1) == 0:  # opset 6-8: statistics per activation, not channel
        raise Skip(f"{describe(bn)} has spatial=0 (per-activation statistics, not per "
                   "channel)")
    if len(bn.inputs) != 5:
        raise Skip(f"{describe(bn)} has {len(bn.inputs)} inputs, not 5")
    gamma, beta, mean, var = (
        constant(t, what, bn)
        for t, what in zip(bn.inputs[1:], ("scale", "bias", "mean", "var"), strict=True))
    eps = float(bn.attrs.get("epsilon", 1e-5))
    scale = gamma / np.sqrt(var + eps)
    return scale, beta - mean * scale


class Names:
    """Fresh tensor names derived from the node being rewritten, never colliding."""

    def __init__(self, graph: gs.Graph) -> None:
        self.taken = set(graph.tensors().keys())
        self.taken.update(n.name for n in graph.nodes)
        for subgraph in graph.subgraphs(recursive=True):  # no name may shadow another scope's
            self.taken.update(subgraph.tensors().keys())
            self.taken.update(n.name for n in subgraph.nodes)

    def fresh(self, base: str) -> str:
        name, i = base, 1
        while name in self.taken:
            name, i = f"{base}_{i}", i + 1
        self.taken.add(name)
        return name


def cast_back(values: np.ndarray, dtype: np.dtype, *,
              keep_exact: bool = False) -> tuple[np.ndarray, int]:
    """Cast float64 results to the weight dtype, flushing denormals to zero (float32 and
    float64: ``FLUSHED_DTYPES``).

    Returns the array and how many denormals were flushed (weights with denormals run many
    times slower on CPUs: onnxruntime issues #6865 and #7448). With ``keep_exact`` (a fold's
    bias, a small vector) the float64 ``values`` are remembered for ``unrounded``: a later fold
    into the same node starts from them, so a chain of folds rounds once.
    """
    out = np.ascontiguousarray(values.astype(dtype))
    flushed = flush_denormals_in_place(out)
    if keep_exact:
        exact = np.array(values, dtype=np.float64)
        exact.flags.writeable = False
        key = id(out)
        _EXACT[key] = (weakref.ref(out, lambda _, key=key: _EXACT.pop(key, None)), exact)
    return mark_flushed(out), flushed


#: ``id -> (weak reference, float64 values)`` of the arrays ``cast_back`` rounded with
#: ``keep_exact``.
_EXACT: dict[int, tuple[weakref.ref, np.ndarray]] = {}


def unrounded(tensor: gs.Tensor, what: str, node: gs.Node) -> np.ndarray:
    """``constant``'s float64 values, except for a constant that a fold computed: then the
    float64 values it was rounded from (a scaled weight's ``exact()``, a bias kept by
    ``cast_back``). Folding ``s2 (s1 W + b1) + t2`` from these rounds W and the bias once,
    to what folding the original model in float64 gives; the rounded values would add one
    rounding per fold (for float16 weights, an error of 2^-11 each time).
    """
    float_constant(tensor, what, node)
    values = tensor._values
    exact = getattr(values, "exact", None)  # a weight computed on export (``_scaled``)
    if callable(exact):
        return exact()
    kept = _EXACT.get(id(values))
    if kept is not None and kept[0]() is values:
        return kept[1]
    return constant(tensor, what, node)


def tensor_bytes(tensor: gs.Tensor) -> int | None:
    """Bytes the tensor holds, from its shape and dtype; None when either is unknown."""
    shape, dtype = tensor.shape, tensor.dtype
    if shape is None or dtype is None or \
            not all(isinstance(d, int | np.integer) and d >= 0 for d in shape):
        return None
    try:
        return int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    except TypeError:  # a dtype numpy lacks (bfloat16, float8 as onnx enums)
        return None

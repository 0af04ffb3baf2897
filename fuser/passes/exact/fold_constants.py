"""Fold what a model computes from constants alone (exporters' shape arithmetic) into constants.

    y = op(c1, ..., ck)            every input a constant        ->  y is the constant op(c1..ck)
    s = Shape<start, end>(x)       the dims it reads are known   ->  s is those dims
    n = Size(x)                    every dim of x is known        ->  n = prod(dims of x)
    g = Gather(Shape(x), i)        the dims it picks are known    ->  g is those dims
    g = Slice(Shape(x), a, b, 0)   the dims it picks are known    ->  g is those dims

``torch.onnx.export`` computes the amounts of ``F.pad`` with ConstantOfShape/Concat/Slice/Cast/
Reshape, ``x.view(x.size(0), -1)`` with Shape/Gather/Unsqueeze/Concat, and tf2onnx and
paddle2onnx do the like: until those fold, the Pad before a Conv cannot fold into it and the
shapes after it are unknown (no MACs, no low-rank). "Known" dims are the ones the graph's
tensors carry: the model's own, or with ``--static-shapes`` the fixed input shapes. A dim that
stays symbolic (a batch) is never folded into a value, so the model still runs at any value of
it; ``optimize`` reports the Shape nodes that only a fixed shape would fold.

Evaluator: onnx-graphsurgeon's ``Graph.fold_constants``, which runs the constant subgraph on
onnxruntime (already a dependency), so a folded value is what the model computes at run time,
for every op onnxruntime knows. Its own shape folding (``fold_shapes=True``) is not used: it
also runs a "cast elision" that turns ``Cast(int -> float) -> Mul/Div/... -> Cast(-> int)`` into
integer arithmetic by casting the float constants to int (a scale of 1.5 becomes 1: a wrong
shape; see tests/passes/test_fold_constants.py). The few lines of shape folding above are done
here instead. onnxscript's folder works on onnx-ir, not on the gs graph every other pass uses;
``onnx.reference`` evaluates in Python numpy, slower and with kernels that may differ from the
runtime's.

Never folded (a skip reason names the node): random ops (RandomNormal, Bernoulli, ...);
control flow (If, Loop, Scan: their bodies are left alone); ops of other domains; a node whose
output would hold more than ``max_bytes`` *and* more than its inputs (a ConstantOfShape, Expand,
Tile or Range that materializes a large array stays and is computed at run time; one whose size
is unknown until its arguments fold waits for the next sweep, never evaluated blind); a node
computing a graph output (ONNX wants graph outputs computed). No fold keeps a tensor over
``HARD_MAX_BYTES`` and the graph's largest constant (onnx-graphsurgeon's ``size_threshold``).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import onnx
import onnx_graphsurgeon as gs
from onnx_graphsurgeon.logger import G_LOGGER

from fuser import ir as graph_io
from fuser.ir import reannotate
from fuser.ir.export import skeleton_of
from fuser.ir.materialize import created_shape
from fuser.ir.proto import first_line
from fuser.ortlog import expected_errors_silenced
from fuser.passes.base import Pass, PassResult, register
from fuser.passes.match import describe, tensor_bytes

#: Ops whose value is random (or may be): folding would freeze one draw.
RANDOM_OPS = frozenset({"RandomNormal", "RandomUniform", "RandomNormalLike",
                        "RandomUniformLike", "Multinomial", "Bernoulli", "Dropout"})
#: Control flow: their bodies are subgraphs, left alone.
CONTROL_FLOW_OPS = frozenset({"If", "Loop", "Scan"})
#: A folded tensor larger than this (and than the node's inputs) is left to run time.
DEFAULT_MAX_BYTES = 1 << 20
#: No fold keeps more than this and than the largest constant (a backstop to ``max_bytes``).
HARD_MAX_BYTES = 1 << 26
#: Ops whose output size their argument values fix (unknown until those are constants).
SIZED_BY_ARGUMENTS = frozenset({"ConstantOfShape", "Expand", "Tile", "Range"})


def _known(dims: object) -> list[int] | None:
    """The dims as ints when every one is known, else None."""
    if dims is None:
        return None
    dims = list(dims)
    if all(isinstance(d, int | np.integer) and d >= 0 for d in dims):
        return [int(d) for d in dims]
    return None


def _shape_range(node: gs.Node, rank: int) -> slice:
    """The axes ``Shape<start, end>`` reads (opset 15 clamps both to [0, rank])."""
    start, end = node.attrs.get("start", 0), node.attrs.get("end", rank)
    start = min(max(start + rank if start < 0 else start, 0), rank)
    end = min(max(end + rank if end < 0 else end, 0), rank)
    return slice(start, end)


def _shape_value(tensor: gs.Tensor) -> np.ndarray | None:
    """The value of ``tensor`` when it is Shape/Size of known dims, or Gather/Slice of the
    known dims of a Shape; None otherwise."""
    node = tensor.inputs[0] if len(tensor.inputs) == 1 else None
    if node is None or node.domain not in ("", "ai.onnx", None) or not node.inputs:
        return None
    source = node.inputs[0]
    if node.op == "Size":
        dims = _known(source.shape)
        return None if dims is None else np.array(math.prod(dims), dtype=np.int64)
    if node.op == "Shape":
        if source.shape is None:
            return None
        picked = _known(list(source.shape)[_shape_range(node, len(source.shape))])
        return None if picked is None else np.array(picked, dtype=np.int64)
    if node.op not in ("Gather", "Slice"):
        return None
    shape_node = source.inputs[0] if len(source.inputs) == 1 else None
    if shape_node is None or shape_node.op != "Shape" or not shape_node.inputs \
            or shape_node.inputs[0].shape is None:
        return None
    x = shape_node.inputs[0]
    dims = list(x.shape)[_shape_range(shape_node, len(x.shape))]
    picked = _pick(node, dims)
    return None if picked is None else np.asarray(picked, dtype=np.int64)


def _pick(node: gs.Node, dims: list) -> object | None:
    """What a Gather (axis 0) or Slice (axis 0) with constant arguments selects of ``dims``."""
    if any(not isinstance(t, gs.Constant) for t in node.inputs[1:] if not t.is_empty()):
        return None
    if node.op == "Gather":
        index = np.asarray(node.inputs[1].values)
        if node.attrs.get("axis", 0) != 0 or index.dtype.kind not in "iu":
            return None
        if np.any(index < -len(dims)) or np.any(index >= len(dims)):
            return None
        chosen = [dims[int(i)] for i in index.reshape(-1)]
        return None if _known(chosen) is None else np.array(chosen).reshape(index.shape)
    if len(node.inputs) < 3:  # Slice before opset 10 keeps its arguments in attributes
        return None
    args = [np.asarray(t.values).reshape(-1) if not t.is_empty() else None
            for t in node.inputs[1:5]] + [None] * (5 - len(node.inputs))
    starts, ends, axes, steps = args[:4]
    if len(starts) != 1 or (axes is not None and int(axes[0]) not in (0, -1)):
        return None
    step = 1 if steps is None else int(steps[0])
    chosen = dims[int(starts[0]):int(ends[0]):step] if step else None
    return chosen if chosen is not None and _known(chosen) is not None else None


def _materialized_bytes(node: gs.Node) -> int | None:
    """Bytes a ConstantOfShape/Expand/Tile/Range creates, from its constant arguments (its
    output may not be annotated yet); other ops: from the annotated output. None: unknown."""
    with contextlib.suppress(TypeError, ValueError, AttributeError, ArithmeticError):
        size = _created_bytes(node)
        if size is not None:
            return size
    sizes = [_exact_bytes(t) for t in node.outputs]
    return None if any(s is None for s in sizes) else sum(sizes)


def _created_bytes(node: gs.Node) -> int | None:
    """``_materialized_bytes`` of the ops that create a tensor from argument values
    (``ir.materialize.created_shape``; Expand and Tile of a constant only)."""
    data = node.inputs[0] if node.inputs else None
    by_data = node.op in ("Expand", "Tile")  # the data's dims count, never its values
    if node.op not in SIZED_BY_ARGUMENTS or (by_data and not isinstance(data, gs.Constant)):
        return None
    args = [np.asarray(t.values).reshape(-1).tolist()
            if isinstance(t, gs.Constant) and not (by_data and i == 0) else None
            for i, t in enumerate(node.inputs)]
    shape = created_shape(node.op, list(getattr(data, "shape", None) or []), args)
    if shape is None:
        return None
    if node.op == "ConstantOfShape":
        value = node.attrs.get("value")
        itemsize = np.dtype(value.dtype).itemsize if isinstance(value, gs.Constant) else 4
    else:
        itemsize = np.dtype(data.dtype).itemsize
    return math.prod(shape) * itemsize


def _exact_bytes(tensor: gs.Tensor) -> int | None:
    """``tensor_bytes`` in Python integers (a product of huge dims overflows int64)."""
    return None if tensor_bytes(tensor) is None else \
        math.prod(int(d) for d in tensor.shape) * np.dtype(tensor.dtype).itemsize


@contextlib.contextmanager
def _quiet_evaluator() -> Iterator[None]:
    """onnx-graphsurgeon logs to stdout and its onnxruntime sessions warn on stderr about
    their own graph optimizations; fuser reports through its own skip reasons."""
    severity = G_LOGGER.severity
    G_LOGGER.severity = G_LOGGER.CRITICAL
    try:
        with expected_errors_silenced():
            yield
    finally:
        G_LOGGER.severity = severity


@register
class FoldConstants(Pass):
    """Evaluate nodes whose inputs are all constant, and Shape/Size of known dims."""

    name = "fold-constants"

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.max_bytes = max_bytes

    def run(self, graph: gs.Graph) -> PassResult:
        result = PassResult()
        before = len(graph.nodes)
        shapes = self._fold_shapes(graph)
        evaluated = self._has_foldable(graph)
        if evaluated:
            self._evaluate(graph, result)
        if evaluated or shapes:
            graph.cleanup(remove_unused_graph_inputs=False)
        removed = before - len(graph.nodes)
        if removed > 0:
            reannotate(graph)  # the shapes after a folded Reshape target or Pad are known now
            result.rewrites = removed
            result.notes.append(f"{removed} node(s) folded into constants "
                                f"({shapes} of them read known dims)")
        return result

    @staticmethod
    def _fold_shapes(graph: gs.Graph) -> int:
        """Shape/Size/Gather/Slice of known dims become constants; returns how many."""
        folded = 0
        for node in list(graph.nodes):
            if node.op not in ("Shape", "Size", "Gather", "Slice") or len(node.outputs) != 1:
                continue
            out = node.outputs[0]
            if out in graph.outputs or not out.outputs:
                continue
            value = _shape_value(out)
            if value is None:
                continue
            out.to_constant(value)
            out.inputs.clear()
            folded += 1
        return folded

    @staticmethod
    def _has_foldable(graph: gs.Graph) -> bool:
        return any(all(isinstance(t, gs.Constant) or t.is_empty() for t in node.inputs)
                   for node in graph.nodes if node.op != "Constant")

    def _exclude(self, graph: gs.Graph, result: PassResult):
        # gs calls this on the nodes of its copy of the graph: compare by name.
        outputs = {t.name for t in graph.outputs}
        seen: set[str] = set()

        def skip(node: gs.Node, reason: str) -> bool:
            if reason not in seen:
                seen.add(reason)
                result.skip(reason)
            return True

        def exclude(node: gs.Node) -> bool:
            if node.op in RANDOM_OPS:
                return skip(node, f"{describe(node)} is random: its value is never folded")
            if node.op in CONTROL_FLOW_OPS:
                return skip(node, f"{describe(node)} is control flow: left alone with its "
                                  "subgraphs")
            if node.domain not in ("", "ai.onnx", None):
                return skip(node, f"{describe(node)} is of domain '{node.domain}'")
            if any(t.name in outputs for t in node.outputs):
                return skip(node, f"{describe(node)} computes a graph output")
            size = _materialized_bytes(node)
            if size is None and node.op in SIZED_BY_ARGUMENTS:
                return skip(node, f"{describe(node)} creates a tensor whose size is not known "
                                  "before its arguments fold: left for the next sweep")
            inputs = sum(tensor_bytes(t) or 0 for t in node.inputs if isinstance(t, gs.Constant))
            if size is not None and size > self.max_bytes and size > inputs:
                return skip(node, f"{describe(node)} would materialize {size:,} bytes "
                                  f"(more than {self.max_bytes:,}): computed at run time")
            return False

        return exclude

    def _evaluate(self, graph: gs.Graph, result: PassResult) -> None:
        """Fold every foldable node with onnx-graphsurgeon's evaluator (onnxruntime)."""
        graph.toposort()
        largest = max((_exact_bytes(t) or 0 for t in graph.tensors().values()
                       if isinstance(t, gs.Constant)), default=0)
        options = {"fold_shapes": False, "recurse_subgraphs": False, "flatten_subgraphs": False,
                   "recurse_functions": False, "should_exclude_node": self._exclude(graph, result),
                   "size_threshold": max(HARD_MAX_BYTES, self.max_bytes, largest)}
        with _quiet_evaluator():
            try:
                graph.fold_constants(partitioning=None, error_ok=False, **options)
            except Exception as exc:  # noqa: BLE001 - onnxruntime refused part of it
                result.skip(f"onnxruntime could not evaluate every constant subgraph "
                            f"({first_line(exc)}): the rest folded node by node")
                graph.fold_constants(partitioning="recursive", error_ok=True, **options)


def folded_at(model: onnx.ModelProto, input_shapes: Mapping[str, Sequence[int]]
              ) -> onnx.ModelProto:
    """A copy of ``model`` with ``input_shapes`` written in and everything they determine
    folded: what the statistics count when the delivered model keeps symbolic dims (its
    shape arithmetic can hide the shapes of the layers behind it from shape inference)."""
    graph = graph_io.to_graph(model)
    graph_io.annotate_fixed(graph, input_shapes, graph_io.infer_shapes(model, input_shapes))
    fold = FoldConstants()
    for _ in range(8):  # each fold can make more shapes known, and so more foldable
        if not fold(graph).rewrites:
            break
        graph.cleanup(remove_unused_graph_inputs=False).toposort()
    return skeleton_of(graph)

"""Test helpers: build small models from ONNX text, run one pass, compare on onnxruntime."""

from __future__ import annotations

import collections

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from fuser import ir as graph_io
from fuser.passes import get_pass
from fuser.passes.base import PassResult
from fuser.runtime import sessions as runtime

HEADER = '< ir_version: 8, opset_import: ["" : 17] >'

#: Timing flags that keep a CLI run short (the timing is not what such a test checks).
FAST_TIMING = ["--rounds", "5", "--warmup", "1", "--time-budget", "0.3", "--threads", "1"]

CONV_BN = """
    g (float[N,3,8,8] x) => (float[N,4,8,8] y) {
        c = Conv<pads=[1,1,1,1]>(x, W)
        y = BatchNormalization(c, s, b, mean, var)
    }"""


def conv_bn_model(rng: np.random.Generator) -> onnx.ModelProto:
    """A Conv with its BatchNormalization (``CONV_BN``), seeded weights."""
    return make_model(CONV_BN, rng, W=(4, 3, 3, 3), s=(4,), b=(4,), mean=(4,), var=(4,))


def make_model(text: str, rng: np.random.Generator, dtype=np.float32, header: str = HEADER,
               **initializers: tuple[int, ...] | np.ndarray) -> onnx.ModelProto:
    """Parse ONNX text and attach seeded initializers (a shape draws normal values).

    BatchNormalization variances are drawn positive by naming them ``var*``.
    """
    model = onnx.parser.parse_model(f"{header}\n{text}")
    for name, spec in initializers.items():
        if isinstance(spec, np.ndarray):
            values = spec
        elif name.startswith("var"):
            values = rng.uniform(0.5, 1.5, spec).astype(dtype)
        else:
            values = rng.standard_normal(spec).astype(dtype)
        model.graph.initializer.append(onnx.numpy_helper.from_array(values, name))
    onnx.checker.check_model(model, full_check=True)
    return model


def apply(model: onnx.ModelProto, name: str, **options) -> tuple[onnx.ModelProto, PassResult]:
    """Run one pass (plus cleanup) the way the manager does; return the new model."""
    graph = graph_io.to_graph(model)
    graph_io.annotate(graph, graph_io.infer_shapes(model))
    result = get_pass(name, **options)(graph)
    graph.cleanup(remove_unused_graph_inputs=False).toposort()
    return graph_io.to_model(graph, template=model), result


def ops(model: onnx.ModelProto) -> collections.Counter:
    return collections.Counter(n.op_type for n in model.graph.node)


def assert_same_outputs(reference: onnx.ModelProto, candidate: onnx.ModelProto,
                        rng: np.random.Generator, *, rtol: float = 1e-5, atol: float = 1e-5,
                        batch: int = 2) -> None:
    """Both models give the same outputs on seeded inputs (onnxruntime, optimizations off)."""
    feeds = runtime.random_feeds(reference, rng, dynamic=batch)
    want = runtime.run(reference, feeds)
    got = runtime.run(candidate, feeds)
    assert want.keys() == got.keys()
    for name in want:
        assert got[name].shape == want[name].shape, name
        np.testing.assert_allclose(got[name].astype(np.float64), want[name].astype(np.float64),
                                   rtol=rtol, atol=atol, err_msg=f"output {name!r}")


def check(model: onnx.ModelProto) -> None:
    onnx.checker.check_model(model, full_check=True)


def second_run_rewrites(model: onnx.ModelProto, name: str, **options) -> int:
    """Rewrites made by running the pass again (idempotence: must be 0)."""
    return apply(model, name, **options)[1].rewrites


def constant_names(model: onnx.ModelProto) -> set[str]:
    return {t.name for t in model.graph.initializer}


__all__ = ["HEADER", "apply", "assert_same_outputs", "check", "constant_names", "gs",
           "make_model", "ops", "second_run_rewrites"]


def assert_rewrites(name: str, model: onnx.ModelProto, rng: np.random.Generator,
                    expect_ops: dict[str, int], *, rewrites: int = 1, rtol: float = 1e-4,
                    atol: float = 1e-5, **options) -> tuple[onnx.ModelProto, PassResult]:
    """Pass ``name`` rewrites ``rewrites`` times, leaves ``expect_ops``, keeps the outputs,
    gives a valid model, and finds nothing more to do on a second run."""
    out, result = apply(model, name, **options)
    assert result.rewrites == rewrites, result.skipped
    assert ops(out) == expect_ops
    check(out)
    assert_same_outputs(model, out, rng, rtol=rtol, atol=atol)
    assert second_run_rewrites(out, name, **options) == 0
    return out, result


def assert_rewrites_cleanly(name: str, model: onnx.ModelProto, rng: np.random.Generator,
                            expect_ops: dict[str, int], rewrites: int = 1
                            ) -> tuple[onnx.ModelProto, PassResult]:
    """``assert_rewrites`` with the same tolerances as ``assert_same_outputs``, and no
    candidate skipped."""
    out, result = assert_rewrites(name, model, rng, expect_ops, rewrites=rewrites, rtol=1e-5)
    assert not result.skipped
    return out, result


def assert_skipped(name: str, model: onnx.ModelProto, reason: str,
                   **options) -> tuple[onnx.ModelProto, PassResult]:
    """Pass ``name`` rewrites nothing, says why (one reason, once), and changes no op."""
    out, result = apply(model, name, **options)
    assert result.rewrites == 0
    assert dict(result.skipped) == {reason: 1}
    assert ops(out) == ops(model)
    return out, result

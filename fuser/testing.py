"""pytest helpers for teams that prefer tests to ``onnx-fuser check``.

    from fuser.testing import assert_equivalent, assert_no_regression

    def test_export_matches_the_last_release():
        assert_equivalent("release.onnx", "candidate.onnx", atol=1e-5, rtol=1e-4)

    def test_no_regression():
        assert_no_regression("model.onnx", "baselines/model.json")

Failures raise ``AssertionError`` with the same messages as ``onnx-fuser check``
("BatchNormalization nodes 0 -> 3", "output 'logits' max abs diff 3.2e-03 > 1e-04").
"""

from __future__ import annotations

from pathlib import Path

from fuser import ir as graph_io
from fuser.regression import Subject, compare, read_baseline, subject_for
from fuser.runtime.validate import validate


def assert_equivalent(reference: graph_io.ModelLike, candidate: graph_io.ModelLike, *,
                      atol: float = 1e-5, rtol: float = 1e-4, batch: int = 1,
                      input_shapes: dict | None = None, inputs: str | None = None) -> None:
    """Both models give the same outputs (onnxruntime, optimizations off)."""
    result = validate(reference, candidate, atol=atol, rtol=rtol, batch=batch,
                      input_shapes=input_shapes, inputs=inputs)
    if not result.passed:
        raise AssertionError("; ".join(result.failures))


def assert_no_regression(model: graph_io.ModelLike, baseline: str | Path, *,
                         optimize: bool = False) -> None:
    """``model`` passes every check of the baseline written by ``onnx-fuser check --update``."""
    if isinstance(model, str | Path):
        subject = subject_for(str(model), optimize=optimize)
    else:
        subject = Subject(graph_io.load(model))
    spec, golden = read_baseline(Path(baseline))
    failed = [c.message for c in compare(subject, spec, golden) if not c.passed]
    if failed:
        raise AssertionError("; ".join(failed))

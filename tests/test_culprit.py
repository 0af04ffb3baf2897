"""Bisection names a planted bad pass; rollback drops it and keeps the good passes."""

from __future__ import annotations

import math

import numpy as np
import onnx_graphsurgeon as gs
import pytest

import fuser
from fuser import ir as graph_io
from fuser.passes.base import Pass, PassResult
from tests.helpers import assert_same_outputs, make_model

MODEL = """
    g (float[N,4,6,6] x) => (float[N,8,6,6] y) {
        i = Identity(x)
        c = Conv<pads=[1,1,1,1]>(i, W)
        b = BatchNormalization(c, s, b0, mean, var)
        r = Relu(b)
        m = Mul(r, k)
        y = Conv(m, W2)
    }"""


class Perturb(Pass):
    """A broken pass: scales the first Conv's weight by 1.01 (a wrong fold, once)."""

    name = "perturb"

    def run(self, graph: gs.Graph) -> PassResult:
        result = PassResult()
        conv = next(n for n in graph.nodes if n.op == "Conv")
        if conv.name != "perturbed":
            conv.name = "perturbed"
            conv.inputs[1] = gs.Constant("W_perturbed", conv.inputs[1].values * 1.01)
            result.rewrote("scaled a weight")
        return result


@pytest.fixture
def model(rng):
    return make_model(MODEL, rng, W=(8, 4, 3, 3), s=(8,), b0=(8,), mean=(8,), var=(8,),
                      k=(8, 1, 1), W2=(8, 8, 1, 1))


def pipeline_with_perturb():
    return ["eliminate-identity", "fold-batchnorm", Perturb(), "fold-into-next-conv"]


def test_bisection_names_the_planted_bad_pass(model):
    _, report = fuser.optimize(model, pipeline_with_perturb())
    assert not report.passed
    (culprit,) = report.culprits
    assert culprit["name"] == "perturb" and culprit["sweep"] == 1
    assert culprit["application"] == 4  # inline-constants, eliminate-identity, fold, perturb
    assert 1 <= culprit["probes"] <= math.ceil(math.log2(len(report.passes)))
    assert report.rolled_back == []


def test_rollback_drops_only_the_bad_pass(model, rng):
    optimized, report = fuser.optimize(model, pipeline_with_perturb(), on_failure="rollback")
    assert report.passed and report.rolled_back == ["perturb"]
    assert "perturb" not in {r.name for r in report.passes}
    assert report.rewrites("fold-batchnorm") == 1 and report.rewrites("fold-into-next-conv") == 1
    assert graph_io.op_histogram(optimized) == {"Conv": 2, "Relu": 1}
    assert_same_outputs(model, optimized, rng, rtol=1e-4, atol=1e-4)


def test_on_failure_none_only_reports(model):
    _, report = fuser.optimize(model, pipeline_with_perturb(), on_failure="none")
    assert not report.passed and report.culprits == []


def test_a_good_pipeline_needs_no_culprit(model):
    _, report = fuser.optimize(model)
    assert report.passed and report.culprits == [] and report.validation.batches == 3


def test_bisection_with_a_late_culprit_in_a_later_sweep(model):
    """A pass that only breaks things in sweep 2 is found there."""

    class LateBreaker(Pass):
        """Harmless in sweep 1 (renames the Relu), breaks the outputs in sweep 2."""

        name = "late-breaker"

        def run(self, graph):
            result = PassResult()
            relu = next(n for n in graph.nodes if n.op in ("Relu", "Sigmoid"))
            if relu.name == "marked":
                relu.op, relu.name = "Sigmoid", "broken"
                result.rewrote("relu became sigmoid")
            elif relu.name != "broken":
                relu.name = "marked"
                result.rewrote("renamed")
            return result

    _, report = fuser.optimize(model, ["fold-batchnorm", LateBreaker()])
    assert not report.passed
    assert report.culprits[0]["name"] == "late-breaker" and report.culprits[0]["sweep"] == 2
    assert np.isfinite(report.validation.outputs[0].max_abs)

"""PassManager and optimize(): order, fixed point, checks, dumps, records, errors."""

from __future__ import annotations

import onnx_graphsurgeon as gs
import pytest

import fuser
from fuser import ir as graph_io
from fuser.errors import FuserError, PassError
from fuser.passes import DEFAULT_PIPELINE, get_pass
from fuser.passes.base import Pass, PassResult
from fuser.passes.manager import PassManager
from tests.helpers import assert_same_outputs, check, make_model

MODEL = """
    g (float[N,4,6,6] x) => (float[N,8,4,4] y) {
        i = Identity(x)
        c = Conv(i, W)
        b = BatchNormalization(c, s, b0, mean, var)
        r = Relu(b)
        z = Mul(r, k)
        y = Conv(z, W2)
    }"""


@pytest.fixture
def model(rng):
    return make_model(MODEL, rng, W=(8, 4, 1, 1), s=(8,), b0=(8,), mean=(8,), var=(8,),
                      k=(8, 1, 1), W2=(8, 8, 3, 3))


def test_default_pipeline_reaches_a_fixed_point(model, rng):
    out, report = fuser.optimize(model, check_each=True)
    assert graph_io.op_histogram(out) == {"Conv": 2, "Relu": 1}
    assert report.rewrites("eliminate-identity") == 1
    assert report.rewrites("fold-batchnorm") == 1
    assert report.rewrites("fold-into-next-conv") == 1
    assert {r.sweep for r in report.passes} == {1, 2}  # the second sweep changes nothing
    assert all(r.rewrites == 0 for r in report.passes if r.sweep == 2)
    check(out)
    assert_same_outputs(model, out, rng, rtol=1e-4, atol=1e-4)


def test_report_records_every_pass_with_nodes_and_time(model):
    _, report = fuser.optimize(model)
    first_sweep = [r for r in report.passes if r.sweep == 1]
    assert [r.name for r in first_sweep] == list(DEFAULT_PIPELINE)
    fold = next(r for r in first_sweep if r.name == "fold-batchnorm")
    assert fold.nodes_before == fold.nodes_after + 1 and fold.seconds >= 0
    assert fold.notes == ["BatchNormalization -> 'b' into Conv -> 'c'"]
    assert report.before.ops["BatchNormalization"] == 1
    assert "BatchNormalization" not in report.after.ops
    assert report.before.macs == report.after.macs > 0
    data = report.to_dict()
    assert data["schema"] == 2 and data["summary"]["fold-batchnorm"]["rewrites"] == 1
    assert "onnx" in data["libraries"]


def test_the_input_model_is_not_modified(model):
    before = model.SerializeToString()
    fuser.optimize(model)
    assert model.SerializeToString() == before


def test_passes_and_skip_choose_the_pipeline(model):
    _, report = fuser.optimize(model, ["fold-batchnorm", "fold-affine"], skip=["fold-affine"])
    assert report.pipeline == ["inline-constants", "fold-batchnorm"]


def test_unknown_pass_name_is_a_user_error(model):
    with pytest.raises(FuserError, match="unknown pass 'fold-everything'"):
        fuser.optimize(model, ["fold-everything"])


def test_max_steps_bounds_the_sweeps(model):
    _, report = fuser.optimize(model, max_steps=1)
    assert {r.sweep for r in report.passes} == {1}


class BreakGraph(Pass):
    """Plants an invalid node (a Conv without weight)."""

    name = "break-graph"

    def run(self, graph: gs.Graph) -> PassResult:
        node = next(n for n in graph.nodes if n.op == "Relu")
        node.op = "Conv"
        result = PassResult()
        result.rewrote("broke it")
        return result


class Crash(Pass):
    name = "crash"

    def run(self, graph: gs.Graph) -> PassResult:
        raise ZeroDivisionError("boom")


def test_check_each_names_the_pass_that_broke_the_graph(model):
    with pytest.raises(PassError, match=r"graph invalid after pass 'break-graph' in sweep 1 "
                                        r"\(after inline-constants, fold-batchnorm\)"):
        fuser.optimize(model, [get_pass("fold-batchnorm"), BreakGraph()], check_each=True)


def test_a_crashing_pass_is_named(model):
    with pytest.raises(PassError, match=r"pass 'crash' failed in sweep 1 .*ZeroDivisionError"):
        fuser.optimize(model, [Crash()])


def test_a_pass_must_return_a_pass_result(model):
    class Wrong(Pass):
        name = "wrong"

        def run(self, graph):
            return 3

    with pytest.raises(PassError, match="returned int, not PassResult"):
        fuser.optimize(model, [Wrong()])


def test_dump_dir_holds_the_model_after_each_changing_pass(model, tmp_path):
    fuser.optimize(model, dump_dir=tmp_path)
    dumps = sorted(p.name for p in tmp_path.iterdir())
    changed = ("eliminate-identity", "fold-batchnorm", "fold-into-next-conv")
    assert dumps == [f"1-{DEFAULT_PIPELINE.index(name):02d}-{name}.onnx" for name in changed]
    check(graph_io.load(tmp_path / dumps[-1]))


def test_manager_refuses_zero_steps():
    with pytest.raises(ValueError):
        PassManager([], max_steps=0)


class CountCalls(Pass):
    """Rewrites nothing; counts how often it really runs and leaves a skip reason."""

    name = "count-calls"

    def __init__(self) -> None:
        self.calls = 0

    def run(self, graph: gs.Graph) -> PassResult:
        self.calls += 1
        result = PassResult()
        result.skip("nothing to do here")
        return result


def _records(model, passes):
    graph = graph_io.to_graph(model)
    return PassManager(passes, max_steps=4).run(graph), graph


def test_a_pass_that_found_nothing_is_not_rerun_on_an_unchanged_graph(model, rng):
    counter = CountCalls()
    records, graph = _records(model, [get_pass("eliminate-identity"), counter])
    # sweep 1: the Identity goes, the counter runs; sweep 2: eliminate-identity finds nothing,
    # and nothing changed since the counter's run, so its record is repeated, not re-run.
    assert [(r.name, r.sweep, r.rewrites) for r in records] == [
        ("eliminate-identity", 1, 1), ("count-calls", 1, 0),
        ("eliminate-identity", 2, 0), ("count-calls", 2, 0)]
    assert counter.calls == 1
    assert records[3].skipped == records[1].skipped == {"nothing to do here": 1}
    assert records[3].skipped is not records[1].skipped and records[3].seconds == 0.0
    out = graph_io.to_model(graph, template=model)
    assert graph_io.op_histogram(out) == {"Conv": 2, "BatchNormalization": 1, "Relu": 1,
                                          "Mul": 1}
    check(out)
    assert_same_outputs(model, out, rng)


def test_a_pass_reruns_after_another_pass_changed_the_graph(model):
    counter = CountCalls()
    records, _ = _records(model, [counter, get_pass("eliminate-identity")])
    assert [(r.name, r.sweep, r.rewrites) for r in records] == [
        ("count-calls", 1, 0), ("eliminate-identity", 1, 1),
        ("count-calls", 2, 0), ("eliminate-identity", 2, 0)]
    assert counter.calls == 2  # the Identity removal came after its first run

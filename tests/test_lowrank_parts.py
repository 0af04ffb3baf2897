"""The parts of the sensitivity-based low-rank search (issue 15, items 4-6): cutting the
network, the forms and their aligned ranks, each option's measured effect, the allocation
and back-off, incremental builds, and the latency table's time budget."""

from __future__ import annotations

import time

import numpy as np
import onnx
import pytest

from fuser import ir as graph_io
from fuser.passes.lowrank.forms import aligned, form, searched
from fuser.passes.lowrank.forms import svd as svd_form
from fuser.runtime import sessions as runtime
from fuser.runtime.runners import Progress
from fuser.search import choose, cut, sensitivity
from fuser.search.build import Builder, layer_errors, outputs
from fuser.search.forms import Effect, LayerData, Option
from fuser.search.metric import Judgement, clopper_pearson, resolve
from fuser.search.plan import candidate_layers, make_plan
from tests.helpers import check, make_model
from tests.test_lowrank_search import PlantedTable

RESIDUAL = """
    g (float[N,8,6,6] x) => (float[N,8,6,6] y, float[N,8,6,6] side) {
        a = Conv<kernel_shape=[3,3], pads=[1,1,1,1]>(x, W1)
        r = Relu(a)
        b = Conv<kernel_shape=[3,3], pads=[1,1,1,1]>(r, W2)
        y = Add(b, x)
        side = Relu(x)
    }"""


def _batches(rng, count=4, size=8, channels=8):
    return [{"x": rng.standard_normal((size, channels, 6, 6)).astype(np.float32)}
            for _ in range(count)]


# ---------------------------------------------------------------------------- cut


def test_the_part_from_given_upstream_tensors_gives_the_whole_models_outputs(rng):
    model = make_model(RESIDUAL, rng, W1=(8, 8, 3, 3), W2=(8, 8, 3, 3))
    feeds = _batches(rng, 1)[0]
    assert cut.upstream_inputs(model, "b") == ["r", "x"]  # the skip connection's x too
    upstream = runtime.run(cut.prefix(model, ["r"]), feeds)
    part = cut.prefix(model, ["y"], {"r": np.float32})
    assert [n.op_type for n in part.graph.node] == ["Conv", "Add"]  # from r on
    assert [i.name for i in part.graph.input] == ["x", "r"]
    got = runtime.run(part, {"r": upstream["r"], "x": feeds["x"]})
    np.testing.assert_allclose(got["y"], runtime.run(model, feeds)["y"], rtol=1e-5, atol=1e-5)


def test_the_prefix_holds_only_what_the_asked_tensors_need(rng):
    model = make_model(RESIDUAL, rng, W1=(8, 8, 3, 3), W2=(8, 8, 3, 3))
    part = cut.prefix(model, ["r"])
    assert [n.op_type for n in part.graph.node] == ["Conv", "Relu"]
    assert [t.name for t in part.graph.initializer] == ["W1"]
    feeds = _batches(rng, 1)[0]
    want = runtime.run(graph_io.with_outputs(model, ["r"]), feeds)["r"]
    np.testing.assert_array_equal(runtime.run(part, feeds)["r"], want)


def test_cutting_at_a_tensor_no_node_computes_is_a_key_error(rng):
    model = make_model(RESIDUAL, rng, W1=(8, 8, 3, 3), W2=(8, 8, 3, 3))
    with pytest.raises(KeyError):
        cut.tail(model, "no_such_tensor", {})


# ---------------------------------------------------------------------------- forms


@pytest.mark.parametrize("rank, want", [(1, 1), (7, 7), (8, 8), (15, 8), (31, 24), (32, 32),
                                        (47, 32), (100, 96)])
def test_ranks_are_aligned_to_channel_blocks(rank, want):
    assert aligned(rank) == want


def test_each_form_is_offered_where_it_can_pay_and_at_most_its_macs_share(rng):
    model = make_model("""
        g (float[N,64,8,8] x) => (float[N,64,8,8] y) {
            a = Conv<kernel_shape=[3,3], pads=[1,1,1,1]>(x, W1)
            y = Conv<kernel_shape=[1,1]>(a, W2)
        }""", rng, W1=(64, 64, 3, 3), W2=(64, 64, 1, 1))
    wide, pointwise = candidate_layers(model)
    assert [f.name for f in searched(wide)] == ["channel", "input", "tucker2", "spatial"]
    assert [f.name for f in searched(pointwise)] == ["channel"]  # two 1 x 1s whichever side
    for shape in searched(wide):
        for fraction in (0.15, 0.3, 0.5):
            rank = shape.rank_at(wide, fraction)
            assert form(shape.name).macs(wide, rank) <= fraction * wide.macs()
            for r in (rank if isinstance(rank, tuple) else (rank,)):
                assert r % 8 == 0
    assert form("channel").rank_at(pointwise, 0.001) is None  # not even rank 1 fits



def test_a_gemm_with_many_more_outputs_than_inputs_is_fitted_on_its_input_side(
        rng, monkeypatch):
    # an OCR head: 8210 characters from 1024 features would need an 8210 x 8210 eigh
    monkeypatch.setattr(svd_form, "WIDE_OUTPUT", 40)
    model = make_model("""
        g (float[N,12] x) => (float[N,48] y, float[N,12] z) {
            y = Gemm<transB=1>(x, W)
            z = Gemm<transB=1>(x, V)
        }""", rng, W=(48, 12), V=(12, 12))
    wide, square = candidate_layers(model)
    x = rng.standard_normal((12, 200))
    calls = []
    monkeypatch.setattr(svd_form.factorize, "asymmetric", lambda *a: calls.append("asym"))
    for layer in (wide, square):
        y = layer.weight @ x
        got = form("svd").fit(layer, 4, LayerData(y, y, x), "asymmetric")
        if layer is wide:
            want = svd_form.factorize.whitened_svd(layer.weight, x, 4)
            for a, b in zip(got.weights, want.weights, strict=True):
                np.testing.assert_allclose(a, b)
    assert calls == ["asym"]  # the 12 x 12 layer is still fitted to its responses

# ---------------------------------------------------------------------------- sensitivity


def _planned(rng, subspace: int | None = None):
    """Two convs; with ``subspace`` the inputs of the second live in that many channels."""
    model = make_model("""
        g (float[N,16,6,6] x) => (float[N,16,6,6] y) {
            a = Conv<kernel_shape=[3,3], pads=[1,1,1,1]>(x, W1)
            y = Conv<kernel_shape=[3,3], pads=[1,1,1,1]>(a, W2)
        }""", rng, W1=(16, 16, 3, 3), W2=(16, 16, 3, 3))
    if subspace:  # the first conv's filters span ``subspace`` directions only
        w1 = onnx.numpy_helper.to_array(model.graph.initializer[0])
        basis = rng.standard_normal((16, subspace))
        mixed = np.einsum("ns,scij->ncij", basis, w1[:subspace]).astype(np.float32)
        model.graph.initializer[0].CopyFrom(onnx.numpy_helper.from_array(mixed, "W1"))
    batches = _batches(rng, 4, 8, 16)
    table = PlantedTable("-")
    plan = make_plan(model, batches[:2], table, None, 16, 0)
    return model, batches, plan


def _ordered(plan, order: list[int], weights: list[float] | None = None):
    """``plan`` with its layers in ``order`` and their time shares by ``weights`` (a search
    takes the slowest dense layer first, weighted by its dense time)."""

    class Ordered(type(plan)):
        @property
        def order(self) -> list[int]:
            return order

    return Ordered(plan.layers, plan.not_considered, plan.data, weights or plan.dense_ms,
                   plan.total_macs)


def test_a_full_rank_option_has_no_effect_and_a_rank_one_option_has(rng):
    model, batches, plan = _planned(rng)
    layer = plan.layers[1]
    options = [[], [Option(1, "input", 16, form("input").macs(layer, 16), 0.1),
                    Option(1, "channel", 1, form("channel").macs(layer, 1), 0.1)]]
    probe = sensitivity.Probe(batches[:2], None, outputs(model, batches[:2], level="all"))
    metric = resolve("rel-error:0.05", probe.reference, None)
    effects = sensitivity.measure(model, _ordered(plan, [1, 0]), options, probe, metric,
                                  "asymmetric", None, Progress(False))
    exact, crude = effects[options[1][0].key], effects[options[1][1].key]
    assert exact.error < 1e-5 and exact.drop == 0 and exact.energy == pytest.approx(1.0)
    assert crude.error > 0.3 and crude.drop > 0.5


def test_layers_not_reached_before_the_deadline_are_not_measured(rng):
    model, batches, plan = _planned(rng)
    options = [[Option(i, "channel", 4, 1, 0.1)] for i in range(2)]
    probe = sensitivity.Probe(batches[:1], None, outputs(model, batches[:1], level="all"))
    metric = resolve("rel-error:0.05", probe.reference, None)
    effects = sensitivity.measure(model, _ordered(plan, [0, 1]), options, probe, metric,
                                  "asymmetric", time.perf_counter() - 1, Progress(False))
    assert effects == {}


def test_the_input_form_finds_a_layer_whose_inputs_span_few_channels(rng):
    model, batches, plan = _planned(rng, subspace=4)
    layer = plan.layers[1]
    options = [[], [Option(1, m, 4, form(m).macs(layer, 4), 0.1) for m in ("input", "channel")]]
    probe = sensitivity.Probe(batches[:2], None, outputs(model, batches[:2], level="all"))
    metric = resolve("rel-error:0.05", probe.reference, None)
    effects = sensitivity.measure(model, _ordered(plan, [1]), options, probe, metric,
                                  "asymmetric", None, Progress(False))
    assert effects[(1, "input", 4)].error < 1e-4  # 4 input directions carry everything
    assert effects[(1, "channel", 4)].error > 0.1  # the responses are not rank 4


# ---------------------------------------------------------------------------- choose


def _options(costs):
    return [[Option(layer, "channel", rank, 0, cost) for rank, cost in offered]
            for layer, offered in enumerate(costs)]


def test_allocation_reaches_the_target_with_the_least_added_error():
    options = _options([[(8, 4.0), (4, 2.0)], [(8, 4.0), (4, 2.0)]])
    effects = {(0, "channel", 8): Effect(0.0, 0.01, 0.9), (0, "channel", 4): Effect(0.0, 0.02, 0.8),
               (1, "channel", 8): Effect(0.0, 0.30, 0.5), (1, "channel", 4): Effect(0.0, 0.50, 0.3)}
    chosen = choose.allocate(options, effects, lambda o: o.ms, [10.0, 10.0], 0.0, 15.0, None)
    assert chosen[0].rank == 8 and chosen[1] is None  # 4 + 10 <= 15: the quiet layer gives
    chosen = choose.allocate(options, effects, lambda o: o.ms, [10.0, 10.0], 0.0, 12.0, None)
    assert chosen[0].rank == 4 and chosen[1] is None  # 2 + 10 <= 12
    chosen = choose.allocate(options, effects, lambda o: o.ms, [10.0, 10.0], 0.0, 5.0, None)
    assert [o.rank for o in chosen] == [4, 4]  # best effort: nothing cheaper is left


def test_options_whose_own_drop_passes_half_the_allowed_drop_are_never_chosen():
    options = _options([[(8, 4.0)], [(8, 4.0)]])
    effects = {(0, "channel", 8): Effect(0.004, 0.05, 0.9),  # within 0.005: usable
               (1, "channel", 8): Effect(0.006, 0.5, 0.9)}
    chosen = choose.allocate(options, effects, lambda o: o.ms, [10.0, 10.0], 0.0, None, 0.01)
    assert chosen[0] is not None and chosen[1] is None


def test_the_error_bound_pools_every_measured_option():
    effects = {(0, "a", 1): Effect(0.0, 0.1, 1), (0, "a", 2): Effect(0.02, 0.4, 1),
               (0, "a", 3): Effect(0.03, 0.6, 1), (0, "a", 4): Effect(0.001, 0.05, 1)}
    assert choose.tolerance(effects, 0.01) == pytest.approx(0.005)  # the metric is fine
    assert choose.error_bound(effects, 0.01) == pytest.approx(0.1)  # the fit jumps after
    assert choose.error_bound(effects, None) == np.inf
    # one sample in 64 flips here and there: noise alone, pooled it is a small rate
    noisy = {(0, "a", k): Effect(d, e, 1) for k, (d, e) in enumerate(
        [(0, 0.05), (1 / 64, 0.08), (0, 0.1), (0, 0.15), (0, 0.2), (1 / 64, 0.25), (0, 0.28),
         (0, 0.3), (3 / 64, 0.5), (5 / 64, 0.7)])}
    assert choose.tolerance(noisy, 0.01) == pytest.approx(1 / 64)
    assert choose.error_bound(noisy, 0.01) == pytest.approx(0.2)  # pooled: 0.39 % up to 0.2
    calm = {(0, "a", 1): Effect(0.0, 0.1, 1), (0, "a", 2): Effect(0.0, 0.2, 1)}
    assert choose.error_bound(calm, 0.01) == pytest.approx(0.2)  # nothing seen beyond it
    broken = {(0, "a", 1): Effect(0.02, 0.1, 1), (0, "a", 2): Effect(0.03, 0.2, 1)}
    assert choose.error_bound(broken, 0.01) == 0.0


def test_allocation_stays_within_the_error_bound():
    options = _options([[(8, 4.0), (4, 2.0)], [(8, 4.0)], [(8, 9.9)]])
    effects = {(0, "channel", 8): Effect(0.0, 0.1, 1), (0, "channel", 4): Effect(0.0, 0.21, 1),
               (1, "channel", 8): Effect(0.0, 0.2, 1), (2, "channel", 8): Effect(0.03, 0.3, 1),
               (2, "channel", 9): Effect(0.001, 0.0, 1)}
    assert choose.error_bound(effects, 0.01) == pytest.approx(0.21)
    chosen = choose.allocate(options, effects, lambda o: o.ms, [10.0] * 3, 0.0, None, 0.01)
    # 0.1^2 + 0.2^2 = 0.05 > 0.21^2 = 0.044: the cheaper move per error is taken, not both
    assert sum(o is not None for o in chosen[:2]) == 1 and chosen[2] is None
    # the guard's ladder climbs past E: at twice it (0.176), both moves; layer 2's option
    # that drops 3 points alone is still never offered
    further = choose.trajectory(options, effects, lambda o: o.ms, [10.0] * 3, 0.0, None, 0.01,
                                reach=2.0)[-1]
    assert all(o is not None for o in further[:2]) and further[2] is None


def test_the_trajectory_is_one_move_at_a_time_from_dense_to_the_allocation():
    options = _options([[(8, 6.0), (4, 2.0)], [(8, 4.0)], [(8, 9.9)]])
    effects = {(0, "channel", 8): Effect(0.0, 0.05, 1), (0, "channel", 4): Effect(0.0, 0.1, 1),
               (1, "channel", 8): Effect(0.0, 0.2, 1), (2, "channel", 8): Effect(0.0, 0.01, 1)}
    args = (options, effects, lambda o: o.ms, [10.0] * 3, 0.0, None, None)
    states = choose.trajectory(*args)
    assert states[0] == [None] * 3 and states[-1] == choose.allocate(*args)
    assert all(sum(a != b for a, b in zip(s, t)) == 1 for s, t in zip(states, states[1:]))
    # layer 0 first (0.05^2 / 4 saved), then its rank 4 (0.0075 / 4), then layer 1 (0.04 / 6);
    # layer 2 saves 0.1 ms for 1e-4: 1e-3 per ms, taken between them
    assert [[o and o.rank for o in s] for s in states] == [
        [None, None, None], [8, None, None], [8, None, 8], [4, None, 8], [4, 8, 8]]


class _Moves:
    """A builder whose model after k moves is k itself, its predicted error ``sqrt(k)``;
    the guard accepts up to ``good`` moves. With the bound 3, the ladder's rungs (3 times
    1.4^-4 ... 1.4^2: 0.78, 1.09, 1.53, 2.14, 3, 4.2, 5.88) fall on 0 (not judged), 1, 2, 4,
    9, 17 and 30 moves."""

    RUNGS = [1, 2, 4, 9, 17, 30]

    def __init__(self, good: int, moves: int = 30) -> None:
        self.good, self.built, self.levels, self.energies = good, [], [], {}
        self.model, self.layers = 0, [type("L", (), {"name": f"l{i}"})() for i in range(moves)]
        self.states = [[i < k or None for i in range(moves)] for k in range(moves + 1)]
        self.errors = [k ** 0.5 for k in range(moves + 1)]

    def build(self, chosen):
        self.built.append(sum(o is True for o in chosen))
        return self.built[-1]

    def kept(self, model):
        return model


class _Looks:
    """Judges the model after k moves (k itself): a drop of 0 up to ``good`` moves and of 5
    points past it, each judgement taking ``seconds``."""

    def __init__(self, moves: _Moves, allowed: float | None, seconds: float = 0.0) -> None:
        self.moves, self.allowed, self.seconds = moves, allowed, seconds
        self.metric = resolve("agreement", {"y": np.zeros((2, 3))}, None)

    def judged(self, k):
        time.sleep(self.seconds)
        drop = 0.0 if k <= self.moves.good else 0.05
        return Judgement(1.0, 1.0 - drop, drop, (drop, drop), "exact", 1000), {"k": k}, {}

    def original(self):
        return Judgement(1.0, 1.0, 0.0, (0.0, 0.0), "exact", 1000), {}


def _judge_moves(monkeypatch, moves: _Moves, seconds: float = 0.0):
    from fuser.search import guard

    monkeypatch.setattr(guard, "form_text", lambda o: "dense" if o is None else "rewritten")
    moves.seconds = seconds
    return guard


def _ladder(guard, moves, notes, deadline=None, allowed=0.01):
    return guard.largest_accepted(moves, moves.states, moves.errors, 3.0,
                                  _Looks(moves, allowed, getattr(moves, "seconds", 0.0)),
                                  notes, Progress(False), deadline)


def test_the_ladder_is_fixed_by_the_predicted_errors_fewest_moves_first():
    from fuser.search.guard import REACH, ladder

    errors = [k ** 0.5 for k in range(31)]
    assert ladder(errors, 3.0) == _Moves.RUNGS
    assert ladder(errors, 1.0) == [1, 3]  # 0.26-0.71: no state; 1 and 1.4: 1; 1.96: 3
    assert ladder(errors, np.inf) == [30] and ladder(errors, 0.0) == []
    assert ladder([0.0, 0.5, 0.4, 2.0], 1.0) == [2]  # the most moves within each rung
    assert REACH == pytest.approx(1.96)


@pytest.mark.parametrize("good", [0, 1, 3, 9, 16, 30])
def test_the_guard_delivers_the_largest_rung_accepted_and_stops_at_the_first_refused(
        monkeypatch, good):
    moves = _Moves(good)
    guard = _judge_moves(monkeypatch, moves)
    notes: list[str] = []
    got = _ladder(guard, moves, notes)
    kept = max([k for k in moves.RUNGS if k <= good], default=0)
    assert got.chosen == moves.states[kept] and got.model == (kept or 0)
    refused = [k for k in moves.RUNGS if k > good][:1]
    assert moves.built == [k for k in moves.RUNGS if k <= good] + refused
    assert got.builds == len(moves.built)
    assert got.backed_off == [f"l{i}" for i in range(kept, 30)]
    assert [n for n in notes if n.startswith("refused")] == [
        f"refused {k} of 30 moves: agreement drop 0.050, 95% interval 0.050 to 0.050 on 1000 "
        "held-out samples; the ladder stops there" for k in refused]
    assert (got.builds > 1) == any(n.startswith(f"the guard judged {got.builds} choices in a "
                                                "fixed order, fewest moves first, each at "
                                                "95% over its looks") for n in notes)


def test_without_a_bound_the_last_state_alone_is_built(monkeypatch):
    moves = _Moves(0)
    guard = _judge_moves(monkeypatch, moves)
    got = _ladder(guard, moves, [], allowed=None)
    assert moves.built == [30] and got.model == 30 and got.backed_off == []


def test_the_delivered_choice_holds_at_95_percent_however_many_are_judged(monkeypatch):
    """Fixed-sequence testing over group-sequential looks, simulated: 896 held-out samples
    in 7 batches (looks at 256, 512 and 896), each rung's samples flip independently, at
    0.05 % and 0.1 % on the first two rungs and at 1.01 % (just over a 1-point bound) on
    the other four. Over 1000 seeded trials, the ladder delivers a rung over the bound at
    most 2.5 % of the time (the error spent over the first bad rung's looks); keeping the
    largest of all six rungs accepted, each judged once at 95 %, would deliver one about
    three times as often."""
    from fuser.search import guard, looks

    samples, rates, allowed = 896, [0.0005, 0.001] + [0.0101] * 4, 0.01
    reference = np.zeros((samples, 3), np.float32)
    reference[:, 0] = 1.0
    metric = resolve("agreement", {"y": reference}, None)
    batches = [{"i": np.arange(s, s + 128)} for s in range(0, samples, 128)]
    rng = np.random.default_rng(0)
    bad_delivered = bad_any = 0
    for _ in range(1000):
        flips = {k: rng.random(samples) < rate for k, rate in zip(_Moves.RUNGS, rates)}

        def outputs(k, part, level, session=None, flips=flips):
            rows = np.concatenate([b["i"] for b in part])
            scores = reference[rows].copy()
            if k != "original":
                scores[flips[k][rows], 1] = 2.0
            return {"y": scores}

        moves = _Moves(0)
        monkeypatch.setattr(looks, "outputs", outputs)
        monkeypatch.setattr(looks.runtime, "session", lambda model, level: None)
        monkeypatch.setattr(guard, "form_text", lambda o: "moved")
        held = looks.Looks("original", batches, None, allowed)
        held.metric = metric
        notes: list[str] = []
        got = guard.largest_accepted(moves, moves.states, moves.errors, 3.0, held, notes,
                                     Progress(False))
        assert moves.built == _Moves.RUNGS[:len(moves.built)]  # in order, none skipped
        bad_delivered += got.model in _Moves.RUNGS[2:]
        accepted = [k for k in _Moves.RUNGS[2:] if clopper_pearson(
            int(flips[k].sum()), samples)[1] <= allowed]
        bad_any += bool(accepted)
    assert held.ends == [2, 4, 7]
    assert bad_delivered / 1000 <= 0.025
    assert bad_any / 1000 > 0.05  # the trials can tell the two procedures apart


@pytest.mark.parametrize("rate, allowed, look, accepted", [
    (0.10, 0.01, 1, False),   # clearly bad: refused on the first quarter
    (0.0, 0.10, 1, True),     # clearly good for a loose bound: accepted on the first quarter
    (0.0, 0.01, 3, True),     # no sample worse, a 1-point bound: only all 896 resolve it
    (0.008, 0.01, 3, False),  # close to the bound: every look, then not resolved
])
def test_the_looks_stop_as_soon_as_the_interval_decides(monkeypatch, rate, allowed, look,
                                                        accepted):
    from fuser.search import looks

    samples = 896
    reference = np.zeros((samples, 3), np.float32)
    reference[:, 0] = 1.0
    flipped = np.random.default_rng(1).random(samples) < rate
    runs = []

    def outputs(model, part, level, session=None):
        rows = np.concatenate([b["i"] for b in part])
        runs.append((model, len(rows)))
        scores = reference[rows].copy()
        if model == "candidate":
            scores[flipped[rows], 1] = 2.0
        return {"y": scores}

    monkeypatch.setattr(looks, "outputs", outputs)
    monkeypatch.setattr(looks.runtime, "session", lambda model, level: None)
    judged = []
    real_judge = looks.judge

    def spy(metric, reference, new, labels, **kw):
        judged.append(len(new["y"]))
        return real_judge(metric, reference, new, labels, **kw)

    monkeypatch.setattr(looks, "judge", spy)
    held = looks.Looks("original", [{"i": np.arange(s, s + 64)} for s in range(0, samples, 64)],
                       None, allowed)
    held.metric = resolve("agreement", {"y": reference}, None)
    verdict, new, ref = held.judged("candidate")
    assert held.ends == [4, 7, 14] and (verdict.look, verdict.looks) == (look, 3)
    seen = [256, 448, 896][look - 1]
    assert verdict.rows in (0, seen) and verdict.samples == seen and len(new["y"]) == seen
    assert verdict.held_rows == samples and len(ref["y"]) == seen
    assert verdict.within(allowed) == accepted
    assert verdict.confidence == pytest.approx(looks.levels([256 / 896, 448 / 896, 1.0])[look - 1])
    # the original's outputs are computed once, look by look, only as far as needed
    assert [n for m, n in runs if m == "original"] == [256, 192, 448][:look]
    assert [n for m, n in runs if m == "candidate"] == [256, 192, 448][:look]
    # an interval is computed only at a look that can decide: one that can accept (enough
    # samples for the bound at its level) or whose point drop is past the bound
    can_accept = [clopper_pearson(0, n, c)[1] <= allowed
                  for n, c in zip([256, 448, 896], held.confidences)]
    early = zip([256, 448][:look - 1], can_accept)
    assert judged == [n for n, ok in early if ok or rate > allowed] + [seen]


def test_the_looks_spend_the_error_of_one_95_percent_interval():
    from fuser.search.looks import RHO, levels

    shares = [0.25, 0.5, 1.0]
    got = levels(shares)
    spent = [(1 - c) / 2 for c in got]
    assert sum(spent) == pytest.approx(0.025)  # the one-sided error of a 95 % interval
    assert spent == pytest.approx([0.025 * 0.25 ** RHO, 0.025 * (0.5 ** RHO - 0.25 ** RHO),
                                   0.025 * (1 - 0.5 ** RHO)])
    assert got[-1] == pytest.approx(0.95625) and levels([1.0]) == [pytest.approx(0.95)]


def test_the_guard_starts_no_build_that_would_end_after_the_deadline(monkeypatch):
    moves = _Moves(30)
    guard = _judge_moves(monkeypatch, moves, seconds=0.2)
    notes: list[str] = []
    got = _ladder(guard, moves, notes, time.perf_counter() + 0.3)
    assert moves.built == [1] and got.builds == 1  # a second build would end at ~0.4 s
    assert got.chosen == moves.states[1] and got.model == 1
    assert notes[0] == "the search time ran out on the guard's ladder: 1 of 30 moves kept " \
        "(the most the guard accepted)"


def test_with_time_for_fewer_builds_than_rungs_the_ladder_spreads_them(monkeypatch):
    from fuser.search.guard import spread

    assert spread([2, 4, 9, 17, 30], 2) == [4, 17] and spread([2, 4, 9, 17, 30], 1) == [9]
    assert spread([1, 2, 3, 4, 5, 6], 3) == [1, 3, 5] and spread([7], 1) == [7]
    clopper_pearson(0, 10)  # scipy.stats imported before the builds are timed
    moves = _Moves(30)
    guard = _judge_moves(monkeypatch, moves, seconds=0.2)
    notes: list[str] = []
    got = _ladder(guard, moves, notes, time.perf_counter() + 0.2 + 0.45)
    # after the first build (0.2 s), 0.45 s left: 2 builds of the 5 rungs left
    assert moves.built == [1, 4, 17] and got.model == 17
    assert "the search time allows 2 more builds: the ladder goes on at 4, 17 of 30 moves, " \
        "skipping 2, 9, 30 (a busy machine or a short --search-time: the choice delivered " \
        "may be smaller than the bound allows)" in notes


# ---------------------------------------------------------------------------- build


def test_a_rebuild_refits_only_from_the_first_changed_layer(rng):
    model, batches, plan = _planned(rng)
    builder = Builder(model, plan.layers, plan.data, batches[:2], 16, 0, "asymmetric")
    first = [Option(0, "channel", 8, 0, 0.1), Option(1, "input", 8, 0, 0.1)]
    original = model.SerializeToString()
    built = builder.build(first)
    assert builder.refits == 2 and built is builder.work  # one model, edited in place
    check(built)
    assert graph_io.op_histogram(built) == {"Conv": 4}
    changed = [first[0], Option(1, "channel", 8, 0, 0.1)]
    again = builder.kept(builder.build(changed))
    assert builder.refits == 3  # layer 0 was kept, only layer 1 refitted
    check(again)
    fresh = Builder(model, plan.layers, plan.data, batches[:2], 16, 0, "asymmetric")
    scratch = fresh.build(changed)
    feeds = batches[3]
    np.testing.assert_allclose(runtime.run(again, feeds)["y"], runtime.run(scratch, feeds)["y"],
                               rtol=1e-5, atol=1e-5)
    undone = builder.build([None, None])  # every edit undone: the original again
    assert [n.SerializeToString() for n in undone.graph.node] == \
        [n.SerializeToString() for n in model.graph.node]
    assert sorted(t.SerializeToString() for t in undone.graph.initializer) == \
        sorted(t.SerializeToString() for t in model.graph.initializer)
    assert model.SerializeToString() == original  # the input is never touched
    errors = layer_errors(again, plan.layers, plan.data, batches[:2], 16, 0)
    assert errors[0] > 0 and errors[1] > 0
    assert layer_errors(model, plan.layers, plan.data, batches[:2], 16, 0) == [0.0, 0.0]


def test_an_edit_keeps_a_bias_another_node_reads_and_undoes_to_the_original(rng):
    """Splicing a layer's factors in removes its weights only where no other node (or
    subgraph, or graph input) reads them; undoing restores the node where it was."""
    from fuser.search.build import Edit, factor_model, taken

    model = make_model("""
        g (float[N,8,6,6] x) => (float[N,8,6,6] y) {
            a = Conv<kernel_shape=[3,3], pads=[1,1,1,1]>(x, W1, B)
            y = Conv<kernel_shape=[3,3], pads=[1,1,1,1]>(a, W2, B)
        }""", rng, W1=(8, 8, 3, 3), W2=(8, 8, 3, 3), B=(8,))
    layer = candidate_layers(model)[0]
    shape = form("channel")
    factors = shape.fit(layer, 4, LayerData(*[rng.standard_normal((8, 64))] * 2, None), "pca")
    work = Builder(model, [layer], [], [], 16, 0, "pca").work
    edit = Edit.splice(work, factor_model(layer, "channel", factors, taken(work)))
    check(work)
    names = {t.name for t in work.graph.initializer}
    assert "B" in names and "W1" not in names and "W2" in names  # B is read by the second
    assert [n.op_type for n in work.graph.node] == ["Conv", "Conv", "Conv"]
    assert edit.index == 0 and edit.count == 2 and [t.name for t in edit.removed] == ["W1"]
    edit.undo(work)
    assert [n.SerializeToString() for n in work.graph.node] == \
        [n.SerializeToString() for n in model.graph.node]
    assert sorted(t.name for t in work.graph.initializer) == ["B", "W1", "W2"]


def test_a_build_carries_what_the_rest_of_the_network_reads_from_layer_to_layer(
        rng, monkeypatch):
    from fuser.search import build as build_module

    model = make_model("""
        g (float[N,8,6,6] x) => (float[N,8,6,6] y) {
            a = Conv<kernel_shape=[3,3], pads=[1,1,1,1]>(x, W1)
            b = Conv<kernel_shape=[3,3], pads=[1,1,1,1]>(a, W2)
            c = Add(b, x)
            y = Conv<kernel_shape=[3,3], pads=[1,1,1,1]>(c, W3)
        }""", rng, W1=(8, 8, 3, 3), W2=(8, 8, 3, 3), W3=(8, 8, 3, 3))
    batches = _batches(rng, 3)
    plan = make_plan(model, batches[:2], PlantedTable("-"), None, 16, 0)
    chosen = [Option(i, "channel", 4, 0, 0.1) for i in range(3)]
    known = []

    def spy(model, names, batches, given=None):
        known.append(sorted(given[0]) if given else None)
        return tensors(model, names, batches, given)

    tensors = build_module.tensors
    monkeypatch.setattr(build_module, "tensors", spy)
    carried = Builder(model, plan.layers, plan.data, batches[:2], 16, 0, "asymmetric")
    fast = carried.build(chosen)
    # layer 0: the original's data; layer 1 from the inputs; layer 2 from what the network
    # after layer 1 reads: its input a and the skip connection's x
    assert known == [None, ["a", "x"]]
    monkeypatch.setattr(build_module, "FRONTIER_BYTES", 0)
    slow = Builder(model, plan.layers, plan.data, batches[:2], 16, 0, "asymmetric").build(chosen)
    assert known[2:] == [None, None]  # too large to carry: each layer from the inputs
    check(fast)
    assert graph_io.op_histogram(fast) == {"Conv": 6, "Add": 1}
    feeds = batches[2]
    np.testing.assert_allclose(runtime.run(fast, feeds)["y"], runtime.run(slow, feeds)["y"],
                               rtol=1e-5, atol=1e-5)


def test_layer_data_are_sampled_batch_by_batch_at_the_same_pixels(rng):
    model, batches, plan = _planned(rng)
    # the original's responses re-sampled from the same batches are the same columns
    again = make_plan(model, batches[:2], PlantedTable("-"), None, 16, 0)
    for a, b in zip(plan.data, again.data, strict=True):
        np.testing.assert_array_equal(a.target, b.target)
        assert a.inputs.shape == (16, 2 * 8 * 16)
    assert isinstance(plan.data[0], LayerData)


# ---------------------------------------------------------------------------- latency


def test_past_the_deadline_latencies_are_estimated_from_macs(rng, tmp_path, monkeypatch):
    from fuser.search.latency import LatencyTable

    model, _, plan = _planned(rng)
    layer = plan.layers[0]
    timed = []
    monkeypatch.setattr(LatencyTable, "_time", lambda self, m: timed.append(m) or 2.0)
    table = LatencyTable(path=tmp_path / "latency.json")
    table.deadline = time.perf_counter() - 1
    # the reference convolution, then the dense layer: always measured
    assert table.ms(layer) == 2.0 and len(timed) == 2
    estimate = table.ms(layer, "channel", 4)
    assert estimate == pytest.approx(2.0 * form("channel").macs(layer, 4) / layer.macs())
    assert table.estimated == 1 and len(timed) == 2
    table.deadline = None
    assert table.ms(layer, "channel", 4) == 2.0 and len(timed) == 3


def test_the_table_times_on_the_cpu_when_asked_and_compares_whole_models(rng, tmp_path):
    from fuser.search.latency import LatencyTable

    model, batches, plan = _planned(rng)
    table = LatencyTable(path=tmp_path / "latency.json", provider="cpu", rounds=5,
                         seconds=0.05, batch=2)
    assert table.ms(plan.layers[0]) > 0 and table.provider.used == "cpu"
    before, after = table.compare(model, model, batches[0])
    assert before > 0 and after > 0


# ---------------------------------------------------------------------------- outputs


def test_outputs_are_joined_along_their_sample_axis_samples_first():
    from fuser.search.build import samples_first

    rng = np.random.default_rng(0)
    batch_first = [rng.standard_normal((n, 5)) for n in (4, 4, 2)]
    np.testing.assert_array_equal(samples_first(batch_first, [4, 4, 2]),
                                  np.concatenate(batch_first))
    sequence_first = [rng.standard_normal((7, 1, 3)) for _ in range(3)]  # (T, N=1, C)
    joined = samples_first(sequence_first, [1, 1, 1])
    assert joined.shape == (3, 7, 3)
    np.testing.assert_array_equal(joined[2], sequence_first[2][:, 0])
    squeezed = [rng.standard_normal((7, 3)) for _ in range(2)]  # no batch axis at all
    assert samples_first(squeezed, [1, 1]).shape == (2, 7, 3)
    scalars = [np.float32(1.0), np.float32(2.0)]
    assert samples_first(scalars, [1, 1]).shape == (2,)


def test_the_users_metric_sees_a_sequence_first_output_samples_first(rng):
    from fuser.search.metric import judge

    model = make_model("""
        g (float[1,4] x) => (float[6,1,3] y) {
            z = Gemm<transB=1>(x, W)
            y = Reshape(z, shape)
        }""", rng, W=(18, 4), shape=np.array([6, 1, 3], np.int64))
    batches = [{"x": rng.standard_normal((1, 4)).astype(np.float32)} for _ in range(20)]
    seen = outputs(model, batches)
    assert seen["y"].shape == (20, 6, 3)
    labels = np.arange(20)

    def first_row_positive(out, labels):  # indexes samples on axis 0, labels alike
        assert len(out["y"]) == len(labels)
        return float(np.mean(out["y"][:, 0, 0] > 0))

    verdict = judge(resolve(first_row_positive, seen, labels), seen, seen, labels)
    assert verdict.drop == 0 and verdict.samples == 20


def test_ragged_labels_are_split_as_one_object_per_sample():
    from fuser.search.plan import split

    batches = [{"x": np.zeros((2, 1), np.float32)} for _ in range(3)]
    boxes = [[(0, 0, 1, 1)], [], [(1, 1, 2, 2), (0, 0, 3, 3)], [], [(5, 5, 6, 6)], []]
    fit, held, fit_labels, held_labels = split(batches, boxes, fit_samples=2)
    assert len(fit) == 1 and len(held) == 2
    assert list(fit_labels) == boxes[:2] and list(held_labels) == boxes[2:]
    assert held_labels.dtype == object


def test_a_form_whose_lower_rank_is_not_faster_is_not_offered_at_that_rank():
    from fuser.search.plan import undominated

    options = [Option(0, "input", 448, 0, 9.2), Option(0, "input", 272, 0, 11.5),
               Option(0, "input", 128, 0, 5.1), Option(0, "channel", 48, 0, 15.0),
               Option(0, "tucker2", (96, 96), 0, 3.0), Option(0, "tucker2", (64, 64), 0, 3.0)]
    kept = undominated(options)
    assert [(o.method, o.rank) for o in kept] == [
        ("input", 448), ("input", 128), ("channel", 48), ("tucker2", (96, 96))]


def test_the_probe_shrinks_to_fit_the_time_left():
    from fuser.search.sensitivity import MIN_PROBE_SAMPLES, PROBE_SAMPLES, probe_samples

    options = [[Option(0, "channel", 8, 0, 1.0)] * 10]  # ten runs of half the network
    assert probe_samples(options, seconds=100.0, per_sample=0.01) == PROBE_SAMPLES
    assert probe_samples(options, seconds=1.6, per_sample=0.01) == 32
    assert probe_samples(options, seconds=0.0, per_sample=0.01) == MIN_PROBE_SAMPLES


@pytest.mark.parametrize("reference_seconds, builds", [
    (1.0, 3),    # a small model: three builds leave the sensitivity runs most of the time
    (35.0, 2),   # three builds would leave them 4 % of the time
    (44.5, 1),   # ppocr-v4-det at stop 17: three builds would not fit at all
    (170.0, 1),  # past the search time: one build is still reserved
])
def test_the_guard_is_left_fewer_builds_rather_than_no_sensitivity(reference_seconds, builds):
    from fuser.search.budget import (
        BUILD_MARGIN,
        COMPARE_SECONDS,
        ESTIMATE_SECONDS,
        GUARD_BUILDS,
        LATENCY_SHARE,
        SENSITIVITY_SHARE,
        Budget,
    )

    start, held, fit = 1000.0, 512, 8
    budget = Budget(180.0, start)
    now = start + reference_seconds  # the reference run took its seconds
    assert budget.latency == start + LATENCY_SHARE * budget.seconds
    budget.referenced(reference_seconds, held, held, fit, now)
    assert budget.builds == builds
    per_sample = reference_seconds / held
    assert budget.per_sample == pytest.approx(per_sample)
    assert budget.finish == pytest.approx(per_sample * fit + COMPARE_SECONDS)
    assert budget.guard == pytest.approx(budget.end - budget.finish)
    build = BUILD_MARGIN * per_sample * (held + fit)
    assert budget.estimates == pytest.approx(budget.guard - builds * build)
    judged = Budget(180.0, start)  # a metric that takes 10 s per look leaves fewer builds
    judged.referenced(reference_seconds, held, held, fit, now, judging=30.0)
    assert judged.builds <= builds
    assert judged.estimates == pytest.approx(
        judged.guard - judged.builds * BUILD_MARGIN * (per_sample * (held + fit) + 30.0))
    assert budget.estimates - ESTIMATE_SECONDS - 1e-9 <= budget.sensitivity <= budget.estimates
    left = budget.end - now - budget.finish
    sensitivity = budget.estimates - now
    if builds > 1:  # the sensitivity runs keep their share
        assert sensitivity >= SENSITIVITY_SHARE * left - 1e-9
    if builds < GUARD_BUILDS:  # one more build would have taken it from them
        assert sensitivity - build < SENSITIVITY_SHARE * left


def test_builds_that_run_faster_leave_more_time_to_the_sensitivity_runs(monkeypatch):
    """int8's builds run the all-int8 model: at a quarter of the reference's time per
    sample, the time is shared again and more builds fit (tempocnn-cnn's metric ranking
    was cut to 4 of 8 layers by a build estimate three times too long)."""
    from fuser.search import budget as budget_module
    from fuser.search.budget import BUILD_MARGIN, GUARD_BUILDS, Budget

    start, held, fit = 1000.0, 1920, 128
    budget = Budget(150.0, start)
    budget.referenced(20.0, 480, held, fit, start + 20.0)
    assert budget.builds == 1  # 1.25 x 85 s a build: one fits
    before = budget.sensitivity
    monkeypatch.setattr(budget_module.time, "perf_counter", lambda: start + 40.0)
    budget.builds_run_faster(0.26)
    assert 1 < budget.builds <= GUARD_BUILDS  # 1.25 x 28 s a build: two fit
    build = BUILD_MARGIN * 20.0 * 0.26 / 480 * (held + fit)
    assert budget.estimates == pytest.approx(budget.guard - budget.builds * build)
    assert budget.sensitivity > before
    budget.builds_run_faster(1.0)  # shared again from the same basis: one build again
    assert budget.builds == 1


def test_the_tail_after_a_layer_reads_its_output_and_the_skip_connection(rng):
    model = make_model(RESIDUAL, rng, W1=(8, 8, 3, 3), W2=(8, 8, 3, 3))
    after = cut.tail(model, "b", {"b": np.float32, "x": np.float32})
    assert [n.op_type for n in after.graph.node] == ["Add"]
    assert sorted(i.name for i in after.graph.input) == ["b", "x"]
    feeds = _batches(rng, 1)[0]
    b = runtime.run(cut.prefix(model, ["b"]), feeds)["b"]
    np.testing.assert_allclose(runtime.run(after, {"b": b, "x": feeds["x"]})["y"],
                               runtime.run(model, feeds)["y"], rtol=1e-5, atol=1e-5)
    last = cut.tail(model, "y", {"y": np.float32})
    assert len(last.graph.node) == 0  # nothing after the last node


def test_options_interleave_the_forms_nearest_the_budget_first():
    c1, c2 = Option(0, "channel", 8, 0, 1.0), Option(0, "channel", 16, 0, 1.0)
    i1, i2 = Option(0, "input", 8, 0, 1.0), Option(0, "input", 16, 0, 1.0)
    t1 = Option(0, "tucker2", (8, 8), 0, 1.0)
    assert sensitivity.interleaved([c1, c2, i1, i2, t1]) == [c1, i1, t1, c2, i2]


def test_each_layer_gets_a_share_of_the_time_and_one_option_at_least(rng):
    model, batches, plan = _planned(rng)
    options = [[Option(i, m, 4, 1, 0.1) for m in ("channel", "input", "tucker2")]
               for i in range(2)]
    options = [[o if o.method != "tucker2" else Option(o.layer, "tucker2", (4, 4), 1, 0.1)
                for o in layer] for layer in options]
    probe = sensitivity.Probe(batches[:1], None, outputs(model, batches[:1], level="all"))
    metric = resolve("rel-error:0.05", probe.reference, None)
    effects = sensitivity.measure(model, _ordered(plan, [0, 1], [1e-9, 1.0]), options, probe,
                                  metric, "asymmetric", time.perf_counter() + 60,
                                  Progress(False))
    assert sum(key[0] == 0 for key in effects) == 1  # a share of ~0 s: one option
    assert sum(key[0] == 1 for key in effects) == 3  # the rest of the time: all three


# ------------------------------------------------- estimates for the layers not reached


def test_options_not_run_are_estimated_from_their_fits_scaled_by_the_measured_gain(rng):
    """Issue 26: 'sensitivity was measured on 0 of 6 layers'. Every option of a layer the
    network runs did not reach gets an output error from its fit (sqrt(1 - energy) times
    the measured options' largest gain) and no drop; a layer with a measured option keeps
    only that one."""
    _, _, plan = _planned(rng)
    layer = plan.layers[1]
    options = [[Option(0, "channel", 4, 1, 0.1)],
               [Option(1, "channel", 4, form("channel").macs(layer, 4), 0.1),
                Option(1, "input", 8, form("input").macs(layer, 8), 0.1)]]
    measured = {options[1][0].key: Effect(0.02, 0.3, 0.91)}
    got = sensitivity.estimate(plan, options, measured, "asymmetric", None)
    assert got[options[1][0].key] == measured[options[1][0].key]
    assert options[1][1].key not in got  # its layer was reached: measured options only
    effect = got[options[0][0].key]
    assert not effect.measured and effect.drop == 0.0 and 0 < effect.energy < 1
    assert effect.error == pytest.approx(0.3 / np.sqrt(1 - 0.91) * np.sqrt(1 - effect.energy))
    assert sensitivity.estimate(plan, options, {}, "asymmetric",
                                time.perf_counter() - 1) == {}  # past the deadline: none


def test_estimates_never_calibrate_the_error_bound_or_the_tolerance():
    measured = {(0, "channel", 4): Effect(0.004, 0.02, 0.9),
                (0, "channel", 8): Effect(0.03, 0.2, 0.95)}
    guessed = {(1, "input", 8): Effect(0.0, 0.5, 0.5, measured=False)}
    both = {**measured, **guessed}
    assert choose.error_bound(both, 0.01) == choose.error_bound(measured, 0.01) == 0.02
    assert choose.tolerance(both, 0.01) == choose.tolerance(measured, 0.01)
    assert choose.error_bound(guessed, 0.01) == choose.UNMEASURED_BOUND  # nothing measured
    option = Option(1, "input", 8, 1, 0.1)
    assert choose.usable(option, both, 0.01)  # an estimate can move; the guard judges it


def test_a_search_whose_network_runs_reach_nothing_still_rewrites_from_estimates(
        rng, monkeypatch, tmp_path):
    """The network runs measure nothing (as when the reference run ate the time): the
    estimates let the layers move, the guard judges the result, and the report says which
    effects were estimated."""
    from fuser.search import search as search_module
    from fuser.search.config import Search

    monkeypatch.setenv("FUSER_CACHE", str(tmp_path))
    monkeypatch.setattr(search_module.sensitivity, "measure", lambda *args: {})
    model, batches, _ = _planned(rng, subspace=4)
    out, result = search_module.compress(
        model, batches, Search(budget="macs=0.6", max_accuracy_drop=1.0,
                               metric="rel-error:0.5"), table=PlantedTable("-"))
    rewritten = [c for c in result.layers if c.method != "dense"]
    assert rewritten and all(c.note == "effect estimated from the fit alone (not run)" and
                             c.drop_alone is None and c.options_measured == 0
                             for c in rewritten)
    assert any("sensitivity measured in the network on 0 of 2 layers" in n and
               "2 more estimated from their fits alone" in n for n in result.notes)
    check(out)

"""Data-aware low-rank compression of a whole model under a budget. Every setting is in one
record, ``config.Search`` (the API's default budget: ``accuracy=D``, as fast as the drop D
allows).

1. Candidate layers: group-1 Conv, Gemm, MatMul with a constant right-hand weight.
2. Calibration: degenerate data (constant samples, near-copies, outputs that hardly vary)
   is refused first (``calibration_check``). The first ``fit_samples`` samples fit; every
   other one is held out for the guard. Each layer's responses and input channels are
   sampled on the fitting batches.
3. Latency: each dense layer and each offered form (``fuser.passes.lowrank.forms``:
   output-side ``channel``, input-side ``input``, ``tucker2``, ``spatial`` k x 1 then
   1 x k, ``svd`` for Gemm/MatMul; one module each) at the ranks keeping
   ``plan.FRACTIONS`` of its MACs, timed alone on the deploy provider (``LatencyTable``);
   only options measured ``speed_margin`` faster than the dense layer are offered: a rewrite
   is never chosen where onnxruntime runs it slower. What the rewrites save in the whole
   network is measured (``plan.in_context``: the model against a twin with every offered
   rewrite); a ``latency=F`` budget, a share of the whole model's time, counts the savings
   scaled by it. The other budgets do not: one factor for every layer does not change the
   order of the moves, and dropping options by it kept the digits nets dense at
   ``accuracy=0.01`` (the end-to-end check after the guard still refuses a slower model).
4. Sensitivity: each option is fitted and put into the network alone (the rest dense), and
   the task metric measured on the probe samples (``sensitivity``); layers go slowest first,
   and steps 3-4 share ``search_time`` less the guard's builds (``budget.Budget``).
5. Allocation (``choose.trajectory``): the cheapest penalty per unit of cost saved first,
   until the budget's target (``macs=F`` or ``latency=F``, fractions of the whole model) is
   reached or the summed penalty would pass twice the error bound the metric calibrates
   (``accuracy=D`` has no target: as fast as the drop allows); every move is kept.
6. Build (``build.Builder``): layer by layer in network order, each fitted to its inputs in
   the network approximated so far (Zhang's asymmetric reconstruction, or the linear
   response PCA, or whitened SVD for Gemm/MatMul and for wide ones always; the input-side
   forms from the PCA of those inputs), each layer's part run from the last one's tensors.
7. Guard: the metric on the held-out samples, look by look (a quarter, half, all of them),
   stopping as soon as the interval decides, the error spent over the looks
   (``fuser.search.looks``: group-sequential; the original's outputs computed once, as the
   looks need them); with
   ``max_accuracy_drop``, a ladder of the trajectory's choices at predicted output errors
   from a quarter of the bound to twice it, judged fewest moves first, each at 95 %, until
   the upper end of the drop's interval is out of bounds (``guard.largest_accepted``:
   fixed-sequence testing, so the delivered choice holds at 95 %; each build from its
   first changed layer on, the next one started only if it ends within ``search_time``,
   the rungs spread over the ladder when not all fit).
   The budget is then a target, not a promise: the report shows what was reached, and
   says when the held-out set is too small to resolve the bound.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence

import numpy as np
import onnx

from fuser.errors import FuserError
from fuser.report.compression import Compression
from fuser.runtime.runners import Progress
from fuser.search import calibration_check, sensitivity
from fuser.search.budget import GUARD_BUILDS, Budget
from fuser.search.build import Builder, layer_errors
from fuser.search.calibrate import Feeds
from fuser.search.choose import SAFETY, error_bound, predicted_error, tolerance, trajectory
from fuser.search.config import CONFIDENCE, Search
from fuser.search.forms import Candidates, Option
from fuser.search.guard import REACH, Delivered, guard, largest_accepted
from fuser.search.latency import LatencyTable
from fuser.search.looks import Looks, Originals
from fuser.search.metric import Metric, needed_samples, resolve
from fuser.search.plan import Plan, in_context, make_plan, offer, split
from fuser.search.record import compression

#: The default settings of ``compress``.
SEARCH = Search()


def compress(model: onnx.ModelProto, calibration: Sequence[Feeds], search: Search = SEARCH,
             *, labels: np.ndarray | None = None, table: LatencyTable | None = None,
             originals: Originals | None = None) -> tuple[onnx.ModelProto, Compression]:
    """Compress ``model`` with low-rank rewrites chosen from calibration data.

    ``calibration``: feed dicts; the first batches, up to ``search.fit_samples`` samples,
    fit the factors, every other sample is held out for the guard. ``labels``: one per
    calibration sample, in order. ``search``: the settings (``config.Search``: budget,
    allowed drop, metric, time...). ``table``: a latency table to reuse (tests plant one).
    ``originals``: the original's held-out outputs, where another stage ran them.
    ``search.search_time`` bounds everything (``budget.Budget`` owns every deadline).
    """
    budget = Budget(search.search_time)
    if not calibration:
        raise FuserError("low-rank compression needs calibration data")
    run = Run(search, *search.budget_parts(), budget, Progress(search.progress))
    fit, held, fit_labels, labels = split(calibration, labels, search.fit_samples)
    looks, check = judging_looks(model, calibration, fit, held, labels, run, originals)
    table = latency_table(table, run)
    plan, found, cost = _explore(model, run, table, fit, fit_labels, looks.metric)
    states = trajectory(found.options, found.effects, *cost, run.allowed, reach=REACH)
    notes = _notes(calibration, table, found, run)
    builder = Builder(model, plan.layers, plan.data, fit, search.samples, search.seed,
                      search.reconstruction)
    got = largest_accepted(builder, states, [predicted_error(s, found.effects)
                                             for s in states],
                           error_bound(found.effects, run.allowed), looks, notes, run.line,
                           budget.guard)
    speedup = end_to_end(model, got, fit[0], table, notes, search.speed_margin)
    if speedup is None and any(got.chosen):  # not faster end to end: deliver the original
        got = got.original(model, looks)
    passed, reason = guard(got.verdict, run.allowed, any(got.chosen))
    budget.lap("build and guard")
    errors = layer_errors(got.model, plan.layers, plan.data, fit, search.samples, search.seed)
    record = compression(search, plan, found, got, errors, notes, samples_in(fit), states)
    return got.model, dataclasses.replace(
        record, seconds=time.perf_counter() - budget.start, guard=reason, passed=passed,
        allowed_drop=run.allowed, phases=budget.phases, search_time=search.search_time, speedup=speedup,
        estimated_latencies=table.estimated, back_off_steps=max(got.builds - 1, 0),
        degenerate_calibration=list(check.findings), context_factor=round(run.context, 3))


@dataclasses.dataclass
class Run:
    """One search's settings, budget and progress line."""

    search: Search
    kind: str
    fraction: float
    allowed: float | None
    budget: Budget
    line: Progress
    context: float = 1.0  # the savings in context over those timed alone (``in_context``)


def latency_table(table: LatencyTable | None, run: Run) -> LatencyTable:
    """The table given, or a new one; it stops timing at ``run.budget.latency``."""
    search = run.search
    table = table or LatencyTable(batch=search.batch, threads=search.threads,
                                  provider=search.provider)
    table.progress, table.deadline = run.line, run.budget.latency
    return table


def judging_looks(model: onnx.ModelProto, calibration: Sequence[Feeds], fit: list[Feeds],
           held: list[Feeds], labels: np.ndarray | None, run: Run,
           originals: Originals | None = None
           ) -> tuple[Looks, calibration_check.CalibrationCheck]:
    """The guard's looks at the held-out samples, with the metric resolved on the first
    look's reference outputs (near-copies counted once), and what the calibration check
    found; FuserError for degenerate data not allowed. The first look's reference run
    shares out the search time (``Budget.referenced``)."""
    require_resolvable(samples_in(held), samples_in(fit), run.allowed, run.search.metric)
    allow = run.search.allow_degenerate_calibration
    check = calibration_check.check_inputs(calibration, run.search.seed, allow)
    looks = Looks(model, held, labels, run.allowed, originals)
    reference = looks.reference(0)
    first = len(next(iter(reference.values())))
    metric = resolve(run.search.metric, reference, None if labels is None else labels[:first])
    run.budget.lap("reference")
    classes = metric.name in ("agreement", "top1")
    if calibration_check.check_outputs(check, reference, classes).findings != check.findings:
        reference = looks.reference(len(looks.ends) - 1)  # degenerate on every sample?
    looks.metric, check = calibration_check.grouped(metric, check, reference, looks.rows, allow)
    judging = looks.timed_judgement() * looks.rows / max(first, 1)
    run.budget.referenced(looks.run_seconds, first, looks.rows, samples_in(fit),
                          judging=judging + 2 * looks.session_seconds)
    return looks, check


def _explore(model: onnx.ModelProto, run: Run, table: LatencyTable, fit: list[Feeds],
             fit_labels: np.ndarray | None, judged: Metric) -> tuple:
    """The plan, the candidates (options faster than dense, why a layer has none, each
    option's measured effect), and the cost model of the budget."""
    search, budget = run.search, run.budget
    plan = make_plan(model, fit, table, search.input_shapes, search.samples, search.seed)
    budget.lap("plan")
    aim = 0.3 if run.kind == "accuracy" else run.fraction
    options, why = offer(plan, table, search.speed_margin, aim)
    table.save()
    scaled, fewer, run.context = in_context(plan, options, model, table, fit[0],
                                            search.speed_margin)
    if run.kind == "latency":  # a target in ms of the whole model: in-context savings
        options, why = scaled, {**why, **fewer}
    found = Candidates(options, why)
    budget.lap("latency")
    count = sensitivity.probe_samples(found.options, budget.left(budget.sensitivity),
                                      budget.per_sample)
    measured = sensitivity.measure(model, plan, found.options,
                                   sensitivity.probe(model, fit, fit_labels, count), judged,
                                   search.reconstruction, budget.sensitivity, run.line)
    found.effects = sensitivity.estimate(plan, found.options, measured,
                                         search.reconstruction, budget.estimates)
    cost = _cost(run.kind, run.fraction, plan, model, fit, table)
    budget.lap("sensitivity")
    return plan, found, cost


def end_to_end(model: onnx.ModelProto, got: Delivered, feeds: Feeds, table: LatencyTable,
                notes: list[str], margin: float) -> float | None:
    """The compressed model's speed-up over the search's input (``LatencyTable.compare``);
    None (and a note naming both models) when it is not at least ``margin / 2`` faster."""
    if got.model is model:
        return 1.0
    before, after = table.compare(model, got.model, feeds)
    if before >= (1 + margin / 2) * after:
        return before / after
    moved = sum(option is not None for option in got.chosen)
    notes.append(f"not faster end to end: the candidate with {moved} of {len(got.chosen)} "
                 f"layers rewritten ran {after:.3f} ms against {before:.3f} ms for the model "
                 f"the search started from (ORT_ENABLE_ALL, batch {table.batch}): every layer "
                 "kept dense")
    return None


def _cost(kind: str, fraction: float, plan: Plan, model: onnx.ModelProto, fit: list[Feeds],
          table: LatencyTable
          ) -> tuple[Callable[[Option], float], list[float], float, float | None]:
    """``(cost of an option, dense costs, cost outside the layers, target)``."""
    if kind == "accuracy":
        return (lambda o: o.ms), plan.dense_ms, 0.0, None
    if kind == "macs":
        dense = [float(layer.macs()) for layer in plan.layers]
        return ((lambda o: float(o.macs)), dense, plan.total_macs - sum(dense),
                fraction * plan.total_macs)
    whole = table.model_ms(model, fit[0])  # at the batch the layers were timed at
    return ((lambda o: o.ms), plan.dense_ms, max(whole - sum(plan.dense_ms), 0.0),
            fraction * whole)


def require_resolvable(held: int, fit: int, allowed: float | None,
                       metric: object) -> None:
    """Refuse, before any search, held-out samples too few to resolve the allowed drop of a
    built-in metric even if no sample were made worse (``metric.needed_samples``): the guard
    could only say "not resolved" at the end. A user's function is judged on its own scale,
    known once the original is scored: the guard says it then."""
    if allowed is None or callable(metric):
        return
    need = needed_samples(allowed, CONFIDENCE)
    if held < need:
        raise FuserError(
            f"{held} held-out calibration samples cannot resolve a drop of {allowed:.2%} at "
            f"{CONFIDENCE:.0%} confidence even with none made worse: that needs {need} (the "
            f"first {fit} samples fit the factors; give at least {fit + need} samples, "
            "--calibration-samples too, or a looser --max-accuracy-drop)")


def samples_in(batches: list[Feeds]) -> int:
    return sum(len(next(iter(b.values()))) for b in batches)


def _notes(calibration: Sequence[Feeds], table: LatencyTable, found: Candidates,
           run: Run) -> list[str]:
    notes, allowed, options, effects = [], run.allowed, found.options, found.effects
    if run.budget.builds < GUARD_BUILDS:
        notes.append(f"the reference run took {run.budget.phases['reference']:.0f} s: the "
                     f"sensitivity runs left time for {run.budget.builds} build(s) of the "
                     f"guard's ladder, not {GUARD_BUILDS} (--search-time)")
    coarsest = tolerance(effects, allowed)
    if allowed is not None and coarsest > SAFETY * allowed:
        notes.append(f"each layer's drop alone (the table's 'drop alone') was measured on "
                     f"the sensitivity probe's few samples, where the smallest drop that "
                     f"reads as more than none is {coarsest:.3g} (one sample changed): more "
                     f"than half the allowed {allowed:.3g}, so a layer that read no drop "
                     "alone may still cost some; the guard's ladder is therefore scaled by "
                     "the layers' output errors, and the guard judges every rung on the "
                     "held-out samples (more calibration samples make the probe finer)")
    if run.context < 1:
        notes.append(f"in context the rewrites saved {run.context:.0%} of what they saved "
                     "timed alone (the whole model against a twin with them, ORT_ENABLE_ALL)"
                     + (": every layer's saving is scaled by it" if run.kind == "latency"
                        else ""))
    if len(calibration) == 1:
        notes.append("a single calibration batch: the guard judges on the samples it was "
                     "fitted to")
    if table.estimated:
        notes.append(f"{table.estimated} factorized latencies estimated from MACs: the "
                     "search time ran out (--search-time)")
    offered = [o for o in options if o]
    reached = [o for o in offered if any(x.key in effects and effects[x.key].measured
                                         for x in o)]
    guessed = [o for o in offered if o not in reached and any(x.key in effects for x in o)]
    if len(reached) < len(offered):
        notes.append(f"sensitivity measured in the network on {len(reached)} of "
                     f"{len(offered)} layers with faster forms within the search time; "
                     f"{len(guessed)} more estimated from their fits alone (output error "
                     "only), the others stay dense")
    return notes

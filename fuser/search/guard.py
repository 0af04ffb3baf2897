"""The guard: the compressed model judged on the held-out samples, a ladder of choices
judged in a fixed order until one is refused, and the verdict in one line.

The guard judges several choices on the same held-out samples and keeps the largest one
accepted. Judged in an order that depends on what they show (start from the full allocation,
back off to a smaller choice after a refusal), each judgement would need its own share of
the 5 % (the samples that flatter a choice get to pick it). The guard uses fixed-sequence
testing instead: the choices are put in order before any is judged (``ladder``: fewest moves
first, from the predicted output errors, which come from the fitting samples), each is judged
at 95 %, and the first refusal ends the ladder. A choice whose true drop is over the bound is
then delivered only if the first such choice in the order was accepted, which its 95 %
interval allows at most 2.5 % of the time (its one-sided shortfall): the delivered choice
holds at 95 %, however many choices were judged, with no assumption on how the drop grows
with the moves.
"""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np
import onnx

from fuser.report.text import percent
from fuser.runtime.runners import Progress
from fuser.search.build import Builder
from fuser.search.config import CONFIDENCE
from fuser.search.forms import Option
from fuser.search.looks import Looks
from fuser.search.metric import Judgement, needed_samples


@dataclasses.dataclass
class Delivered:
    """What the guard delivers: the model, its outputs on the held-out samples its looks
    saw, the guard's judgement of them (by ``metric``), the original's outputs on the same
    samples, the choice it was built from, the layers of the trajectory's last choice that
    it left dense or at another option, the builds it took, and what each rewritten
    layer's factorization kept of its spectrum."""

    model: onnx.ModelProto
    outputs: dict[str, np.ndarray]
    verdict: Judgement
    reference: dict[str, np.ndarray]
    chosen: list[Option | None]
    backed_off: list[str]
    builds: int
    metric: str = ""
    energies: dict[int, float] = dataclasses.field(default_factory=dict)
    #: the ladder's rungs judged, in order: (moves, judgement, accepted)
    rungs: list[tuple[int, Judgement, bool]] = dataclasses.field(default_factory=list)

    def original(self, model: onnx.ModelProto, looks: Looks) -> Delivered:
        """The original instead (every layer dense), with its verdict."""
        verdict, reference = looks.original()
        return dataclasses.replace(self, model=model, outputs=reference, verdict=verdict,
                                   reference=reference, chosen=[None] * len(self.chosen))


#: The ladder's rungs: predicted output errors of ``RATIO ** m`` times the error bound the
#: sensitivities calibrate (``choose.error_bound``), m in ``RUNGS``. The measured error of a
#: whole build is 1.4-1.7 times the prediction from single layers, and the drop is not
#: proportional to it (a detector's recall is a threshold): the ladder starts at a quarter
#: of the bound and climbs past it where the metric bears more. A ladder cut short by the
#: search time delivers a modest choice, not a refusal.
RATIO = 1.4
RUNGS = range(-4, 3)
#: The last rung's multiple of the bound: the trajectory need not go further.
REACH = RATIO ** max(RUNGS)


def ladder(errors: list[float], bound: float, rungs: range = RUNGS) -> list[int]:
    """The states the guard judges, in order: for each rung, the state with the most moves
    whose predicted error (``errors[k]``) is within it; each state once, fewest moves first.
    Without a bound (infinite), the last state alone."""
    order: list[int] = []
    for m in rungs:
        edge = bound * RATIO ** m
        fitting = [k for k in range(1, len(errors)) if errors[k] <= edge * (1 + 1e-9)]
        if fitting and (not order or max(fitting) > order[-1]):
            order.append(max(fitting))
    return order


def largest_accepted(builder: Builder, states: list[list[Option | None]],
                     errors: list[float], bound: float, looks: Looks, notes: list[str],
                     line: Progress, deadline: float | None = None) -> Delivered:
    """The ladder's choice with the most moves that the guard accepts (module docstring).

    ``states`` are the trajectory's choices (``choose.trajectory``: ``states[k]`` after k
    moves, ``states[0]`` all dense), ``errors`` their predicted output errors and ``bound``
    the error bound the ladder's rungs are scaled by. Each build is from its first changed
    layer on (``Builder``), and judged look by look (``Looks.judged``). Without an allowed drop, the last state is built and judged
    alone. Builds are timed by the last one: when fewer fit before ``deadline`` than rungs
    are left, the rungs judged are spread over those left (``spread``); when none fits, the
    largest accepted choice is delivered, the dense original if none was, and a note says
    so.
    """
    allowed, last = looks.allowed, len(states) - 1
    rungs = getattr(builder, "rungs", RUNGS)  # int8's builder climbs fewer, wider rungs
    order = ladder(errors, bound, rungs) if allowed is not None else [last] if last else []
    best, kept, builds, position, judged = None, 0, 0, 0, []
    while position < len(order):
        k, began = order[position], time.perf_counter()
        label = getattr(builder, "label", "low-rank")  # int8's builder names itself
        line.show(f"{label}: building the model with {k} of {last} moves "
                  f"(rung {position + 1} of {len(order)})")
        result = builder.build(states[k])
        verdict, new, reference = looks.judged(result)
        builds += 1
        judged.append((k, verdict, allowed is None or accepted(verdict, allowed)))
        if not judged[-1][2]:
            notes.append(f"refused {k} of {last} moves: {looks.metric.name} drop "
                         f"{verdict.drop:.3f}, {percent(verdict.confidence)} interval "
                         f"{verdict.interval[0]:.3f} to {verdict.interval[1]:.3f} on "
                         f"{held_out(verdict)}; the ladder stops there")
            break
        best, kept, position = (builder.kept(result), new, verdict, reference), k, position + 1
        room = _room(began, deadline)
        if position < len(order) and room == 0:
            notes.append(f"the search time ran out on the guard's ladder: {k} of {last} "
                         "moves kept (the most the guard accepted)")
            break
        if room < len(order) - position:
            left, order[position:] = order[position:], spread(order[position:], room)
            skipped = [k for k in left if k not in order[position:]]
            notes.append(f"the search time allows {room} more "
                         f"{'build' if room == 1 else 'builds'}: the ladder goes on at "
                         f"{', '.join(map(str, order[position:]))} of {last} moves, skipping "
                         f"{', '.join(map(str, skipped))} (a busy machine or a short "
                         "--search-time: the choice delivered may be smaller than the "
                         "bound allows)")
    line.clear()
    return dataclasses.replace(_delivered(builder, states, kept, best, builds, looks, notes),
                               rungs=judged)


def _delivered(builder: Builder, states: list[list[Option | None]], kept: int, best: tuple | None,
               builds: int, looks: Looks, notes: list[str]) -> Delivered:
    """The choice kept (``best``: its model, outputs, verdict and the original's outputs;
    None: the original), with the notes on the ladder and on the layers backed off."""
    if builds > 1:
        notes.append(f"the guard judged {builds} choices in a fixed order, fewest moves first, "
                     f"each at {percent(CONFIDENCE)} over its looks, up to the first refused: "
                     "the delivered one holds at that level (fixed-sequence testing)")
    if best is None:
        verdict, reference = looks.original()
        best = (builder.model, reference, verdict, reference)
    last = len(states) - 1
    changed = [i for i, (a, b) in enumerate(zip(states[last], states[kept], strict=True))
               if a != b]
    notes += [f"backed off {builder.layers[i].name}: {form_text(states[last][i])} -> "
              f"{form_text(states[kept][i])}" for i in changed]
    return Delivered(*best, states[kept], [builder.layers[i].name for i in changed], builds,
                     looks.metric.name, dict(builder.energies))


def _room(began: float, deadline: float | None) -> int | float:
    """How many builds like the last one (begun at ``began``) fit before the deadline."""
    now = time.perf_counter()
    if deadline is None:
        return math.inf
    return max(int((deadline - now) // max(now - began, 1e-9)), 0)


def spread(rungs: list[int], count: int) -> list[int]:
    """``count`` of the ``rungs`` left, spread evenly over them (at the quantiles
    ``i / (count + 1)``): with too little time for every rung, the builds that fit span
    the ladder instead of stopping at its low end. The choice depends on time alone, not on
    what the guard saw, so the ladder is still fixed before its choices are judged."""
    return [rungs[(i + 1) * (len(rungs) + 1) // (count + 1) - 1] for i in range(count)]


def form_text(option: Option | None) -> str:
    if option is None:
        return "dense"
    rank = "x".join(map(str, option.rank)) if isinstance(option.rank, tuple) else option.rank
    return f"{option.method} rank {rank}"


def guard(verdict: Judgement, allowed: float | None, compressed: bool
          ) -> tuple[bool | None, str]:
    """The guard's verdict (None without a bound) and its reason in one line."""
    interval = (f"{verdict.drop:.2%} [{percent(verdict.confidence)} interval "
                f"{verdict.interval[0]:.2%}, {verdict.interval[1]:.2%}] on "
                f"{held_out(verdict)}")
    if allowed is None:
        return None, f"drop {interval}; no bound"
    if not compressed:
        return True, "every layer kept dense: the model is the original"
    if verdict.within(allowed):
        return True, f"drop {interval} within {allowed:.2%}"
    if verdict.interval[0] > allowed:
        return False, f"refused: drop {interval} exceeds {allowed:.2%}"
    if not verdict.resolvable(allowed):
        return False, (f"not resolved: {held_out(verdict)} cannot resolve a "
                       f"drop of {allowed:.2%} at {percent(verdict.confidence)} (need "
                       f"{needed_samples(allowed, verdict.confidence)}; give more "
                       "calibration samples or a looser bound)")
    if verdict.drop <= allowed:
        return False, (f"not resolved: drop {interval} reaches past {allowed:.2%}; give "
                       "more calibration samples or a looser bound")
    return False, f"refused: drop {interval} exceeds {allowed:.2%}"


def held_out(verdict: Judgement) -> str:
    """``896 held-out samples``, ``3 distinct of 896 held-out samples`` with near-copies,
    ``224 of 896 held-out samples (look 1 of 3)`` when the looks stopped early."""
    rows = verdict.rows or verdict.samples
    seen = f"{verdict.samples} distinct of {rows}" if rows != verdict.samples else str(rows)
    if verdict.held_rows > rows:
        return (f"{seen} of {verdict.held_rows} held-out samples (look {verdict.look} of "
                f"{verdict.looks})")
    return f"{seen} held-out samples"


def accepted(verdict: Judgement, allowed: float) -> bool:
    """Within bounds on the interval's upper end; when this many samples cannot resolve the
    bound at all, the point estimate decides the ladder (the guard then says so)."""
    if verdict.resolvable(allowed):
        return verdict.within(allowed)
    return verdict.drop <= allowed

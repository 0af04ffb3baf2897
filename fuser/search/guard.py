"""The guard: the compressed model judged on the held-out samples, the back-off over the
allocation's moves while it is out of bounds, and the verdict in one line.

The back-off judges several choices on the same held-out samples and keeps the largest one
accepted: judged each at 95 %, the chance that some choice whose true drop is over the bound
passes grows with the number judged, and the choice kept is the one the samples flattered
most. The j-th judgement is therefore made at the level ``1 - 0.05 / 2**j`` (``level``:
97.5 %, 98.75 %, ...): the levels' shortfalls sum to less than 5 %, so by the union bound
every choice judged, and with it the one delivered, holds at 95 % together.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import onnx

from fuser.report.text import percent
from fuser.runtime.runners import Progress
from fuser.search.build import Builder, outputs
from fuser.search.calibrate import Feeds
from fuser.search.forms import Option
from fuser.search.metric import CONFIDENCE, Judgement, Metric, judge, needed_samples


@dataclasses.dataclass
class Delivered:
    """What the back-off delivers: the model, its outputs on the held-out samples and the
    guard's judgement of them, the choice it was built from, the layers backed off from the
    first allocation, and the builds it took."""

    model: onnx.ModelProto
    outputs: dict[str, np.ndarray]
    verdict: Judgement
    chosen: list[Option | None]
    backed_off: list[str]
    builds: int


#: After a refusal, the back-off aims at this share of the allowed drop.
AIM = 0.7


def level(judgement: int) -> float:
    """The confidence of the ``judgement``-th (from 1) judgement on the same held-out
    samples: ``1 - (1 - CONFIDENCE) / 2**judgement`` (the module docstring)."""
    return 1 - (1 - CONFIDENCE) / 2 ** judgement


def back_off_until_accepted(builder: Builder, states: list[list[Option | None]],
                            errors: list[float], held: list[Feeds], reference: dict,
                            labels: np.ndarray | None, judged: Metric, allowed: float | None,
                            notes: list[str], line: Progress, deadline: float | None = None
                            ) -> Delivered:
    """The longest prefix of the allocation's moves (``choose.trajectory``: ``states[k]``
    is the choice after k moves, ``states[0]`` all dense) that the guard accepts.

    The full allocation is built first. Each next choice is predicted (``next_state``) from
    ``errors`` (each state's output error predicted from the layers' measured errors) and
    what the guard saw on the smallest refused: a few builds however many moves there are.
    Each build is from its first changed layer on (``Builder``). A next build is not started
    when it would end past ``deadline`` (its time estimated by the last one's), nor when the
    held-out samples could not resolve the bound at its judgement's level (``level``): the
    largest accepted choice is delivered then, the dense original if none was, and a note
    says so.
    """
    last = len(states) - 1
    lo, hi, k, builds = 0, last + 1, last, 0
    best = None
    while k > 0:
        began = time.perf_counter()
        line.show(f"low-rank: building the model with {k} of {last} moves "
                  f"({builds} builds so far)")
        result = builder.build(states[k])
        new = outputs(result, held, level="all")
        builds += 1
        verdict = judge(judged, reference, new, labels,
                        confidence=CONFIDENCE if allowed is None else level(builds))
        refused = allowed is not None and not accepted(verdict, allowed)
        if not refused:
            lo, best = k, (result, new, verdict)
        else:
            hi, seen = k, (verdict.interval[1] if verdict.resolvable(allowed)
                           else verdict.drop)
            notes.append(f"refused {k} of {last} moves: {judged.name} drop {verdict.drop:.3f}, "
                         f"{percent(verdict.confidence)} interval up to "
                         f"{verdict.interval[1]:.3f}")
        if hi - lo <= 1:
            break
        stop = _stop(verdict, allowed, builds, began, deadline)
        if stop:
            notes.append(stop.format(kept=f"{lo} of {last} moves kept"))
            break
        k = next_state(lo, hi, errors, seen, allowed, refused)
    line.clear()
    if builds > 1:
        notes.append(f"the guard judged {builds} choices on the same held-out samples, the "
                     f"j-th at 1 - 5%/2^j ({percent(level(1))}, {percent(level(2))}, ...) so "
                     "that all hold together at 95%")
    if best is None:
        best = (builder.model, reference, judge(judged, reference, reference, labels))
    changed = [i for i, (a, b) in enumerate(zip(states[last], states[lo], strict=True))
               if a != b]
    notes += [f"backed off {builder.layers[i].name}: {form_text(states[last][i])} -> "
              f"{form_text(states[lo][i])}" for i in changed]
    return Delivered(*best, states[lo], [builder.layers[i].name for i in changed], builds)


def _stop(verdict: Judgement, allowed: float | None, builds: int, began: float,
          deadline: float | None) -> str | None:
    """Why no next build starts (a note with a ``{kept}`` field), or None: its judgement
    could not resolve the bound, or it would end past the deadline (its time estimated by
    the last build's)."""
    if allowed is not None and not verdict.resolvable(allowed, level(builds + 1)):
        return (f"{verdict.samples} held-out samples cannot resolve {allowed:.2%} at the "
                f"next judgement's level ({percent(level(builds + 1))}): {{kept}} (give "
                "more calibration samples for a longer back-off)")
    now = time.perf_counter()
    if deadline is not None and now + (now - began) > deadline:
        return "the search time ran out in the back-off: {kept} (the most the guard accepted)"
    return None


def next_state(lo: int, hi: int, errors: list[float], seen: float, allowed: float,
               refused: bool) -> int:
    """The next state to build, in (lo, hi), ``hi`` refused with the guard seeing ``seen``
    (the interval's upper end, or the drop where the samples cannot resolve the bound).

    The drop is taken as proportional to the output error, as it is for small perturbations
    of a classifier's scores (samples flip in proportion to the perturbation): the bound is
    predicted at the error ``errors[hi] * allowed / seen``. Just after a refusal, the state
    with the most moves at ``AIM`` times that error (one move above ``lo`` if none); after an
    acceptance, at that error itself, or the midpoint if no state between is predicted to
    pass (the prediction was too cautious)."""
    edge = errors[hi] * allowed / max(seen, 1e-12)
    goal = edge * (AIM if refused else 1.0)
    fitting = [k for k in range(lo + 1, hi) if errors[k] <= goal]
    if fitting:
        return max(fitting)
    return lo + 1 if refused else (lo + hi) // 2


def form_text(option: Option | None) -> str:
    if option is None:
        return "dense"
    rank = "x".join(map(str, option.rank)) if isinstance(option.rank, tuple) else option.rank
    return f"{option.method} rank {rank}"


def guard(verdict: Judgement, allowed: float | None, compressed: bool
          ) -> tuple[bool | None, str]:
    """The guard's verdict (None without a bound) and its reason in one line."""
    interval = (f"{verdict.drop:.2%} [{percent(verdict.confidence)} interval "
                f"{verdict.interval[0]:.2%}, {verdict.interval[1]:.2%}] on {verdict.samples} "
                "held-out samples")
    if allowed is None:
        return None, f"drop {interval}; no bound"
    if not compressed:
        return True, "every layer kept dense: the model is the original"
    if verdict.within(allowed):
        return True, f"drop {interval} within {allowed:.2%}"
    if not verdict.resolvable(allowed):
        return False, (f"not resolved: {verdict.samples} held-out samples cannot resolve a "
                       f"drop of {allowed:.2%} at {percent(verdict.confidence)} (need "
                       f"{needed_samples(allowed, verdict.confidence)}; give more "
                       "calibration samples or a looser bound)")
    if verdict.drop <= allowed:
        return False, (f"not resolved: drop {interval} reaches past {allowed:.2%}; give "
                       "more calibration samples or a looser bound")
    return False, f"refused: drop {interval} exceeds {allowed:.2%}"


def accepted(verdict: Judgement, allowed: float) -> bool:
    """Within bounds on the interval's upper end; when this many samples cannot resolve the
    bound at all, the point estimate stops the back-off (the guard then says so)."""
    if verdict.resolvable(allowed):
        return verdict.within(allowed)
    return verdict.drop <= allowed

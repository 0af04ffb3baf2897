"""The guard: the compressed model judged on the held-out samples, the back-off while it is
out of bounds, and the verdict in one line."""

from __future__ import annotations

import numpy as np

from fuser.runtime.runners import Progress
from fuser.search.build import Builder, outputs
from fuser.search.calibrate import Feeds
from fuser.search.choose import back_off
from fuser.search.forms import Option
from fuser.search.metric import Judgement, Metric, judge, needed_samples


def back_off_until_accepted(builder: Builder, chosen: list[Option | None],
                            options: list[list[Option]], effects: dict, cost: tuple,
                            held: list[Feeds], reference: dict, labels: np.ndarray | None,
                            judged: Metric, allowed: float | None, notes: list[str],
                            line: Progress) -> tuple:
    """Build, judge, and move the worst options towards dense until the guard accepts:
    one option per step for two steps, then twice as many each step."""
    price, dense = cost[0], cost[1]
    backed_off: list[str] = []
    while True:
        line.show(f"low-rank: building the model ({len(backed_off)} back-off steps so far)")
        result = builder.build(chosen)
        new = outputs(result, held, level="all")
        verdict = judge(judged, reference, new, labels)
        if allowed is None or not any(chosen) or accepted(verdict, allowed):
            line.clear()
            return result, new, verdict, backed_off
        moves = 1 if len(backed_off) < 2 else 2 ** (len(backed_off) - 1)
        names = []
        for _ in range(moves):
            if not any(chosen):
                break
            before = chosen[:]
            layer = back_off(chosen, options, effects, price, dense, allowed)
            names.append(builder.layers[layer].name)
            notes.append(f"backed off {names[-1]}: {form_text(before[layer])} -> "
                         f"{form_text(chosen[layer])} ({judged.name} drop {verdict.drop:.3f}, "
                         f"95% interval up to {verdict.interval[1]:.3f})")
        backed_off.append(", ".join(names))


def form_text(option: Option | None) -> str:
    if option is None:
        return "dense"
    rank = "x".join(map(str, option.rank)) if isinstance(option.rank, tuple) else option.rank
    return f"{option.method} rank {rank}"


def guard(verdict: Judgement, allowed: float | None, compressed: bool
          ) -> tuple[bool | None, str]:
    """The guard's verdict (None without a bound) and its reason in one line."""
    interval = (f"{verdict.drop:.2%} [95% interval {verdict.interval[0]:.2%}, "
                f"{verdict.interval[1]:.2%}] on {verdict.samples} held-out samples")
    if allowed is None:
        return None, f"drop {interval}; no bound"
    if not compressed:
        return True, "every layer kept dense: the model is the original"
    if verdict.within(allowed):
        return True, f"drop {interval} within {allowed:.2%}"
    if not verdict.resolvable(allowed):
        return False, (f"not resolved: {verdict.samples} held-out samples cannot resolve a "
                       f"drop of {allowed:.2%} (need {needed_samples(allowed)}; give more "
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

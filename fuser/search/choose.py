"""Choosing one option (a form at a rank, or dense) per layer from measured effects.

Each measured option has a cost (its latency alone, or MACs) and an effect when its layer
alone is rewritten (``sensitivity``): the metric's drop ``d`` on the probe samples and the
relative output error ``e``. The metric is coarse on a small probe (one sample of 64 moves
it by 1.6 points) and drops of different layers do not add; output errors do, in
quadrature, when the layers' perturbations are independent: ``e_total^2 ~ sum e_l^2``. So:

- an option is usable only if its own drop is within the ``tolerance``: ``SAFETY`` times the
  allowed drop, or one step of the metric on the probe when that is coarser (one sample in
  64 of a share metric: a single sample is noise the probe cannot resolve; the step is the
  smallest non-zero drop measured);
- options the network runs did not reach get an estimate from their fits alone
  (``sensitivity.estimate``: an output error, no drop), so every layer can move;
- the metric calibrates an error bound ``E`` from every option measured, pooled: the drop
  as a non-decreasing function of the output error (isotonic regression, scipy), and ``E``
  the largest error measured at which that fit stays within ``SAFETY`` times the allowed
  drop (one option's drop on a small probe is noise; dozens of them pooled are not);
- ``allocate`` starts from the dense network and takes the move (a layer to a cheaper
  option) with the least added ``e^2`` per unit of cost saved, until the cost reaches the
  budget's target or no move keeps ``sum e_l^2 <= E^2``.

Without an allowed drop, no option is filtered and no bound applies: the target decides.
``trajectory`` keeps every choice on the way, past ``E`` if asked: the guard judges a ladder
of its prefixes (``guard.ladder``), so the moves with the most ``e^2`` per unit saved are
the last to be delivered.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import numpy as np

from fuser.search.forms import Effect, Option

SAFETY = 0.5


#: The error bound when no option was measured in the network (all estimated from their
#: fits: ``sensitivity.estimate``): a 5 % relative output error, what ``rel-error`` allows.
UNMEASURED_BOUND = 0.05


def tolerance(effects: Mapping[tuple, Effect], allowed: float | None) -> float:
    """The largest drop of an option alone that is used (module docstring)."""
    if allowed is None:
        return math.inf
    steps = [e.drop for e in effects.values() if e.measured and e.drop > 1e-12]
    return max(SAFETY * allowed, min(steps, default=0.0))


def usable(option: Option, effects: Mapping[tuple, Effect], allowed: float | None) -> bool:
    effect = effects.get(option.key)
    return effect is not None and effect.drop <= tolerance(effects, allowed)


def error_bound(effects: Mapping[tuple, Effect], allowed: float | None) -> float:
    """``E`` of the module docstring (infinite without an allowed drop; 0 when even the
    smallest error measured is past it). scipy.optimize is imported here: it costs a third
    of a second, and every command (``onnx-fuser --version`` too) imports this module."""
    from scipy.optimize import isotonic_regression

    if allowed is None or not effects:
        return math.inf
    pairs = sorted((e.error, e.drop) for e in effects.values() if e.measured)
    if not pairs:  # every effect estimated: no drop to calibrate the bound on
        return UNMEASURED_BOUND
    errors = np.array([p[0] for p in pairs])
    fitted = isotonic_regression(np.array([p[1] for p in pairs]), increasing=True).x
    within = errors[fitted <= SAFETY * allowed]
    return float(within.max()) if len(within) else 0.0


def predicted_error(chosen: list[Option | None], effects: Mapping[tuple, Effect]) -> float:
    """The output error of a choice predicted from its layers' errors alone: the root of
    ``sum e_l^2``."""
    return math.sqrt(sum(_squared(o, effects) for o in chosen))


def _squared(option: Option | None, effects: Mapping[tuple, Effect]) -> float:
    return 0.0 if option is None else effects[option.key].error ** 2


def allocate(options: list[list[Option]], effects: Mapping[tuple, Effect],
             cost: Callable[[Option], float], dense: list[float], fixed: float,
             target: float | None, allowed: float | None) -> list[Option | None]:
    """One option per layer (None: dense); see the module docstring."""
    return trajectory(options, effects, cost, dense, fixed, target, allowed)[-1]


def trajectory(options: list[list[Option]], effects: Mapping[tuple, Effect],
               cost: Callable[[Option], float], dense: list[float], fixed: float,
               target: float | None, allowed: float | None, reach: float = 1.0
               ) -> list[list[Option | None]]:
    """Every choice ``allocate`` passes through, from all dense (the first) to its answer
    (the last): each one move further, the moves in order of added ``e^2`` per unit saved,
    with ``E`` taken ``reach`` times as large (the guard's ladder climbs past it). The
    guard judges prefixes of these moves (``guard.ladder``)."""
    chosen: list[Option | None] = [None] * len(options)
    states = [chosen[:]]
    current = list(dense)
    budget = (error_bound(effects, allowed) * reach) ** 2
    spent = 0.0
    while target is None or fixed + sum(current) > target:
        best, best_key = None, None
        for layer, offered in enumerate(options):
            now = _squared(chosen[layer], effects)
            for option in offered:
                if not usable(option, effects, allowed):
                    continue
                saved, added = current[layer] - cost(option), _squared(option, effects) - now
                if saved <= 0 or spent + added > budget:
                    continue
                key = (max(added, 0.0) / saved, -saved)
                if best_key is None or key < best_key:
                    best, best_key = (layer, option, added), key
        if best is None:
            break
        layer, option, added = best
        chosen[layer], current[layer] = option, cost(option)
        spent += added
        states.append(chosen[:])
    return states

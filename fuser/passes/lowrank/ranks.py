"""Global greedy rank allocation under a budget (Zhang et al. 2016).

Each layer l has a spectrum (response-PCA eigenvalues, descending) whose retained energy at
rank d is ``E_l(d) = sum_{a <= d} lambda_a / sum lambda``, and a cost per rank (MACs or
measured latency). The allocation maximizes ``sum_l log E_l(d_l)`` subject to
``sum_l cost_l(d_l) <= budget``: starting from the dense network, it repeatedly takes the
rank reduction with the smallest loss of log-energy per unit of cost saved. A layer whose
factorized cost at a rank is not below its dense cost stays dense at that rank: a rewrite is
only chosen where it is cheaper.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

DENSE = 0


def retained(spectrum: np.ndarray, rank: int) -> float:
    total = float(spectrum.sum())
    return float(spectrum[:rank].sum()) / total if total > 0 else 1.0


def allocate(spectra: Sequence[np.ndarray], cost: Callable[[int, int], float],
             dense: Sequence[float], ranks: Sequence[Sequence[int]], budget: float,
             fixed: float = 0.0) -> list[int]:
    """Ranks per layer (``DENSE`` = keep the layer) meeting ``fixed + sum cost <= budget``.

    ``cost(layer, rank)`` is the factorized cost; ``ranks[l]`` the ranks to consider for
    layer l, descending. Stops early, best effort, when no reduction is left.
    """
    chosen = [DENSE] * len(spectra)
    current = list(dense)
    position = [-1] * len(spectra)  # index into ranks[l] of the current rank
    total = fixed + sum(current)
    while total > budget:
        best, best_ratio = None, math.inf
        for layer, options in enumerate(ranks):
            move = _next_cheaper(layer, options, position[layer], current[layer], cost)
            if move is None:
                continue
            index, new_cost = move
            rank = options[index]
            before = 1.0 if chosen[layer] == DENSE else retained(spectra[layer], chosen[layer])
            after = retained(spectra[layer], rank)
            loss = math.log(max(before, 1e-300)) - math.log(max(after, 1e-300))
            ratio = loss / (current[layer] - new_cost)
            if ratio < best_ratio:
                best, best_ratio = (layer, index, new_cost), ratio
        if best is None:
            break
        layer, index, new_cost = best
        total -= current[layer] - new_cost
        current[layer], position[layer], chosen[layer] = new_cost, index, ranks[layer][index]
    return chosen


def _next_cheaper(layer: int, options: Sequence[int], position: int, current: float,
                  cost: Callable[[int, int], float]) -> tuple[int, float] | None:
    for index in range(position + 1, len(options)):
        value = cost(layer, options[index])
        if value < current:
            return index, value
    return None

"""Rank by empirical variational Bayesian matrix factorization (EVBMF, Nakajima et al.,
JMLR 2013), as Kim et al. (2016) use for Tucker-2 ranks.

For ``Y`` (L x M, L <= M) with singular values ``s``, the noise variance ``sigma^2``
minimizes the EVB free energy

    F(sigma^2) = sum_{x_h <= xbar} (x_h - log x_h)
               + sum_{x_h > xbar} (x_h - tau(x_h) + log((tau(x_h) + 1) / x_h)
                                   + alpha log(tau(x_h) / alpha + 1))
               + residual / (M sigma^2) + (L - H) log sigma^2,
    x_h = s_h^2 / (M sigma^2),   alpha = L / M,   xbar = (1 + taubar)(1 + alpha / taubar),
    taubar = 2.5129 sqrt(alpha),  tau(x) = (x - 1 - alpha + sqrt((x - 1 - alpha)^2 - 4 alpha)) / 2

and the rank is the number of singular values above ``sqrt(M sigma^2 xbar)``. Known to be
aggressive without fine-tuning (LESSONS.md: ranks 2-8 destroyed a trained net): a fallback,
not a recommendation. The 1-D minimization is a log-spaced grid refined by golden section.
"""

from __future__ import annotations

import numpy as np


def _tau(x: np.ndarray, alpha: float) -> np.ndarray:
    b = x - (1 + alpha)
    return 0.5 * (b + np.sqrt(np.maximum(b * b - 4 * alpha, 0.0)))


def _free_energy(sigma2: float, length: int, width: int, s: np.ndarray, residual: float,
                 xbar: float) -> float:
    alpha = length / width
    x = s**2 / (width * sigma2)
    small, large = x[x <= xbar], x[x > xbar]
    tau = _tau(large, alpha)
    value = float(np.sum(small - np.log(small)) + np.sum(large - tau)
                  + np.sum(np.log((tau + 1) / large)) + alpha * np.sum(np.log(tau / alpha + 1)))
    return value + residual / (width * sigma2) + (length - len(s)) * np.log(sigma2)


def vbmf_rank(y: np.ndarray) -> int:
    """The EVBMF rank of matrix ``y``."""
    if y.shape[0] > y.shape[1]:
        y = y.T
    length, width = y.shape
    s = np.linalg.svd(y, compute_uv=False)
    s = s[s > 1e-12 * max(s[0], 1e-300)] if s.size else s
    if s.size == 0:
        return 0
    alpha = length / width
    taubar = 2.5129 * np.sqrt(alpha)
    xbar = (1 + taubar) * (1 + alpha / taubar)
    residual = max(float(np.sum(y**2) - np.sum(s**2)), 0.0)
    upper = (float(np.sum(s**2)) + residual) / (length * width)
    cut = int(min(np.ceil(length / (1 + alpha)) - 1, len(s) - 1))
    tail = s[cut:] if cut < len(s) else s[-1:]
    lower = max(float(s[min(cut, len(s) - 1)] ** 2) / (width * xbar),
                float(np.mean(tail**2)) / width, upper * 1e-12)
    if lower >= upper:
        lower = upper * 1e-6
    grid = np.geomspace(lower, upper, 200)
    energies = [_free_energy(g, length, width, s, residual, xbar) for g in grid]
    best = int(np.argmin(energies))
    a, b = grid[max(best - 1, 0)], grid[min(best + 1, len(grid) - 1)]
    ratio = (np.sqrt(5) - 1) / 2
    for _ in range(60):  # golden-section refinement on the bracket
        c, d = b - ratio * (b - a), a + ratio * (b - a)
        if _free_energy(c, length, width, s, residual, xbar) < \
                _free_energy(d, length, width, s, residual, xbar):
            b = d
        else:
            a = c
    sigma2 = (a + b) / 2
    threshold = np.sqrt(width * sigma2 * xbar)
    return int(np.sum(s > threshold))

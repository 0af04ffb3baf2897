"""Low-rank factorizations of Conv and Gemm/MatMul weights, in float64 numpy.

Every function returns the factor weights of one ONNX form (see ``rewrite``); at full rank
each reproduces the original exactly (up to float rounding). Singular values are split as
square roots between the two sides so both factors have similar scale.

Weight-only methods:

- ``svd_matrix``: ``W (N x K) ~ B A``, ``A = sqrt(S) V^T (r x K)``, ``B = U sqrt(S) (N x r)``.
- ``spatial_svd`` (Jaderberg 2014): ``W[n, c, i, j] ~ sum_r V[r, c, i] H[n, r, j]`` from the
  SVD of W arranged as ``M[(c, i), (n, j)]``: a k x 1 conv C -> R, then a 1 x k conv R -> N.
- ``channel_svd``: SVD of W as ``(N, C kh kw)``: a k x k conv C -> R, then 1 x 1 R -> N.
- ``tucker2`` (Kim 2016): HOSVD on the output and input modes, ``W ~ G x0 U_out x1 U_in``:
  1 x 1 C -> R3, k x k R3 -> R4 (the core G), 1 x 1 R4 -> N.
- ``cp`` (Lebedev 2015): CP-ALS, ``W[n, c, i, j] ~ sum_r A[n, r] B[c, r] Kh[i, r] Kw[j, r]``:
  1 x 1 C -> R, depthwise k x 1, depthwise 1 x k, 1 x 1 R -> N (lambda folded into A).

Data-aware methods (need calibration responses, see ``calibrate``):

- ``response_pca`` (Zhang et al. 2015, linear): the top-d eigenvectors Q of the covariance
  of the responses y = W x give ``W' = Q^T W`` (k x k, C -> d) and ``P = Q`` (1 x 1, d -> N),
  with bias ``b + (I - Q Q^T) mean(y)``.
- ``asymmetric`` (Zhang et al., asymmetric reconstruction): fit ``y ~ M y_hat + c`` with
  rank(M) = d, where y are the original network's responses and y_hat the responses of the
  original filters to the *approximated* network's inputs; least squares, then projection
  on the top-d principal subspace of the fitted values.
- ``whitened_svd`` (for Gemm/MatMul): SVD of ``W L`` with ``L L^T`` the input covariance, so
  truncation minimizes the output error on the calibration data, not the weight error.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass
class Factors:
    """Factor weights (float64) and what the truncation kept."""

    weights: list[np.ndarray]
    rank: int | tuple[int, int]
    energy: float  # fraction of the spectrum's energy kept (1.0 at full rank)
    bias_shift: np.ndarray | None = None  # added to the last factor's bias (data-aware)
    mixing: np.ndarray | None = None  # data-aware: the (d x N) map applied to responses


def _split(u: np.ndarray, s: np.ndarray, vt: np.ndarray, r: int) -> tuple[np.ndarray, np.ndarray]:
    root = np.sqrt(s[:r])
    return u[:, :r] * root, root[:, None] * vt[:r]


def _energy(s: np.ndarray, r: int) -> float:
    total = float(np.sum(s**2))
    return float(np.sum(s[:r] ** 2)) / total if total > 0 else 1.0


def _thin_svd(m: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The SVD of ``m``; for N > 2K from the K x K ``m^T m = V S^2 V^T`` (``U = m V / S``;
    values under 1e-7 of the largest are rounding there, and zero): 2.7 s, not 10.7 s, for
    an OCR head of 8210 x 1024."""
    if m.shape[0] <= 2 * m.shape[1]:
        return np.linalg.svd(m, full_matrices=False)
    values, v = np.linalg.eigh(m.T @ m)
    s, v = np.sqrt(np.clip(values[::-1], 0, None)), v[:, ::-1]  # eigh: ascending
    s = np.where(s > s[0] * 1e-7, s, 0.0)
    return (m @ v) / np.where(s > 0, s, np.inf), s, v.T


def svd_matrix(w: np.ndarray, r: int) -> Factors:
    """``w (N x K) ~ B @ A``: returns ``[A (r x K), B (N x r)]`` (apply A first)."""
    u, s, vt = np.linalg.svd(w, full_matrices=False)
    b, a = _split(u, s, vt, r)
    return Factors([a, b], r, _energy(s, r))


def spatial_svd(w: np.ndarray, r: int) -> Factors:
    """Conv weight (N, C, kh, kw) -> [vertical (r, C, kh, 1), horizontal (N, r, 1, kw)]."""
    n, c, kh, kw = w.shape
    m = w.transpose(1, 2, 0, 3).reshape(c * kh, n * kw)  # M[(c, i), (n, j)]
    u, s, vt = np.linalg.svd(m, full_matrices=False)
    left, right = _split(u, s, vt, r)  # (c kh, r), (r, n kw)
    vertical = left.T.reshape(r, c, kh, 1)
    horizontal = right.reshape(r, n, 1, kw).transpose(1, 0, 2, 3)
    return Factors([vertical, horizontal], r, _energy(s, r))


def channel_svd(w: np.ndarray, r: int) -> Factors:
    """Conv weight (N, C, kh, kw) -> [k x k (r, C, kh, kw), pointwise (N, r, 1, 1)]."""
    n = w.shape[0]
    u, s, vt = np.linalg.svd(w.reshape(n, -1), full_matrices=False)
    b, a = _split(u, s, vt, r)
    return Factors([a.reshape((r, *w.shape[1:])), b.reshape(n, r, 1, 1)], r, _energy(s, r))


def tucker2(w: np.ndarray, r_in: int, r_out: int) -> Factors:
    """Conv weight (N, C, kh, kw) -> [(r_in, C, 1, 1), core (r_out, r_in, kh, kw),
    (N, r_out, 1, 1)] by truncated HOSVD of the two channel modes."""
    n, c = w.shape[:2]
    u_out, s_out, _ = np.linalg.svd(w.reshape(n, -1), full_matrices=False)
    u_in, s_in, _ = np.linalg.svd(w.transpose(1, 0, 2, 3).reshape(c, -1), full_matrices=False)
    r_out, r_in = min(r_out, u_out.shape[1]), min(r_in, u_in.shape[1])  # beyond: zero energy
    u_out, u_in = u_out[:, :r_out], u_in[:, :r_in]
    core = np.einsum("ncij,nr,cs->rsij", w, u_out, u_in)
    energy = float(np.sum(core**2) / np.sum(w**2)) if np.any(w) else 1.0
    return Factors([u_in.T.reshape(r_in, c, 1, 1), core, u_out.reshape(n, r_out, 1, 1)],
                   (r_in, r_out), energy)


def cp(w: np.ndarray, r: int, *, iterations: int = 200, tolerance: float = 1e-6,
       restarts: int = 0, seed: int = 0) -> Factors:
    """Conv weight (N, C, kh, kw) -> [(r, C, 1, 1), depthwise (r, 1, kh, 1),
    depthwise (r, 1, 1, kw), (N, r, 1, 1)] by CP-ALS (bounded ``iterations`` per start).

    The first start is initialized from the SVDs of the unfoldings (deterministic), each of
    ``restarts`` more from seeded random factors; the best fit wins. A start stops when the
    relative squared error improves by less than ``tolerance`` of itself; each sweep is
    followed by Bro's extrapolation line search. ALS is not guaranteed to find the best
    rank-r fit (CP "swamps"), hence the restarts. ``energy`` is ``1 - relative squared
    error`` of the fit.
    """
    rng = np.random.default_rng(seed)
    starts = [_svd_init(w, r, rng)] + [
        [rng.standard_normal((size, r)) for size in w.shape] for _ in range(restarts)]
    norm = float(np.sum(w**2)) or 1.0
    best, best_error = None, np.inf
    for factors in starts:
        error = _als(w, factors, r, norm, iterations, tolerance)
        if error < best_error:
            best, best_error = factors, error
        if best_error < 1e-20:
            break
    a, b, kh, kw = best
    for factor in (b, kh, kw):  # unit columns; lambda goes into the last factor
        scale = np.linalg.norm(factor, axis=0).clip(1e-30)
        factor /= scale
        a = a * scale
    dims = w.shape
    return Factors([b.T.reshape(r, dims[1], 1, 1), kh.T.reshape(r, 1, dims[2], 1),
                    kw.T.reshape(r, 1, 1, dims[3]), a.reshape(dims[0], r, 1, 1)], r,
                   max(0.0, 1.0 - best_error))


def _svd_init(w: np.ndarray, r: int, rng: np.random.Generator) -> list[np.ndarray]:
    factors = []
    for mode, size in enumerate(w.shape):
        unfold = np.moveaxis(w, mode, 0).reshape(size, -1)
        u = np.linalg.svd(unfold, full_matrices=False)[0][:, :r]
        if u.shape[1] < r:  # more components than this mode has: pad with noise
            u = np.concatenate([u, rng.standard_normal((size, r - u.shape[1])) * 0.1], 1)
        factors.append(u)
    return factors


def _als(w: np.ndarray, factors: list[np.ndarray], r: int, norm: float, iterations: int,
         tolerance: float) -> float:
    """Run ALS with line search in place; return the final relative squared error."""
    error = _cp_error(w, factors, norm)
    for step in range(1, iterations + 1):
        before = [f.copy() for f in factors]
        _als_sweep(w, factors, r)
        swept = _cp_error(w, factors, norm)
        # Bro's line search: extrapolate along the sweep's direction, keep it if better
        jump = [b + step ** (1 / 3) * (f - b) for f, b in zip(factors, before, strict=True)]
        jumped = _cp_error(w, jump, norm)
        if jumped < swept:
            factors[:], swept = jump, jumped
        converged = swept < 1e-20 or error - swept < tolerance * swept
        error = swept
        if converged:
            break
    return error


def _als_sweep(w: np.ndarray, factors: list[np.ndarray], r: int) -> None:
    """One ALS sweep: each mode's factor solved with the other three fixed."""
    letters = "abcd"
    for mode in range(4):
        others = [m for m in range(4) if m != mode]
        gram = np.ones((r, r))
        for m in others:
            gram *= factors[m].T @ factors[m]
        spec = f"abcd,{','.join(letters[m] + 'r' for m in others)}->{letters[mode]}r"
        mttkrp = np.einsum(spec, w, *[factors[m] for m in others], optimize=True)
        factors[mode] = mttkrp @ np.linalg.pinv(gram)


def _cp_error(w: np.ndarray, factors: list[np.ndarray], norm: float) -> float:
    """Relative squared error of the CP model."""
    return float(np.sum((w - np.einsum("ar,br,cr,dr->abcd", *factors, optimize=True)) ** 2)
                 ) / norm


# ---------------------------------------------------------------------------- data-aware


def response_pca(w: np.ndarray, responses: np.ndarray, d: int) -> Factors:
    """Zhang's linear solution. ``responses`` (N, samples) are ``W x`` without bias."""
    mean = responses.mean(axis=1)
    centered = responses - mean[:, None]
    eigenvalues, vectors = np.linalg.eigh(centered @ centered.T / max(centered.shape[1], 1))
    order = np.argsort(eigenvalues)[::-1]
    eigenvalues, q = np.clip(eigenvalues[order], 0, None), vectors[:, order[:d]]
    first = np.tensordot(q.T, w, axes=1)  # Q^T W: (d, C, kh, kw) or (d, K)
    shift = mean - q @ (q.T @ mean)
    energy = float(eigenvalues[:d].sum() / eigenvalues.sum()) if eigenvalues.sum() else 1.0
    return Factors([first, _pointwise(q, w)], d, energy, bias_shift=shift, mixing=q.T)


def asymmetric(w: np.ndarray, target: np.ndarray, approx: np.ndarray, d: int,
               ridge: float = 1e-9) -> Factors:
    """Zhang's asymmetric reconstruction: ``target`` (N, s) are the original network's
    responses, ``approx`` (N, s) the original filters' responses to the approximated
    network's inputs. Returns factors computing ``M (W x) + c`` with rank(M) = d."""
    t_mean, a_mean = target.mean(axis=1), approx.mean(axis=1)
    t0, a0 = target - t_mean[:, None], approx - a_mean[:, None]
    gram = a0 @ a0.T
    gram += ridge * (np.trace(gram) / gram.shape[0] + 1e-12) * np.eye(gram.shape[0])
    m_ls = np.linalg.solve(gram, a0 @ t0.T).T  # (N, N): argmin ||t0 - M a0||
    fitted = m_ls @ a0
    eigenvalues, vectors = np.linalg.eigh(fitted @ fitted.T)
    order = np.argsort(eigenvalues)[::-1]
    eigenvalues, u = np.clip(eigenvalues[order], 0, None), vectors[:, order[:d]]
    projector = u.T @ m_ls  # (d, N)
    first = np.tensordot(projector, w, axes=1)
    shift = t_mean - u @ (projector @ a_mean)
    energy = float(eigenvalues[:d].sum() / eigenvalues.sum()) if eigenvalues.sum() else 1.0
    return Factors([first, _pointwise(u, w)], d, energy, bias_shift=shift, mixing=projector)


def _pointwise(q: np.ndarray, w: np.ndarray) -> np.ndarray:
    """The second factor (N x d) as a 1 x 1 Conv weight when ``w`` is a Conv weight."""
    return q.reshape(*q.shape, 1, 1) if w.ndim == 4 else q


def whitened_svd(w: np.ndarray, inputs: np.ndarray, r: int, ridge: float = 1e-9) -> Factors:
    """``w (N x K)``, ``inputs (K, samples)``: truncated SVD of ``W L`` (``L L^T`` = input
    second moment), returned as ``[A (r x K), B (N x r)]`` like ``svd_matrix``."""
    moment = inputs @ inputs.T / max(inputs.shape[1], 1)
    moment += ridge * (np.trace(moment) / moment.shape[0] + 1e-12) * np.eye(moment.shape[0])
    chol = np.linalg.cholesky(moment)
    u, s, vt = _thin_svd(w @ chol)
    b, a = _split(u, s, vt, r)
    return Factors([np.linalg.solve(chol.T, a.T).T, b], r, _energy(s, r))


def _channel_pca(samples: np.ndarray, r: int) -> tuple[np.ndarray, np.ndarray, float]:
    """The top ``r`` principal directions (C x r), the mean (C,) and the energy kept, of
    channel samples ``(C, S)`` (every spatial position of every calibration image)."""
    mean = samples.mean(axis=1)
    centered = samples - mean[:, None]
    values, vectors = np.linalg.eigh(centered @ centered.T / max(samples.shape[1], 1))
    order = np.argsort(values)[::-1]
    values, vectors = np.clip(values[order], 0, None), vectors[:, order]
    total = float(values.sum())
    return vectors[:, :r], mean, float(values[:r].sum() / total) if total > 0 else 1.0


def input_projection(w: np.ndarray, inputs: np.ndarray, r: int) -> Factors:
    """Project a Conv's input channels on the top ``r`` principal components of its
    calibration inputs (the input side of Tucker-2, fitted to data).

        x ~ U U^T x + m,   m = (I - U U^T) mean(x)         U: (C, r) orthonormal
        W * x ~ (W x_C U) * (U^T x) + W * m

    -> ``[P = U^T (r, C, 1, 1), W' = W x_C U (N, r, kh, kw)]``; the constant ``m`` enters the
    bias as ``sum over c, i, j of W[n, c, i, j] m[c]`` (``bias_shift``: exact away from the
    zero padding of the border, where the original convolution also sees zeros). At ``r = C``
    U is square and orthogonal, ``m = 0``: the form reproduces the layer exactly.
    ``inputs``: ``(C, S)`` channel samples of the layer's input.
    """
    u, mean, energy = _channel_pca(inputs, r)
    projected = np.einsum("ncij,cr->nrij", w, u)
    rest = mean - u @ (u.T @ mean)
    return Factors([u.T.reshape(u.shape[1], w.shape[1], 1, 1), projected], u.shape[1], energy,
                   bias_shift=np.einsum("ncij,c->n", w, rest))


def tucker2_fitted(w: np.ndarray, bias: np.ndarray | None, inputs: np.ndarray,
                   responses: np.ndarray, r_in: int, r_out: int) -> Factors:
    """Tucker-2 whose two projections come from data: the input side from the principal
    components of the layer's inputs (``input_projection``), the output side from those of
    its responses ``y = W * x + b`` (``responses``: ``(N, S)``).

        y ~ V V^T y + (I - V V^T) mean(y)                    V: (N, r_out) orthonormal
          ~ V (G * (U^T x)) + V V^T (b + W m) + (I - V V^T) mean(y),   G = V^T x_N W x_C U

    -> ``[U^T (r_in, C, 1, 1), G (r_out, r_in, kh, kw), V (N, r_out, 1, 1)]``; the last
    node's bias is ``bias + bias_shift``. At full ranks both projections are square and
    orthogonal: exact.
    """
    inner = input_projection(w, inputs, r_in)
    v, mean_y, energy = _channel_pca(responses, r_out)
    core = np.einsum("nrij,ns->srij", inner.weights[1], v)
    b = np.zeros(w.shape[0]) if bias is None else np.asarray(bias, dtype=np.float64)
    keep = v @ v.T
    last_bias = keep @ (b + inner.bias_shift) + (np.eye(len(mean_y)) - keep) @ mean_y
    return Factors([inner.weights[0], core, v.reshape(v.shape[0], v.shape[1], 1, 1)],
                   (inner.rank, v.shape[1]), inner.energy * energy, bias_shift=last_bias - b)

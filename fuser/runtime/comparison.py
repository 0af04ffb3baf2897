"""Per-output comparison of a candidate's values with a reference's: the figures (max abs, max
rel, mean abs, relative L2, cosine, NaN/inf counts, top-1/top-5 agreement) and the verdict
``max |candidate - reference| <= atol + rtol * max |reference|`` (see ``fuser.runtime.validate``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fuser.report.validation import OutputComparison

__all__ = ["OutputComparison", "class_scores", "compare"]


def compare(name: str, reference: Sequence[np.ndarray], candidate: Sequence[np.ndarray],
            atol: float, rtol: float) -> OutputComparison:
    """Figures and verdict for one output given the per-batch arrays of both models."""
    shapes_differ = any(r.shape != c.shape for r, c in zip(reference, candidate, strict=True))
    shape = list(reference[0].shape)
    if shapes_differ:
        nan = float("nan")
        got = [list(c.shape) for c in candidate][0]
        return OutputComparison(name, shape, nan, nan, nan, nan, nan, 0, 0, 0, 0, atol, rtol,
                                False, f"output '{name}' shape {got} != reference {shape}")
    ref = np.concatenate([r.reshape(-1) for r in reference]).astype(np.float64)
    cand = np.concatenate([c.reshape(-1) for c in candidate]).astype(np.float64)
    nan_r, nan_c = np.isnan(ref), np.isnan(cand)
    inf_r, inf_c = np.isinf(ref), np.isinf(cand)
    finite = np.isfinite(ref) & np.isfinite(cand)
    diff = np.abs(ref[finite] - cand[finite])
    scale = float(np.abs(ref[finite]).max()) if finite.any() else 0.0
    max_abs = float(diff.max()) if diff.size else 0.0
    max_rel = float((diff / np.maximum(np.abs(ref[finite]), 1e-12)).max()) if diff.size else 0.0
    norm = float(np.linalg.norm(ref[finite]))
    rel_l2 = float(np.linalg.norm(diff)) / norm if norm else float(np.linalg.norm(diff))
    denom = norm * float(np.linalg.norm(cand[finite]))
    cosine = float(ref[finite] @ cand[finite]) / denom if denom else 1.0
    new_nan = int(np.count_nonzero(nan_c & ~nan_r))
    new_inf = int(np.count_nonzero(inf_c & ~(inf_r & (np.sign(ref) == np.sign(cand)))))
    limit = atol + rtol * scale
    if new_nan or new_inf:
        passed, message = False, (f"output '{name}' has {new_nan} NaN and {new_inf} inf where "
                                  "the reference has none")
    elif max_abs > limit:
        passed, message = False, (f"output '{name}' max abs diff {max_abs:.3g} > {limit:.3g} "
                                  f"(atol {atol:g} + rtol {rtol:g} x max |ref| {scale:.3g})")
    else:
        passed, message = True, "ok"
    top1 = top5 = None
    if class_scores(np.concatenate([r.reshape(-1, shape[-1]) for r in reference])
                    if len(shape) >= 2 else reference[0]):
        top1, top5 = _agreement(reference, candidate)
    return OutputComparison(
        name, shape, max_abs, max_rel, float(diff.mean()) if diff.size else 0.0, rel_l2, cosine,
        int(nan_r.sum()), int(nan_c.sum()), int(inf_r.sum()), int(inf_c.sum()), atol, rtol,
        passed, message, top1, top5)


def class_scores(values: np.ndarray) -> bool:
    """Whether an output holds class scores along its last axis: logits, or probabilities
    that sum to 1. Independent probabilities in [0, 1] (sigmoids: multi-label notes, tags,
    a mask) are not: their top-1 is noise wherever nothing is on (a silent audio frame), so
    the default metric for them is ``rel-error``."""
    if values.ndim < 2 or values.shape[-1] < 2:
        return False
    if values.size and values.min() >= 0 and values.max() <= 1:
        sums = values.reshape(-1, values.shape[-1]).sum(axis=1, dtype=np.float64)
        return bool(np.abs(sums - 1).mean() <= 0.01)
    return True


def _agreement(reference: Sequence[np.ndarray],
               candidate: Sequence[np.ndarray]) -> tuple[float, float]:
    """Top-1 agreement (same argmax) and top-5 agreement (reference's top-1 within the
    candidate's top 5) over all samples, classes on the last axis."""
    classes = reference[0].shape[-1]
    ref = np.concatenate([r.reshape(-1, classes) for r in reference]).astype(np.float64)
    cand = np.concatenate([c.reshape(-1, classes) for c in candidate]).astype(np.float64)
    ref_top = ref.argmax(axis=1)
    top1 = float(np.mean(cand.argmax(axis=1) == ref_top))
    k = min(5, classes)
    cand_top5 = np.argpartition(-cand, k - 1, axis=1)[:, :k]
    top5 = float(np.mean((cand_top5 == ref_top[:, None]).any(axis=1)))
    return top1, top5

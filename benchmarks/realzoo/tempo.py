"""Global tempo estimation (tempocnn's trained Keras models): rhythm tracks, features, metric.

tempocnn's models read 40-band mel magnitude spectrograms (11025 Hz, FFT 1024, hop 512,
20..5000 Hz; ``tempocnn/feature.py`` computes them with librosa) in windows of 256 frames
(~11.9 s) and output 256 classes, 30..285 BPM. The mel filterbank below is librosa's default
(Slaney mel scale, Slaney area normalisation), so no librosa is needed.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

SR = 11025
N_FFT = 1024
HOP = 512
FRAMES = 256


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    hz = np.asarray(hz, np.float64)
    mel = hz / (200.0 / 3)
    log = hz >= 1000.0
    return np.where(log, 15.0 + np.log(np.maximum(hz, 1e-9) / 1000.0) / (np.log(6.4) / 27.0), mel)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, np.float64)
    return np.where(mel >= 15.0, 1000.0 * np.exp(np.log(6.4) / 27.0 * (mel - 15.0)),
                    mel * 200.0 / 3)


def mel_filterbank(n_mels: int = 40, fmin: float = 20.0, fmax: float = 5000.0) -> np.ndarray:
    """``librosa.filters.mel(sr=11025, n_fft=1024, n_mels, fmin, fmax)`` in numpy."""
    freqs = np.linspace(0, SR / 2, 1 + N_FFT // 2)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
    widths = np.diff(edges)
    ramps = edges[:, None] - freqs[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    return weights * (2.0 / (edges[2:] - edges[:-2]))[:, None]


def mel_spectrogram(audio: np.ndarray) -> np.ndarray:
    """Magnitude mel spectrogram ``(40, frames)`` as tempocnn computes it (centred frames,
    zero padding, periodic Hann window, power 1)."""
    padded = np.pad(audio, N_FFT // 2)
    count = 1 + (len(padded) - N_FFT) // HOP
    index = np.arange(N_FFT)[None, :] + HOP * np.arange(count)[:, None]
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)
    spectrum = np.abs(np.fft.rfft(padded[index] * window, axis=1)).T
    return mel_filterbank() @ spectrum


def rhythm_track(bpm: float, rng: np.random.Generator) -> np.ndarray:
    """~11.9 s of a synthetic drum pattern at ``bpm``: a kick on every beat (accented on the
    bar's first), a snare-like noise burst on beats 2 and 4, hi-hats on the eighth notes."""
    length = (FRAMES - 1) * HOP
    t = np.arange(length) / SR
    audio = rng.normal(0, 0.002, length)
    beat = 60.0 / bpm
    start = rng.uniform(0, beat)

    def hit(at: float, sound: np.ndarray, gain: float) -> None:
        i = int(at * SR)
        if i < length:
            n = min(len(sound), length - i)
            audio[i:i + n] += gain * sound[:n]

    tt = t[:int(0.25 * SR)]
    kick = np.sin(2 * np.pi * (50 + 100 * np.exp(-tt * 30)) * tt) * np.exp(-tt * 12)
    snare = rng.normal(0, 1, len(tt)) * np.exp(-tt * 25)
    hat = np.diff(rng.normal(0, 1, len(tt) + 1)) * np.exp(-tt * 80)
    for k in range(int((t[-1] - start) / beat) + 2):
        at = start + k * beat
        hit(at, kick, 1.0 if k % 4 == 0 else 0.7)
        if k % 2 == 1:
            hit(at, snare, 0.5)
        hit(at, hat, 0.2)
        hit(at + beat / 2, hat, 0.15)
    return audio / np.abs(audio).max()


def max_normalizer(features: np.ndarray) -> np.ndarray:
    """tempocnn's normalisation of its 'fcn', 'cnn' and 'ismir2018' models."""
    return features / max(float(features.max()), 1e-12)


def std_normalizer(features: np.ndarray) -> np.ndarray:
    """tempocnn's normalisation of its 'deeptemp', 'shallowtemp' and Mazurka models
    (it casts to float16 on the way, as tempocnn does)."""
    features = features.astype(np.float64)
    std = features.std()
    return ((features - features.mean()) / (std if std else 1.0)).astype(np.float16)


def tracks(normalizer: Callable[[np.ndarray], np.ndarray]) -> Callable:
    """The data function ``(n, seed) -> (feeds, bpm)`` of a tempocnn model: ``n`` rhythm
    tracks at tempos uniform in 60..200 BPM, one 256-frame window each."""

    def data(n: int, seed: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
        rng = np.random.default_rng(seed)
        bpm = rng.uniform(60.0, 200.0, n)
        windows = [normalizer(mel_spectrogram(rhythm_track(b, rng))[:, :FRAMES])
                   for b in bpm]
        feeds = np.stack(windows).astype(np.float32)[..., None]  # (n, 40, 256, 1), NHWC
        return {"input": feeds}, bpm

    return data


def accuracy1(outputs: dict[str, np.ndarray], bpm: np.ndarray) -> float:
    """Share of tracks whose estimated tempo (argmax class + 30 BPM) is within 4 % of the
    true tempo (MIREX 'Accuracy 1'; higher is better)."""
    got = np.asarray(next(iter(outputs.values()))).reshape(len(bpm), -1).argmax(axis=1) + 30
    return float(np.mean(np.abs(got - bpm) <= 0.04 * bpm))


def accuracy2(outputs: dict[str, np.ndarray], bpm: np.ndarray) -> float:
    """'Accuracy 2': as ``accuracy1`` but a factor 2, 3, 1/2 or 1/3 off also counts."""
    got = np.asarray(next(iter(outputs.values()))).reshape(len(bpm), -1).argmax(axis=1) + 30
    hits = [np.abs(got - f * bpm) <= 0.04 * f * bpm for f in (1, 2, 3, 0.5, 1 / 3)]
    return float(np.mean(np.any(hits, axis=0)))

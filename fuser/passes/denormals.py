"""Denormal float weights: finding them, flushing them to zero, and remembering which arrays a
fold already flushed (so ``flush-denormals`` does not scan them again).

Denormals (``0 < |x| < tiny``) run many times slower on CPUs (onnxruntime issues #6865 and
#7448); BN folding makes them where a channel's variance is huge.
"""

from __future__ import annotations

import weakref

import numpy as np

#: Elements per chunk of the denormal scan (1 MB of float32: the temporaries stay in cache).
_CHUNK = 1 << 18


#: The dtypes whose denormals are flushed. float16 is not: onnxruntime's CPU kernels compute
#: float16 in float32, where its denormals are normal numbers, and GPUs take float16
#: denormals at full speed, so flushing them only costs accuracy (1-1.5 % of a BN-folded
#: layer's weights zeroed, the error against an fp32 reference 2x; issue 25).
FLUSHED_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def denormal_mask(values: np.ndarray) -> np.ndarray:
    """Where ``values`` (a float array) holds denormals of a dtype that is flushed."""
    if values.dtype not in FLUSHED_DTYPES:
        return np.zeros(values.shape, bool)
    tiny = np.finfo(values.dtype).tiny
    return (np.abs(values) < tiny) & (values != 0)


def count_denormals(values: np.ndarray) -> int:
    """Denormals in ``values``, counted in chunks: no full-size temporaries, and a chunk whose
    smallest magnitude is a normal number is cleared with one ``min``."""
    if values.dtype not in FLUSHED_DTYPES:
        return 0
    flat = values.reshape(-1)
    tiny = np.finfo(values.dtype).tiny
    count = 0
    for i in range(0, flat.size, _CHUNK):
        magnitude = np.abs(flat[i:i + _CHUNK])
        if magnitude.min() < tiny:  # a zero or a denormal: count exactly
            count += int(np.count_nonzero((magnitude < tiny) & (magnitude != 0)))
    return count


def flush_denormals_in_place(values: np.ndarray) -> int:
    """Set the denormals of a writable float array to zero; return how many there were."""
    flushed = count_denormals(values) if values.size else 0
    if flushed:
        values[denormal_mask(values)] = 0
    return flushed


#: ``id -> weak reference`` of the arrays that folds computed with their denormals flushed.
_FLUSHED: dict[int, weakref.ref] = {}


def mark_flushed(values: np.ndarray) -> np.ndarray:
    """Record that ``values`` holds no denormals (``flush-denormals`` need not scan it again)
    and make it read-only, so that it stays so; return it."""
    values.flags.writeable = False
    key = id(values)
    _FLUSHED[key] = weakref.ref(values, lambda _, key=key: _FLUSHED.pop(key, None))
    return values


def is_flushed(values: object) -> bool:
    """Whether ``values`` is an array that ``mark_flushed`` recorded (and is still alive)."""
    ref = _FLUSHED.get(id(values))
    return ref is not None and ref() is values

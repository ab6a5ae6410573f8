"""Cosine (Hann) window applied to the tracker's score map (docs/PARITY.md §7)."""
from __future__ import annotations

import numpy as np

__all__ = ["hann1d", "hann2d"]


def hann1d(n: int) -> np.ndarray:
    """(n,) float32 window w[k] = 0.5 * (1 - cos(2*pi*k / (n + 1))) for k = 1..n (all entries > 0).

    Float32 like the official torch ``hann1d(n, centered=True)``; equal to it within 1e-7.
    """
    n = int(n)
    if n < 1:
        raise ValueError(f"hann window size must be >= 1, got {n}")
    k = np.arange(1, n + 1, dtype=np.float32)
    # Official: (2*pi/(n+1)) is a Python float, multiplied into a float32 arange (float32 product).
    arg = np.float32(2.0 * np.pi / (n + 1)) * k
    # cos evaluated in float64 and rounded once: platform-independent, within 3e-8 of torch's float32 cos.
    c = np.cos(arg.astype(np.float64)).astype(np.float32)
    return (np.float32(0.5) * (np.float32(1.0) - c)).astype(np.float32)


def hann2d(n: int) -> np.ndarray:
    """(n, n) float32 window = outer(hann1d(n), hann1d(n)); rows = y, columns = x (score-map layout)."""
    w = hann1d(n)
    return (w[:, None] * w[None, :]).astype(np.float32)

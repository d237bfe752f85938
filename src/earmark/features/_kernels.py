"""Compiled inner loops (numba) of the feature engine: exact running medians and overlap-add.

These are private helpers; each has a NumPy-only twin in the tests that checks it.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, inline="always")
def _reflect(j: int, n: int) -> int:
    """Index into ``[0, n)`` with SciPy's ``mode='reflect'`` (half-sample symmetric, periodic)."""
    p = 2 * n
    j = j % p
    if j < 0:
        j += p
    if j >= n:
        j = p - 1 - j
    return j


@numba.njit(cache=True)
def _running_median(x: np.ndarray, k: int, out: np.ndarray, buf: np.ndarray) -> None:
    """Median of the ``k`` (odd) neighbours of every element of the 1-D ``x``, reflect mode."""
    n = x.shape[0]
    h = k // 2
    # initial window, insertion-sorted
    for m in range(k):
        v = x[_reflect(m - h, n)]
        i = m
        while i > 0 and buf[i - 1] > v:
            buf[i] = buf[i - 1]
            i -= 1
        buf[i] = v
    out[0] = buf[h]
    for t in range(1, n):
        old = x[_reflect(t - h - 1, n)]
        new = x[_reflect(t + h, n)]
        if old != new:
            # remove old
            i = 0
            while buf[i] != old:
                i += 1
            while i < k - 1:
                buf[i] = buf[i + 1]
                i += 1
            # insert new
            i = k - 1
            while i > 0 and buf[i - 1] > new:
                buf[i] = buf[i - 1]
                i -= 1
            buf[i] = new
        out[t] = buf[h]


@numba.njit(cache=True)
def median_rows(x: np.ndarray, k: int) -> np.ndarray:
    """Running median of width ``k`` along the last axis of the 2-D ``x`` (reflect edges)."""
    out = np.empty_like(x)
    buf = np.empty(k, dtype=x.dtype)
    col = np.empty(x.shape[1], dtype=x.dtype)
    res = np.empty(x.shape[1], dtype=x.dtype)
    for r in range(x.shape[0]):
        for c in range(x.shape[1]):
            col[c] = x[r, c]
        _running_median(col, k, res, buf)
        for c in range(x.shape[1]):
            out[r, c] = res[c]
    return out


@numba.njit(cache=True)
def median_segments(x: np.ndarray, bounds: np.ndarray, k: int) -> np.ndarray:
    """Running median of width ``k`` along axis 0 of ``x`` (frames, bins), separately within each
    segment ``bounds[i]:bounds[i + 1]`` of frames (reflect edges at each segment's ends)."""
    out = np.empty_like(x)
    buf = np.empty(k, dtype=x.dtype)
    n_bins = x.shape[1]
    for s in range(bounds.shape[0] - 1):
        a = bounds[s]
        b = bounds[s + 1]
        n = b - a
        if n == 0:
            continue
        col = np.empty(n, dtype=x.dtype)
        res = np.empty(n, dtype=x.dtype)
        for f in range(n_bins):
            for t in range(n):
                col[t] = x[a + t, f]
            _running_median(col, k, res, buf)
            for t in range(n):
                out[a + t, f] = res[t]
    return out


@numba.njit(cache=True)
def overlap_add(frames: np.ndarray, starts: np.ndarray, hop: int, out: np.ndarray) -> None:
    """Add ``frames[i]`` into ``out`` at ``starts[c] + j * hop`` for the j-th frame of segment c.

    ``starts`` has one entry per frame (absolute sample offsets into ``out``).
    """
    n_fft = frames.shape[1]
    for i in range(frames.shape[0]):
        s = starts[i]
        for j in range(n_fft):
            out[s + j] += frames[i, j]

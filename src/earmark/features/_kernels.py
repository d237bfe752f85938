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
def _running_median(x: np.ndarray, k: int, out: np.ndarray, buf: np.ndarray, ext: np.ndarray) -> None:
    """Median of the ``k`` (odd) neighbours of every element of the 1-D ``x``, reflect mode.

    ``buf`` (k) and ``ext`` (len(x) + k - 1) are scratch space.
    """
    n = x.shape[0]
    h = k // 2
    for j in range(n + 2 * h):
        ext[j] = x[_reflect(j - h, n)]
    # initial window, insertion-sorted
    for m in range(k):
        v = ext[m]
        i = m
        while i > 0 and buf[i - 1] > v:
            buf[i] = buf[i - 1]
            i -= 1
        buf[i] = v
    out[0] = buf[h]
    for t in range(1, n):
        old = ext[t - 1]
        new = ext[t + k - 1]
        if old != new:
            # position of old (binary search), then slide new from there: O(distance) moves
            lo = 0
            hi = k
            while lo < hi:
                mid = (lo + hi) // 2
                if buf[mid] < old:
                    lo = mid + 1
                else:
                    hi = mid
            i = lo
            if new > old:
                while i + 1 < k and buf[i + 1] < new:
                    buf[i] = buf[i + 1]
                    i += 1
            else:
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
    ext = np.empty(x.shape[1] + k - 1, dtype=x.dtype)
    for r in range(x.shape[0]):
        _running_median(x[r], k, out[r], buf, ext)
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
        cols = np.ascontiguousarray(x[a:b].T)  # (bins, frames)
        res = np.empty_like(cols)
        ext = np.empty(n + k - 1, dtype=x.dtype)
        for f in range(n_bins):
            _running_median(cols[f], k, res[f], buf, ext)
        out[a:b] = res.T
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

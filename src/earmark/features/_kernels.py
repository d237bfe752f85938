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
def _segment_median_ranks(x: np.ndarray, a: int, n: int, k: int, out: np.ndarray) -> None:
    """Running median of width ``k`` down the ``n`` rows ``a:a + n`` of ``x``, every column, for a
    short segment (``n`` up to a few ``k``): sort each column's ``n`` values once, then slide a
    count of ranks over the reflected sequence (O(1) amortised per step, no per-window sorting)."""
    h = k // 2
    n_bins = x.shape[1]
    m_ext = n + k - 1
    e = np.empty(m_ext, dtype=np.int64)  # reflected index of every window position
    for j in range(m_ext):
        e[j] = _reflect(j - h, n)
    srt = np.empty(n, dtype=x.dtype)
    order = np.empty(n, dtype=np.int64)
    rank = np.empty(n, dtype=np.int64)
    cnt = np.zeros(n, dtype=np.int64)
    er = np.empty(m_ext, dtype=np.int64)
    for f in range(n_bins):
        for i in range(n):  # insertion argsort of the column
            v = x[a + i, f]
            j = i
            while j > 0 and srt[j - 1] > v:
                srt[j] = srt[j - 1]
                order[j] = order[j - 1]
                j -= 1
            srt[j] = v
            order[j] = i
        for r in range(n):
            rank[order[r]] = r
            cnt[r] = 0
        for j in range(m_ext):
            er[j] = rank[e[j]]
        for j in range(k):
            cnt[er[j]] += 1
        # invariant: below = number of window entries of rank < m, below <= h < below + cnt[m]
        m = 0
        below = 0
        while below + cnt[m] <= h:
            below += cnt[m]
            m += 1
        out[a, f] = srt[m]
        for t in range(1, n):
            ro = er[t - 1]
            rn = er[t + k - 1]
            cnt[ro] -= 1
            if ro < m:
                below -= 1
            cnt[rn] += 1
            if rn < m:
                below += 1
            while below + cnt[m] <= h:
                below += cnt[m]
                m += 1
            while below > h:
                m -= 1
                below -= cnt[m]
            out[a + t, f] = srt[m]


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
        if n <= 4 * k:
            _segment_median_ranks(x, a, n, k, out)
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


@numba.njit(cache=True)
def harmonic_spectrum(D: np.ndarray, mag: np.ndarray, harm: np.ndarray, perc: np.ndarray, margin: float,
                      bad_value: float) -> np.ndarray:
    """HPSS harmonic spectrum with a power-2 soft mask, elementwise in float32:
    ``(mag * softmask(harm, perc * margin, 2)) * D / mag``, as ``librosa.decompose.hpss`` and
    ``librosa.magphase`` round it (mask ``bad_value`` where both medians are below float32 tiny)."""
    out = np.empty_like(D)
    tiny = np.finfo(np.float32).tiny
    mg = np.float32(margin)
    bv = np.float32(bad_value)
    one = np.float32(1.0)
    zero = np.float32(0.0)
    for i in range(D.shape[0]):
        for j in range(D.shape[1]):
            h = harm[i, j]
            p = perc[i, j] * mg
            z = h if h > p else p
            if z < tiny:
                m = bv
            else:
                a = h / z
                a = a * a
                b = p / z
                b = b * b
                m = a / (a + b)
            g = mag[i, j]
            nz = one if g == zero else zero
            den = g + nz
            d = D[i, j]
            pr = d.real / den + nz
            pi = d.imag / den
            r = g * m
            out[i, j] = complex(r * pr, r * pi)
    return out


def warm() -> None:
    """Compile (or load from numba's cache) every kernel, on tiny float32 inputs."""
    x = np.ones((4, 8), dtype=np.float32)
    median_rows(x, 3)
    median_segments(x, np.array([0, 2, 4], dtype=np.int64), 3)
    harmonic_spectrum(x.astype(np.complex64), x, x, x, 1.0, 0.5)
    overlap_add(x.astype(np.float64), np.zeros(4, dtype=np.int64), 1, np.zeros(16, dtype=np.float32))

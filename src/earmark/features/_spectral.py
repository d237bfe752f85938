"""Pure feature functions: spectrograms, mel, MFCC, chroma, contrast, tonnetz and frame statistics.

Every function takes keyword-only parameters with every DSP setting explicit, works on a batch
``y`` of shape ``(..., samples)`` and returns ``(..., n_features, frames)``. With the same
settings they equal ``librosa`` 0.11 (see ``tests/test_features_parity.py`` for the tolerances).

Internally everything runs on *ragged* batches: the frames of clips of different lengths are
stacked into one ``(bins, total_frames)`` matrix with per-clip frame counts, so one FFT and one
matrix product serve a whole batch; only the few per-clip steps (``top_db``, tuning estimation,
the time-median of HPSS, CQT octaves) look at clip boundaries.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence

import numpy as np
import scipy.fft
import scipy.signal

from earmark.errors import ParameterError

__all__ = [
    "chroma_cqt",
    "chroma_stft",
    "cqt",
    "delta",
    "estimate_tuning",
    "harmonic",
    "log_mel",
    "mel_filterbank",
    "mel_spectrogram",
    "mfcc",
    "power_spectrogram",
    "power_to_db",
    "rms",
    "spectral_bandwidth",
    "spectral_centroid",
    "spectral_contrast",
    "spectral_flatness",
    "spectral_rolloff",
    "stft",
    "tonnetz",
    "zero_crossing_rate",
]

_TINY32 = np.finfo(np.float32).tiny


# ----------------------------------------------------------------------------------------------
# ragged batches
# ----------------------------------------------------------------------------------------------


def _check_positive_int(name: str, value: object, owner: str) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value <= 0:
        raise ParameterError(
            f"The '{name}' parameter of {owner} must be a positive int. Got {value!r} instead."
        )
    return int(value)


@functools.lru_cache(maxsize=64)
def _window(window: str, win_length: int, n_fft: int) -> np.ndarray:
    w = scipy.signal.get_window(window, win_length, fftbins=True).astype(np.float64)
    if win_length < n_fft:
        left = (n_fft - win_length) // 2
        w = np.pad(w, (left, n_fft - win_length - left))
    elif win_length > n_fft:
        raise ParameterError(
            f"win_length={win_length} must be at most n_fft={n_fft}; lower win_length or raise n_fft."
        )
    w.setflags(write=False)
    return w


def _as_clips(y: np.ndarray) -> tuple[list[np.ndarray], tuple[int, ...]]:
    y = np.asarray(y)
    if y.ndim == 0:
        raise ParameterError("Audio must have at least one dimension (samples). Got a scalar.")
    lead = y.shape[:-1]
    flat = np.ascontiguousarray(y.reshape(-1, y.shape[-1]), dtype=np.float32)
    return list(flat), lead


def _frame_ragged(
    clips: Sequence[np.ndarray], *, frame_length: int, hop_length: int, center: bool, pad_mode: str
) -> tuple[np.ndarray, np.ndarray]:
    """Stack the frames of every clip: ``(total_frames, frame_length)`` float32 and per-clip counts."""
    pad = frame_length // 2 if center else 0
    if pad_mode not in ("constant", "reflect", "edge", "symmetric", "wrap"):
        raise ParameterError(
            f"The 'pad_mode' parameter must be one of 'constant', 'reflect', 'edge', "
            f"'symmetric', 'wrap'. Got {pad_mode!r} instead."
        )
    counts = np.empty(len(clips), dtype=np.int64)
    arrs = []
    for i, c in enumerate(clips):
        c = np.asarray(c, dtype=np.float32)
        if c.ndim != 1:
            raise ParameterError(f"Each clip must be 1-D (mono samples). Clip {i} has shape {c.shape}.")
        n = len(c) + 2 * pad
        if n < frame_length:
            raise ParameterError(
                f"Clip {i} has {len(c)} samples, fewer than frame_length={frame_length} "
                "with center=False; use center=True or a shorter frame."
            )
        if pad and pad_mode == "reflect" and len(c) <= pad:
            raise ParameterError(
                f"pad_mode='reflect' needs clips longer than {pad} samples; clip {i} has "
                f"{len(c)}. Use pad_mode='constant'."
            )
        counts[i] = 1 + (n - frame_length) // hop_length
        arrs.append(c)
    if not arrs:
        return np.zeros((0, frame_length), np.float32), counts
    lengths = np.array([len(c) + 2 * pad for c in arrs], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    buf = np.zeros(int(lengths.sum()), dtype=np.float32)
    for c, off in zip(arrs, offsets):
        if pad and pad_mode != "constant":
            buf[off:off + len(c) + 2 * pad] = np.pad(c, pad, mode=pad_mode)
        else:
            buf[off + pad:off + pad + len(c)] = c
    clip_of = np.repeat(np.arange(len(arrs)), counts)
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    within = np.arange(int(counts.sum())) - np.repeat(first, counts)
    starts = offsets[clip_of] + within * hop_length
    frames = np.lib.stride_tricks.sliding_window_view(buf, frame_length)[starts]
    return frames, counts


def _stft_ragged(
    clips: Sequence[np.ndarray],
    *,
    n_fft: int,
    hop_length: int,
    win_length: int | None,
    window: str,
    center: bool,
    pad_mode: str,
    fast: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Complex STFT of a ragged batch: ``(1 + n_fft // 2, total_frames)`` complex64 and counts.

    By default the FFT runs in float64 and is rounded to complex64, as librosa does, so that
    near-silent bins keep their relative precision (spectral contrast valleys, tuning estimation
    depend on them). ``fast=True`` runs it in float32 (about 2x faster; for log-mel inputs whose
    dynamic range is floored by ``top_db`` anyway).
    """
    w = _window(window, win_length or n_fft, n_fft)
    frames, counts = _frame_ragged(
        clips, frame_length=n_fft, hop_length=hop_length, center=center, pad_mode=pad_mode
    )
    if fast:
        frames *= w.astype(np.float32)  # frames is a fresh gathered copy
        spec = scipy.fft.rfft(frames, axis=1, overwrite_x=True)
    else:
        spec = np.fft.rfft(frames * w, axis=1).astype(np.complex64)
    return spec.T, counts


def rowwise(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """``A @ B`` where each row of the result is, to float32, what that row of ``A`` alone would
    give: the product is summed in float64 and rounded to ``A``'s precision. (BLAS picks kernels
    by shape and position, so in float32 a frame's features changed in their last bits with the
    batch it shared, and the same seed trained another model with another worker count or feature
    store; float64 sums differ by ~1e-16, which float32 rounding hides.)

    Example
    -------
    >>> a = np.random.default_rng(0).random((300, 5), dtype=np.float32)
    >>> b = np.ones((5, 2), np.float32)
    >>> bool((rowwise(a, b)[3:10] == rowwise(a[3:10], b)).all())
    True
    """
    A = np.asarray(A)
    B = np.asarray(B)
    out_dtype = np.result_type(A, B)
    wide = np.complex128 if np.iscomplexobj(A) or np.iscomplexobj(B) else np.float64
    return (A.astype(wide, copy=False) @ B.astype(wide, copy=False)).astype(out_dtype, copy=False)


def colwise(L: np.ndarray, X: np.ndarray) -> np.ndarray:
    """``L @ X`` where each column of the result depends only on that column of ``X`` (the
    frames of a ``(bins, frames)`` spectrogram): :func:`rowwise` of the transposes.

    Example
    -------
    >>> x = np.random.default_rng(0).random((5, 300), dtype=np.float32)
    >>> bool((colwise(np.ones((2, 5), np.float32), x)[:, :7] == colwise(np.ones((2, 5), np.float32), x[:, :7])).all())
    True
    """
    return np.ascontiguousarray(rowwise(np.asarray(X).T, np.asarray(L).T).T)


def _unflatten(x: np.ndarray, counts: np.ndarray, lead: tuple[int, ...]) -> np.ndarray:
    """``(features, total_frames)`` with equal counts → ``(*lead, features, frames)``."""
    n = int(counts[0]) if len(counts) else 0
    out = x.reshape(x.shape[0], len(counts), n).transpose(1, 0, 2)
    return np.ascontiguousarray(out.reshape(*lead, x.shape[0], n))


def _flatten_spec(S: np.ndarray) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
    """``(..., bins, frames)`` → ``(bins, total_frames)``, counts, leading shape."""
    S = np.asarray(S)
    if S.ndim < 2:
        raise ParameterError(f"A spectrogram must have shape (..., bins, frames). Got {S.shape}.")
    lead = S.shape[:-2]
    n_items = int(np.prod(lead)) if lead else 1
    flat = S.reshape(n_items, S.shape[-2], S.shape[-1]).transpose(1, 0, 2).reshape(S.shape[-2], -1)
    return flat, np.full(n_items, S.shape[-1], dtype=np.int64), lead


def _segment_reduce(x: np.ndarray, counts: np.ndarray, ufunc: np.ufunc) -> np.ndarray:
    """Reduce ``(features, total_frames)`` over each clip's frames → ``(features, n_clips)``."""
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    if np.any(counts == 0):
        raise ParameterError("A clip has zero frames; it is too short for these settings.")
    return ufunc.reduceat(x, starts, axis=1)


def segment_mean(x: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Mean over each clip's frames of a ragged ``(features, total_frames)`` array."""
    return _segment_reduce(x.astype(np.float64), counts, np.add) / counts


def _per_frame(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Broadcast one value per clip to one per frame."""
    return np.repeat(values, counts)


# ----------------------------------------------------------------------------------------------
# STFT, mel, dB, MFCC
# ----------------------------------------------------------------------------------------------


def stft(
    y: np.ndarray,
    *,
    n_fft: int,
    hop_length: int,
    win_length: int | None = None,
    window: str = "hann",
    center: bool = True,
    pad_mode: str = "constant",
) -> np.ndarray:
    """Short-time Fourier transform.

    Parameters
    ----------
    y : np.ndarray, shape ``(..., samples)``
        Audio (float32 preferred).
    n_fft : int
        FFT size in samples.
    hop_length : int
        Samples between frames.
    win_length : int or None
        Window length (zero-padded to ``n_fft`` at the centre); ``None`` means ``n_fft``.
    window : str
        Window name for :func:`scipy.signal.get_window` (periodic).
    center : bool
        Pad ``n_fft // 2`` samples on both sides so frame ``t`` is centred at ``t * hop_length``.
    pad_mode : str
        How to pad when ``center`` (``"constant"`` = zeros, as librosa ≥ 0.10).

    Returns
    -------
    np.ndarray, complex64, shape ``(..., 1 + n_fft // 2, frames)``

    Example
    -------
    >>> import numpy as np
    >>> stft(np.zeros(16000, np.float32), n_fft=512, hop_length=160).shape
    (257, 101)
    """
    n_fft = _check_positive_int("n_fft", n_fft, "stft")
    hop_length = _check_positive_int("hop_length", hop_length, "stft")
    clips, lead = _as_clips(y)
    spec, counts = _stft_ragged(
        clips, n_fft=n_fft, hop_length=hop_length, win_length=win_length, window=window,
        center=center, pad_mode=pad_mode,
    )
    return _unflatten(spec, counts, lead)


def power_spectrogram(
    y: np.ndarray,
    *,
    n_fft: int,
    hop_length: int,
    win_length: int | None = None,
    window: str = "hann",
    center: bool = True,
    pad_mode: str = "constant",
    power: float = 2.0,
) -> np.ndarray:
    """``|stft(y)| ** power`` (``power=1``: magnitude, ``2``: power), float32.

    Returns
    -------
    np.ndarray, shape ``(..., 1 + n_fft // 2, frames)``

    Example
    -------
    >>> import numpy as np
    >>> power_spectrogram(np.ones(2048, np.float32), n_fft=256, hop_length=128, power=1.0).shape
    (129, 17)
    """
    S = np.abs(stft(y, n_fft=n_fft, hop_length=hop_length, win_length=win_length, window=window,
                    center=center, pad_mode=pad_mode))
    return S if power == 1.0 else S**power


def _hz_to_mel(f: np.ndarray, htk: bool) -> np.ndarray:
    f = np.asarray(f, dtype=np.float64)
    if htk:
        return 2595.0 * np.log10(1.0 + f / 700.0)
    f_sp = 200.0 / 3
    mels = f / f_sp
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    return np.where(f >= min_log_hz, min_log_mel + np.log(np.maximum(f, 1e-12) / min_log_hz) / logstep, mels)


def _mel_to_hz(m: np.ndarray, htk: bool) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    if htk:
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)
    f_sp = 200.0 / 3
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


@functools.lru_cache(maxsize=32)
def _mel_fb_cached(sr: float, n_fft: int, n_mels: int, fmin: float, fmax: float, htk: bool,
                   norm: str | None) -> np.ndarray:
    fftfreqs = np.fft.rfftfreq(n_fft, 1.0 / sr)
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(fmin, htk), _hz_to_mel(fmax, htk), n_mels + 2), htk)
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fftfreqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    if norm == "slaney":
        weights *= (2.0 / (mel_f[2 : n_mels + 2] - mel_f[:n_mels]))[:, None]
    elif norm is not None:
        raise ParameterError(f"The 'norm' parameter of mel_filterbank must be 'slaney' or None. Got {norm!r}.")
    out = weights.astype(np.float32)
    out.setflags(write=False)
    return out


def mel_filterbank(
    *, sr: float, n_fft: int, n_mels: int, fmin: float, fmax: float | None, htk: bool = False,
    norm: str | None = "slaney",
) -> np.ndarray:
    """Triangular mel filters (the same as ``librosa.filters.mel``).

    Parameters
    ----------
    sr : float
        Sample rate in Hz.
    n_fft : int
        FFT size the filters apply to.
    n_mels : int
        Number of mel bands.
    fmin, fmax : float
        Lowest and highest frequency (Hz); ``fmax=None`` means ``sr / 2``.
    htk : bool
        HTK mel scale instead of Slaney's.
    norm : {"slaney", None}
        ``"slaney"`` divides each triangle by its width (constant energy per band).

    Returns
    -------
    np.ndarray, float32, shape ``(n_mels, 1 + n_fft // 2)``

    Example
    -------
    >>> mel_filterbank(sr=16000, n_fft=512, n_mels=64, fmin=0.0, fmax=8000.0).shape
    (64, 257)
    """
    _check_positive_int("n_mels", n_mels, "mel_filterbank")
    fmax = sr / 2.0 if fmax is None else fmax
    if not 0 <= fmin < fmax <= sr / 2.0 + 1e-9:
        raise ParameterError(
            f"mel_filterbank needs 0 <= fmin < fmax <= sr/2. Got fmin={fmin}, fmax={fmax}, sr={sr}."
        )
    return _mel_fb_cached(float(sr), int(n_fft), int(n_mels), float(fmin), float(fmax), bool(htk), norm)


def _spec_input(
    y: np.ndarray | None, S: np.ndarray | None, *, n_fft: int, hop_length: int, win_length: int | None,
    window: str, center: bool, pad_mode: str, power: float, owner: str,
) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
    """Flatten a given spectrogram, or compute ``|stft(y)| ** power``, as ``(bins, total_frames)``."""
    if S is not None:
        return _flatten_spec(S)
    if y is None:
        raise ParameterError(f"{owner} needs either audio 'y' or a spectrogram 'S'. Got neither.")
    clips, lead = _as_clips(y)
    spec, counts = _stft_ragged(clips, n_fft=n_fft, hop_length=hop_length, win_length=win_length,
                                window=window, center=center, pad_mode=pad_mode)
    mag = np.abs(spec)
    return (mag if power == 1.0 else mag**power), counts, lead


def mel_spectrogram(
    y: np.ndarray | None = None,
    *,
    sr: float,
    S: np.ndarray | None = None,
    n_fft: int,
    hop_length: int,
    win_length: int | None = None,
    window: str = "hann",
    center: bool = True,
    pad_mode: str = "constant",
    power: float = 2.0,
    n_mels: int,
    fmin: float = 0.0,
    fmax: float | None = None,
    htk: bool = False,
    norm: str | None = "slaney",
) -> np.ndarray:
    """Mel spectrogram: ``mel_filterbank @ |stft(y)| ** power``.

    Parameters
    ----------
    y : np.ndarray, shape ``(..., samples)``, optional
        Audio; or pass ``S``, a spectrogram ``(..., 1 + n_fft // 2, frames)`` already raised to ``power``.
    sr, n_fft, hop_length, win_length, window, center, pad_mode, power
        STFT settings (see :func:`stft`).
    n_mels, fmin, fmax, htk, norm
        Filterbank settings (see :func:`mel_filterbank`).

    Returns
    -------
    np.ndarray, float32, shape ``(..., n_mels, frames)``

    Example
    -------
    >>> import numpy as np
    >>> mel_spectrogram(np.zeros(16000, np.float32), sr=16000, n_fft=512, hop_length=160,
    ...                 n_mels=64).shape
    (64, 101)
    """
    Sf, counts, lead = _spec_input(y, S, n_fft=n_fft, hop_length=hop_length, win_length=win_length,
                                   window=window, center=center, pad_mode=pad_mode, power=power,
                                   owner="mel_spectrogram")
    n_fft_eff = 2 * (Sf.shape[0] - 1)
    fb = mel_filterbank(sr=sr, n_fft=n_fft_eff, n_mels=n_mels, fmin=fmin, fmax=fmax, htk=htk, norm=norm)
    return _unflatten(colwise(fb, Sf.astype(np.float32, copy=False)), counts, lead)


def _power_to_db_flat(
    S: np.ndarray, counts: np.ndarray, *, ref: float, amin: float, top_db: float | None
) -> np.ndarray:
    log_spec = 10.0 * np.log10(np.maximum(amin, S))
    log_spec -= 10.0 * np.log10(max(amin, ref))
    if top_db is not None:
        if top_db < 0:
            raise ParameterError(f"The 'top_db' parameter must be >= 0 or None. Got {top_db} instead.")
        peak = _segment_reduce(log_spec.max(axis=0, keepdims=True), counts, np.maximum)[0]
        floor = _per_frame(peak - top_db, counts)
        log_spec = np.maximum(log_spec, floor[None, :].astype(log_spec.dtype))
    return log_spec


def power_to_db(
    S: np.ndarray, *, ref: float = 1.0, amin: float = 1e-10, top_db: float | None = 80.0
) -> np.ndarray:
    """Power to decibels: ``10 log10(max(amin, S) / ref)``, floored at ``top_db`` below each clip's peak.

    Parameters
    ----------
    S : np.ndarray, shape ``(..., bins, frames)``
        Power values.
    ref : float
        Reference power (0 dB).
    amin : float
        Smallest power taken into account.
    top_db : float or None
        Dynamic range kept below the peak of each item of the batch (``None``: no floor). For a
        single clip this is librosa's ``power_to_db``; for a batch, librosa would use the peak of
        the whole batch, earmark uses each clip's own.

    Returns
    -------
    np.ndarray, same shape as ``S``

    Example
    -------
    >>> import numpy as np
    >>> power_to_db(np.array([[1.0, 0.01]]), top_db=None).tolist()
    [[0.0, -20.0]]
    """
    Sf, counts, lead = _flatten_spec(S)
    return _unflatten(_power_to_db_flat(Sf, counts, ref=ref, amin=amin, top_db=top_db), counts, lead)


def log_mel(
    y: np.ndarray | None = None,
    *,
    sr: float,
    S: np.ndarray | None = None,
    n_fft: int,
    hop_length: int,
    win_length: int | None = None,
    window: str = "hann",
    center: bool = True,
    pad_mode: str = "constant",
    power: float = 2.0,
    n_mels: int,
    fmin: float = 0.0,
    fmax: float | None = None,
    htk: bool = False,
    norm: str | None = "slaney",
    ref: float = 1.0,
    amin: float = 1e-10,
    top_db: float | None = 80.0,
) -> np.ndarray:
    """Log-mel spectrogram in dB: ``power_to_db(mel_spectrogram(...))``.

    Returns
    -------
    np.ndarray, float32, shape ``(..., n_mels, frames)``

    Example
    -------
    >>> import numpy as np
    >>> y = np.random.default_rng(0).standard_normal(16000).astype(np.float32)
    >>> log_mel(y, sr=16000, n_fft=512, win_length=400, hop_length=160, n_mels=64).shape
    (64, 101)
    """
    M = mel_spectrogram(y, sr=sr, S=S, n_fft=n_fft, hop_length=hop_length, win_length=win_length,
                        window=window, center=center, pad_mode=pad_mode, power=power, n_mels=n_mels,
                        fmin=fmin, fmax=fmax, htk=htk, norm=norm)
    return power_to_db(M, ref=ref, amin=amin, top_db=top_db)


@functools.lru_cache(maxsize=16)
def _dct_matrix(n_in: int, n_out: int, dct_type: int, norm: str | None) -> np.ndarray:
    eye = np.eye(n_in)
    out = scipy.fft.dct(eye, type=dct_type, norm=norm, axis=0)[:n_out].astype(np.float32)
    out.setflags(write=False)
    return out


def _mfcc_flat(logS: np.ndarray, *, n_mfcc: int, dct_type: int, norm: str | None, lifter: float) -> np.ndarray:
    M = colwise(_dct_matrix(logS.shape[0], n_mfcc, dct_type, norm), logS)
    if lifter > 0:
        li = 1 + (lifter / 2) * np.sin(np.pi * np.arange(1, 1 + n_mfcc, dtype=np.float64) / lifter)
        M = M * li[:, None].astype(M.dtype)
    elif lifter != 0:
        raise ParameterError(f"The 'lifter' parameter of mfcc must be >= 0. Got {lifter} instead.")
    return M


def mfcc(
    y: np.ndarray | None = None,
    *,
    sr: float,
    S: np.ndarray | None = None,
    n_mfcc: int,
    dct_type: int = 2,
    norm: str | None = "ortho",
    lifter: float = 0.0,
    n_fft: int,
    hop_length: int,
    win_length: int | None = None,
    window: str = "hann",
    center: bool = True,
    pad_mode: str = "constant",
    power: float = 2.0,
    n_mels: int,
    fmin: float = 0.0,
    fmax: float | None = None,
    htk: bool = False,
    mel_norm: str | None = "slaney",
    top_db: float | None = 80.0,
) -> np.ndarray:
    """Mel-frequency cepstral coefficients: DCT of the log-mel spectrogram.

    Parameters
    ----------
    y : np.ndarray, shape ``(..., samples)``, optional
        Audio; or ``S``, a log-power mel spectrogram (dB) ``(..., n_mels, frames)``.
    n_mfcc : int
        Number of coefficients kept.
    dct_type, norm : int, str
        DCT settings (type 2, orthonormal, as librosa).
    lifter : float
        Cepstral liftering (0: none).
    mel_norm : {"slaney", None}
        Normalisation of the mel filters.
    top_db : float or None
        Range of the log-mel before the DCT (see :func:`power_to_db`).

    Returns
    -------
    np.ndarray, float32, shape ``(..., n_mfcc, frames)``

    Example
    -------
    >>> import numpy as np
    >>> y = np.random.default_rng(0).standard_normal(22050).astype(np.float32)
    >>> mfcc(y, sr=22050, n_mfcc=20, n_fft=2048, hop_length=512, n_mels=128).shape
    (20, 44)
    """
    _check_positive_int("n_mfcc", n_mfcc, "mfcc")
    if S is None:
        S = log_mel(y, sr=sr, n_fft=n_fft, hop_length=hop_length, win_length=win_length, window=window,
                    center=center, pad_mode=pad_mode, power=power, n_mels=n_mels, fmin=fmin,
                    fmax=fmax, htk=htk, norm=mel_norm, top_db=top_db)
    Sf, counts, lead = _flatten_spec(S)
    return _unflatten(_mfcc_flat(Sf.astype(np.float32), n_mfcc=n_mfcc, dct_type=dct_type, norm=norm,
                                 lifter=lifter), counts, lead)


def delta(data: np.ndarray, *, width: int = 9, order: int = 1, axis: int = -1) -> np.ndarray:
    """Local derivative (Savitzky-Golay, ``mode="interp"``), as ``librosa.feature.delta``.

    Parameters
    ----------
    data : np.ndarray, shape ``(..., n_features, frames)``
    width : int
        Odd window length >= 3 (must not exceed the number of frames).
    order : int
        Derivative order (1: delta, 2: delta-delta).
    axis : int
        Time axis.

    Example
    -------
    >>> import numpy as np
    >>> delta(np.arange(20.0).reshape(1, 20)).round(6)[0, :3].tolist()
    [1.0, 1.0, 1.0]
    """
    data = np.asarray(data)
    if not isinstance(width, int) or width < 3 or width % 2 != 1:
        raise ParameterError(f"The 'width' parameter of delta must be an odd int >= 3. Got {width!r}.")
    if order < 1 or int(order) != order:
        raise ParameterError(f"The 'order' parameter of delta must be a positive int. Got {order!r}.")
    if data.shape[axis] < width:
        raise ParameterError(
            f"delta needs at least width={width} frames; got {data.shape[axis]}. Lower 'width' or use "
            "longer clips."
        )
    return scipy.signal.savgol_filter(data, width, deriv=order, polyorder=order, axis=axis,
                                      mode="interp").astype(data.dtype, copy=False)


# ----------------------------------------------------------------------------------------------
# tuning, chroma, contrast
# ----------------------------------------------------------------------------------------------


def _parabolic_shift(S: np.ndarray) -> np.ndarray:
    shift = np.zeros_like(S)
    x0, x1, x2 = S[:-2], S[1:-1], S[2:]
    a = x2 + x0 - 2 * x1
    b = (x2 - x0) / 2
    ok = np.abs(b) < np.abs(a)
    with np.errstate(divide="ignore", invalid="ignore"):
        shift[1:-1] = np.where(ok, -b / np.where(ok, a, 1), 0)
    return shift


def _tuning_ragged(
    S: np.ndarray, counts: np.ndarray, *, sr: float, n_fft: int, bins_per_octave: int,
    resolution: float = 0.01, fmin: float = 150.0, fmax: float = 4000.0, threshold: float = 0.1,
) -> np.ndarray:
    """``librosa.estimate_tuning`` (piptrack + histogram) for every clip of a ragged magnitude ``S``."""
    S = np.abs(S)
    fmax = min(fmax, sr / 2)
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sr)
    lo = int(np.searchsorted(freqs, max(fmin, 0), side="left"))
    hi = int(np.searchsorted(freqs, fmax, side="left"))
    ref = threshold * S.max(axis=0)
    # only the rows lo - 1 .. hi (peaks are looked for in lo .. hi - 1, each with its neighbours)
    a, b = max(lo - 1, 0), min(hi + 1, S.shape[0])
    Sb = S[a:b]
    T = Sb * (ref[None, :] < Sb)
    # local maxima of T along frequency (edge-padded): T[i] > T[i-1] and T[i] >= T[i+1]
    prev = np.concatenate([T[:1], T[:-1]])
    nxt = np.concatenate([T[1:], T[-1:]])
    peak = (prev < T) & (nxt <= T)
    peak[:max(lo - a, 0)] = False
    peak[max(hi - a, 0):] = False
    fi, ti = np.nonzero(peak)
    fi = fi + a
    # parabolic interpolation only where needed
    x0 = S[np.maximum(fi - 1, 0), ti]
    x1 = S[fi, ti]
    x2 = S[np.minimum(fi + 1, S.shape[0] - 1), ti]
    a = x2 + x0 - 2 * x1
    b = (x2 - x0) / 2
    interior = (fi > 0) & (fi < S.shape[0] - 1)
    ok = (np.abs(b) < np.abs(a)) & interior
    shift = np.zeros_like(x1)
    shift[ok] = -b[ok] / a[ok]
    grad = np.where(fi == 0, S[np.minimum(fi + 1, S.shape[0] - 1), ti] - x1,
                    np.where(fi == S.shape[0] - 1, x1 - x0, (x2 - x0) / 2))
    pitch = (fi + shift) * float(sr) / n_fft
    mag = x1 + 0.5 * grad * shift
    clip_of = np.repeat(np.arange(len(counts)), counts)[ti]
    order = np.argsort(clip_of, kind="stable")
    clip_sorted = clip_of[order]
    bounds = np.searchsorted(clip_sorted, np.arange(len(counts) + 1))
    edges = np.linspace(-0.5, 0.5, int(np.ceil(1.0 / resolution)) + 1)
    out = np.zeros(len(counts))
    for c in range(len(counts)):
        sel = order[bounds[c]:bounds[c + 1]]
        p = pitch[sel]
        m = mag[sel]
        pos = p > 0
        if not pos.any():
            continue
        thr = np.median(m[pos])
        f = p[(m >= thr) & pos]
        f = f[f > 0]
        if f.size == 0:
            continue
        residual = np.mod(bins_per_octave * np.log2(f / (440.0 / 16)), 1.0)
        residual[residual >= 0.5] -= 1.0
        hist, e = np.histogram(residual, edges)
        out[c] = e[np.argmax(hist)]
    return out


def estimate_tuning(
    y: np.ndarray | None = None,
    *,
    sr: float,
    S: np.ndarray | None = None,
    n_fft: int = 2048,
    hop_length: int = 512,
    resolution: float = 0.01,
    bins_per_octave: int = 12,
    fmin: float = 150.0,
    fmax: float = 4000.0,
    threshold: float = 0.1,
) -> np.ndarray:
    """Tuning deviation from A440 in fractions of a bin, per clip (``librosa.estimate_tuning``).

    Parameters
    ----------
    y : np.ndarray, shape ``(..., samples)``, optional
        Audio; or ``S``, a magnitude spectrogram ``(..., 1 + n_fft // 2, frames)``.
    resolution : float
        Histogram resolution (fraction of a bin).
    bins_per_octave : int
    fmin, fmax, threshold : float
        Peak picking range (Hz) and threshold relative to each frame's maximum.

    Returns
    -------
    np.ndarray, shape ``(...)``: one value in ``[-0.5, 0.5)`` per clip.

    Example
    -------
    >>> import numpy as np
    >>> t = np.arange(22050) / 22050
    >>> float(estimate_tuning(np.sin(2 * np.pi * 440 * 2 ** (0.25 / 12) * t).astype(np.float32),
    ...                       sr=22050))  # a quarter-semitone sharp, on librosa's 0.01 grid
    0.24
    """
    Sf, counts, lead = _spec_input(y, S, n_fft=n_fft, hop_length=hop_length, win_length=None,
                                   window="hann", center=True, pad_mode="constant", power=1.0,
                                   owner="estimate_tuning")
    t = _tuning_ragged(Sf, counts, sr=sr, n_fft=2 * (Sf.shape[0] - 1), bins_per_octave=bins_per_octave,
                       resolution=resolution, fmin=fmin, fmax=fmax, threshold=threshold)
    return t.reshape(lead)


@functools.lru_cache(maxsize=256)
def _chroma_fb(sr: float, n_fft: int, tuning: float, n_chroma: int) -> np.ndarray:
    import librosa

    fb = librosa.filters.chroma(sr=sr, n_fft=n_fft, tuning=tuning, n_chroma=n_chroma).astype(np.float32)
    fb.setflags(write=False)
    return fb


def _normalize_frames(x: np.ndarray, norm: float | None) -> np.ndarray:
    """librosa.util.normalize along axis 0 with its default threshold (tiny) and fill=None."""
    if norm is None:
        return x
    mag = np.abs(x)
    if norm == np.inf:
        length = mag.max(axis=0, keepdims=True)
    elif norm > 0:
        length = (mag**norm).sum(axis=0, keepdims=True) ** (1.0 / norm)
    else:
        raise ParameterError(f"The 'norm' parameter must be a positive number, np.inf or None. Got {norm!r}.")
    length = np.where(length < np.finfo(x.dtype).tiny, 1.0, length).astype(x.dtype)
    return x / length


def _chroma_stft_flat(S: np.ndarray, counts: np.ndarray, *, sr: float, n_chroma: int,
                      tuning: float | np.ndarray | None, norm: float | None) -> np.ndarray:
    n_fft = 2 * (S.shape[0] - 1)
    if tuning is None:
        tunings = _tuning_ragged(S, counts, sr=sr, n_fft=n_fft, bins_per_octave=n_chroma)
    else:
        tunings = np.broadcast_to(np.asarray(tuning, dtype=np.float64), (len(counts),))
    per_frame = _per_frame(tunings, counts)
    out = np.empty((n_chroma, S.shape[1]), dtype=np.float32)
    S32 = S.astype(np.float32, copy=False)
    for t in np.unique(tunings):
        cols = np.nonzero(per_frame == t)[0]
        if len(cols) == S.shape[1]:
            out = colwise(_chroma_fb(float(sr), n_fft, float(t), n_chroma), S32)
        else:
            out[:, cols] = colwise(_chroma_fb(float(sr), n_fft, float(t), n_chroma), S32[:, cols])
    return _normalize_frames(out, norm)


def chroma_stft(
    y: np.ndarray | None = None,
    *,
    sr: float,
    S: np.ndarray | None = None,
    norm: float | None = np.inf,
    n_fft: int,
    hop_length: int,
    win_length: int | None = None,
    window: str = "hann",
    center: bool = True,
    pad_mode: str = "constant",
    power: float = 2.0,
    tuning: float | None = None,
    n_chroma: int = 12,
) -> np.ndarray:
    """Chromagram from an STFT (``librosa.feature.chroma_stft``).

    Parameters
    ----------
    y : np.ndarray, shape ``(..., samples)``, optional
        Audio; or ``S``, a spectrogram ``(..., 1 + n_fft // 2, frames)`` used as is.
    norm : float or None
        Per-frame normalisation (``np.inf``: max = 1).
    power : float
        Exponent of the STFT magnitude when computed from ``y``.
    tuning : float or None
        Tuning offset in fractions of a chroma bin; ``None`` estimates it per clip.
    n_chroma : int

    Returns
    -------
    np.ndarray, float32, shape ``(..., n_chroma, frames)``

    Example
    -------
    >>> import numpy as np
    >>> t = np.arange(22050) / 22050
    >>> c = chroma_stft(np.sin(2 * np.pi * 440 * t).astype(np.float32), sr=22050, n_fft=2048,
    ...                 hop_length=512)
    >>> int(c.mean(axis=-1).argmax())  # A
    9
    """
    Sf, counts, lead = _spec_input(y, S, n_fft=n_fft, hop_length=hop_length, win_length=win_length,
                                   window=window, center=center, pad_mode=pad_mode, power=power,
                                   owner="chroma_stft")
    return _unflatten(_chroma_stft_flat(Sf, counts, sr=sr, n_chroma=n_chroma, tuning=tuning, norm=norm),
                      counts, lead)


@functools.lru_cache(maxsize=16)
def _contrast_bands(sr: float, n_fft: int, fmin: float, n_bands: int, quantile: float):
    freq = np.fft.rfftfreq(n_fft, 1.0 / sr)
    octa = np.zeros(n_bands + 2)
    octa[1:] = fmin * (2.0 ** np.arange(0, n_bands + 1))
    if np.any(octa[:-1] >= 0.5 * sr):
        raise ParameterError(
            f"spectral_contrast bands exceed Nyquist (sr={sr}, fmin={fmin}, n_bands={n_bands}); "
            "reduce fmin or n_bands."
        )
    bands = []
    for k, (f_low, f_high) in enumerate(itertools.pairwise(octa)):
        current = np.logical_and(freq >= f_low, freq <= f_high)
        idx = np.flatnonzero(current)
        if k > 0:
            current[idx[0] - 1] = True
        if k == n_bands:
            current[idx[-1] + 1:] = True
        sel = np.flatnonzero(current)
        n_q = max(int(np.rint(quantile * len(sel))), 1)
        if k < n_bands:
            sel = sel[:-1]
        bands.append((int(sel[0]), int(sel[-1]) + 1, n_q))
    return tuple(bands)


def _contrast_flat(S: np.ndarray, counts: np.ndarray, *, sr: float, fmin: float, n_bands: int,
                   quantile: float, linear: bool) -> np.ndarray:
    n_fft = 2 * (S.shape[0] - 1)
    bands = _contrast_bands(float(sr), n_fft, float(fmin), int(n_bands), float(quantile))
    valley = np.empty((n_bands + 1, S.shape[1]), dtype=np.float64)
    peak = np.empty_like(valley)
    for k, (a, b, n_q) in enumerate(bands):
        sub = S[a:b]
        if n_q == 1:
            valley[k] = sub.min(axis=0)
            peak[k] = sub.max(axis=0)
        else:
            m = sub.shape[0]
            part = np.partition(sub, (n_q - 1, m - n_q), axis=0)
            lo = np.sort(part[:n_q], axis=0)
            hi = np.sort(part[m - n_q:], axis=0)
            valley[k] = lo.mean(axis=0)
            peak[k] = hi.mean(axis=0)
    if linear:
        return (peak - valley).astype(np.float32)
    # power_to_db with librosa's defaults (ref=1, amin=1e-10, top_db=80) on peak and valley
    pk = _power_to_db_flat(peak, counts, ref=1.0, amin=1e-10, top_db=80.0)
    vl = _power_to_db_flat(valley, counts, ref=1.0, amin=1e-10, top_db=80.0)
    return (pk - vl).astype(np.float32)


def spectral_contrast(
    y: np.ndarray | None = None,
    *,
    sr: float,
    S: np.ndarray | None = None,
    n_fft: int,
    hop_length: int,
    win_length: int | None = None,
    window: str = "hann",
    center: bool = True,
    pad_mode: str = "constant",
    fmin: float = 200.0,
    n_bands: int = 6,
    quantile: float = 0.02,
    linear: bool = False,
) -> np.ndarray:
    """Spectral contrast: peak minus valley (dB) in octave bands (``librosa.feature.spectral_contrast``).

    Parameters
    ----------
    y : np.ndarray, shape ``(..., samples)``, optional
        Audio; or ``S``, a magnitude spectrogram ``(..., 1 + n_fft // 2, frames)``.
    fmin : float
        Upper edge of the first band (Hz); each further band is an octave.
    n_bands : int
    quantile : float
        Fraction of each band's bins averaged for the peak and the valley.
    linear : bool
        Linear difference instead of a dB difference.

    Returns
    -------
    np.ndarray, float32, shape ``(..., n_bands + 1, frames)``

    Example
    -------
    >>> import numpy as np
    >>> y = np.random.default_rng(0).standard_normal(22050).astype(np.float32)
    >>> spectral_contrast(y, sr=22050, n_fft=2048, hop_length=512).shape
    (7, 44)
    """
    if not 0.0 < quantile < 1.0:
        raise ParameterError(f"The 'quantile' parameter of spectral_contrast must be in (0, 1). Got {quantile}.")
    Sf, counts, lead = _spec_input(y, S, n_fft=n_fft, hop_length=hop_length, win_length=win_length,
                                   window=window, center=center, pad_mode=pad_mode, power=1.0,
                                   owner="spectral_contrast")
    return _unflatten(_contrast_flat(Sf, counts, sr=sr, fmin=fmin, n_bands=n_bands, quantile=quantile,
                                     linear=linear), counts, lead)


# ----------------------------------------------------------------------------------------------
# HPSS, CQT, tonnetz
# ----------------------------------------------------------------------------------------------


def _istft_ragged(spec: np.ndarray, counts: np.ndarray, lengths: Sequence[int], *, n_fft: int,
                  hop_length: int, window: str) -> list[np.ndarray]:
    """Inverse of :func:`_stft_ragged` (center=True) to clips of the given lengths."""
    from earmark.features._kernels import overlap_add

    w = _window(window, n_fft, n_fft)
    # numpy's FFT and float64 window, accumulated into float32: the same rounding as librosa
    frames = np.fft.irfft(spec.T, n=n_fft, axis=1) * w
    n_frames = counts
    buf_len = n_fft + hop_length * (n_frames - 1)
    buf_off = np.concatenate([[0], np.cumsum(buf_len)[:-1]])
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    within = np.arange(int(counts.sum())) - np.repeat(first, counts)
    starts = np.repeat(buf_off, counts) + within * hop_length
    out = np.zeros(int(buf_len.sum()), dtype=np.float32)
    overlap_add(frames, starts.astype(np.int64), hop_length, out)
    w2 = (w.astype(np.float64) ** 2)
    res = []
    for c, L in enumerate(lengths):
        nf = int(n_frames[c])
        wss = _window_sumsquare(w2, nf, hop_length, n_fft)
        seg = out[buf_off[c]:buf_off[c] + buf_len[c]]
        a = n_fft // 2
        y = seg[a:a + L].copy()
        ws = wss[a:a + L]
        if len(y) < L:
            y = np.pad(y, (0, L - len(y)))
            ws = np.pad(ws, (0, L - len(ws)))
        nz = ws > np.finfo(np.float32).tiny
        y[nz] /= ws[nz]
        res.append(y)
    return res


@functools.lru_cache(maxsize=512)
def _wss_cached(w2_key: bytes, n_frames: int, hop: int, n_fft: int) -> np.ndarray:
    w2 = np.frombuffer(w2_key, dtype=np.float64)
    out = np.zeros(n_fft + hop * (n_frames - 1), dtype=np.float32)
    for i in range(n_frames):
        out[i * hop:i * hop + n_fft] += w2
    return out


def _window_sumsquare(w2: np.ndarray, n_frames: int, hop: int, n_fft: int) -> np.ndarray:
    return _wss_cached(w2.tobytes(), n_frames, hop, n_fft)


def _harmonic_ragged(clips: Sequence[np.ndarray], *, n_fft: int, hop_length: int, kernel_size: int,
                     power: float, margin: float,
                     stft_done: tuple[np.ndarray, np.ndarray] | None = None) -> list[np.ndarray]:
    from earmark.features._kernels import harmonic_spectrum, median_rows, median_segments

    if stft_done is None:
        D, counts = _stft_ragged(clips, n_fft=n_fft, hop_length=hop_length, win_length=None,
                                 window="hann", center=True, pad_mode="constant")
    else:
        D, counts = stft_done
    Dt = np.ascontiguousarray(D.T)  # (frames, bins)
    mag = np.abs(Dt)
    bounds = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    harm = median_segments(mag, bounds, kernel_size)
    perc = median_rows(mag, kernel_size)
    if power == 2.0:
        Dh = harmonic_spectrum(Dt, mag, harm, perc, float(margin), 0.5 if margin == 1 else 0.0).T
        return _istft_ragged(Dh, counts, [len(c) for c in clips], n_fft=n_fft, hop_length=hop_length,
                             window="hann")
    perc = perc * np.float32(margin)
    Z = np.maximum(harm, perc)
    bad = Z < _TINY32
    Z[bad] = 1
    mh = (harm / Z) ** power
    mp = (perc / Z) ** power
    good = ~bad
    mask = np.empty_like(mh)
    mask[good] = mh[good] / (mh[good] + mp[good])
    mask[bad] = 0.5 if margin == 1 else 0.0
    # librosa.magphase: (|D| * mask) * phase, with the same rounding
    nz = mag == 0
    denom = mag + nz
    phase = np.empty_like(Dt)
    phase.real = Dt.real / denom + nz
    phase.imag = Dt.imag / denom
    Dh = ((mag * mask) * phase).T
    return _istft_ragged(Dh, counts, [len(c) for c in clips], n_fft=n_fft, hop_length=hop_length,
                         window="hann")


def harmonic(
    y: np.ndarray, *, n_fft: int = 2048, hop_length: int = 512, kernel_size: int = 31,
    power: float = 2.0, margin: float = 1.0,
) -> np.ndarray:
    """Harmonic part of the audio by median-filtering HPSS (``librosa.effects.harmonic``).

    Parameters
    ----------
    y : np.ndarray, shape ``(..., samples)``
    n_fft, hop_length : int
        STFT settings (Hann window, centred, zero padding).
    kernel_size : int
        Odd width of the time and frequency median filters (frames, bins).
    power : float
        Soft-mask exponent.
    margin : float
        Separation margin (>= 1).

    Returns
    -------
    np.ndarray, float32, same shape as ``y``

    Example
    -------
    >>> import numpy as np
    >>> harmonic(np.zeros(4096, np.float32)).shape
    (4096,)
    """
    if kernel_size % 2 != 1 or kernel_size < 1:
        raise ParameterError(f"The 'kernel_size' parameter of harmonic must be an odd int. Got {kernel_size}.")
    if margin < 1:
        raise ParameterError(f"The 'margin' parameter of harmonic must be >= 1. Got {margin}.")
    clips, lead = _as_clips(y)
    out = _harmonic_ragged(clips, n_fft=n_fft, hop_length=hop_length, kernel_size=kernel_size,
                           power=power, margin=margin)
    return np.stack(out).reshape(*lead, -1) if out else np.zeros((*lead, 0), np.float32)


@functools.lru_cache(maxsize=1024)
def _cqt_octave_basis(sr: float, hop_length: int, fmin: float, n_bins: int, bins_per_octave: int,
                      tuning: float, octave: int, filter_scale: float, norm: float, sparsity: float,
                      window: str) -> tuple[np.ndarray, int, int, int]:
    """Frequency-domain basis of one CQT octave at rate ``sr / 2**octave`` (librosa's vqt), as the
    band of FFT bins where it is non-zero: ``(band (hi - lo, filters) complex64, lo, hi, n_fft)``."""
    import librosa

    n_filters = min(bins_per_octave, n_bins)
    if octave > 0 and n_filters * (octave + 1) <= n_bins:
        # A full octave below the top one has the top octave's filters at half the rate (the same
        # frequency / rate ratios): only the scale sqrt(2 ** octave) differs (equal to librosa's
        # own filters to float32 rounding).
        band, lo, hi, n_fft = _cqt_octave_basis(sr, hop_length, fmin, n_bins, bins_per_octave, tuning, 0,
                                                filter_scale, norm, sparsity, window)
        band = band * np.float32(np.sqrt(2.0**octave))
        band.setflags(write=False)
        return band, lo, hi, n_fft
    fmin_t = fmin * 2.0 ** (tuning / bins_per_octave)
    freqs = librosa.interval_frequencies(n_bins=n_bins, fmin=fmin_t, intervals="equal",
                                         bins_per_octave=bins_per_octave, sort=True)
    logf = np.log2(freqs)
    bpo = np.empty_like(freqs)
    bpo[0] = 1 / (logf[1] - logf[0])
    bpo[-1] = 1 / (logf[-1] - logf[-2])
    bpo[1:-1] = 2 / (logf[2:] - logf[:-2])
    alpha = (2.0 ** (2 / bpo) - 1) / (2.0 ** (2 / bpo) + 1)
    sl = slice(-n_filters, None) if octave == 0 else slice(-n_filters * (octave + 1), -n_filters * octave)
    my_sr = sr / 2.0**octave
    basis, lengths = _wavelet(freqs[sl], my_sr, filter_scale, norm, window, alpha[sl])
    n_fft = basis.shape[1]
    basis *= lengths[:, None] / float(n_fft)
    fb = np.fft.fft(basis, n=n_fft, axis=1)[:, : n_fft // 2 + 1]
    dense = _sparsify_rows(fb, sparsity) * np.float32(np.sqrt(sr / my_sr))
    nz = np.flatnonzero(np.any(dense != 0, axis=0))
    lo, hi = (int(nz[0]), int(nz[-1]) + 1) if len(nz) else (0, 1)
    band = np.ascontiguousarray(dense[:, lo:hi].T)  # (bins, filters): C-contiguous for a BLAS product
    band.setflags(write=False)
    return band, lo, hi, n_fft


def _wavelet(freqs: np.ndarray, sr: float, filter_scale: float, norm: float, window: str,
             alpha: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``librosa.filters.wavelet(..., gamma=0, pad_fft=True)``, bit for bit, vectorised over the
    filters (the same floating-point operations in the same order, on the filters' own samples)."""
    lengths = (float(filter_scale) / alpha) * sr / freqs
    max_len = int(2.0 ** (np.ceil(np.log2(max(lengths)))))
    start = np.floor_divide(-lengths, 2)
    n = (np.floor_divide(lengths, 2) - start).astype(np.int64)
    # one flat run of samples per filter: filter i has n[i] samples j = 0 .. n[i] - 1
    row = np.repeat(np.arange(len(freqs)), n)
    first = np.concatenate([[0], np.cumsum(n)[:-1]])
    j = (np.arange(int(n.sum())) - np.repeat(first, n)).astype(float)
    ang = (start[row] + j) * 2 * np.pi * freqs[row] / sr
    sig = np.cos(ang) + 1j * np.sin(ang)
    if window == "hann":
        step = (2 * np.pi) / n.astype(float)  # scipy: linspace(-pi, pi, n + 1)[:-1]
        fac = j * step[row] + -np.pi
        w = 0.5 + 0.5 * np.cos(fac)  # scipy's general_cosine: 0 + 0.5 cos(0 fac) + 0.5 cos(fac)
    else:
        w = np.concatenate([scipy.signal.get_window(window, int(ni), fftbins=True) for ni in n])
    sig = sig * w
    out = np.zeros((len(freqs), max_len), dtype=np.complex64)
    for i, ni in enumerate(n):
        seg = sig[first[i]:first[i] + ni]
        if norm is not None:
            length = np.sum(np.abs(seg) ** norm) ** (1.0 / norm)
            if length >= np.finfo(float).tiny:
                seg = seg / length
        lpad = int((max_len - ni) // 2)
        out[i, lpad:lpad + ni] = seg
    return out, lengths


def _sparsify_rows(x: np.ndarray, quantile: float) -> np.ndarray:
    """Dense twin of ``librosa.util.sparsify_rows``: zero the smallest entries of each row that
    hold ``quantile`` of its L1 norm."""
    mags = np.abs(x)
    norms = np.sum(mags, axis=1, keepdims=True)
    mag_sort = np.sort(mags, axis=1)
    cumulative = np.cumsum(mag_sort / norms, axis=1)
    idx = np.argmin(cumulative < quantile, axis=1)
    thr = mag_sort[np.arange(len(x)), idx][:, None]
    return np.where(mags >= thr, x, 0).astype(np.complex64)


@functools.lru_cache(maxsize=256)
def _cqt_lengths(sr: float, fmin: float, n_bins: int, bins_per_octave: int, tuning: float,
                 filter_scale: float, window: str) -> np.ndarray:
    import librosa

    fmin_t = fmin * 2.0 ** (tuning / bins_per_octave)
    freqs = librosa.interval_frequencies(n_bins=n_bins, fmin=fmin_t, intervals="equal",
                                         bins_per_octave=bins_per_octave, sort=True)
    alpha = librosa.filters._relative_bandwidth(freqs=freqs)
    lengths, cutoff = librosa.filters.wavelet_lengths(freqs=freqs, sr=sr, window=window,
                                                       filter_scale=filter_scale, gamma=0.0, alpha=alpha)
    if cutoff > sr / 2:
        raise ParameterError(
            f"CQT with n_bins={n_bins} from fmin={fmin:.2f} Hz exceeds Nyquist at sr={sr}; lower n_bins."
        )
    return np.sqrt(lengths).astype(np.float32)


def _halve_many(clips: Sequence[np.ndarray]) -> list[np.ndarray]:
    """``librosa.resample(y, orig_sr=2, target_sr=1, res_type='soxr_hq', scale=True)`` of every
    clip, sample for sample, in a few multi-channel soxr calls."""
    from earmark.audio import resample_many

    s = np.float32(np.sqrt(2.0))
    return [z * s for z in resample_many(list(clips), orig_sr=2, target_sr=1, quality="soxr_hq")]


def _cqt_ragged(clips: Sequence[np.ndarray], tunings: np.ndarray, *, sr: float, hop_length: int,
                fmin: float, n_bins: int, bins_per_octave: int, filter_scale: float = 1.0,
                norm: float = 1.0, sparsity: float = 0.01, window: str = "hann",
                scale: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Complex CQT of a ragged batch, each clip with its own tuning: ``(n_bins, total_frames)``.

    All clips go through each octave together (one framing, one FFT, one halving pass); only the
    filter product is per tuning, on the frames of the clips with that tuning.
    """
    n_octaves = int(np.ceil(n_bins / bins_per_octave))
    _cqt_lengths(float(sr), fmin, n_bins, bins_per_octave, 0.0, filter_scale, window)  # validates
    if hop_length % (2 ** (n_octaves - 1)):
        raise ParameterError(
            f"hop_length={hop_length} must be divisible by 2**(n_octaves-1)={2 ** (n_octaves - 1)} "
            "for the multirate CQT; use a multiple of it."
        )
    n_clips = len(clips)
    if n_clips == 0:
        return np.zeros((n_bins, 0), np.complex64), np.zeros(0, np.int64)
    tunings = np.asarray(tunings, dtype=np.float64)
    perm = np.argsort(tunings, kind="stable")  # clips of one tuning side by side
    uniq, group_start = np.unique(tunings[perm], return_index=True)
    group_end = np.append(group_start[1:], n_clips)
    cur = [np.asarray(clips[i], dtype=np.float32) for i in perm]
    hop = hop_length
    responses = []
    frame_counts = []
    for octave in range(n_octaves):
        bases = [_cqt_octave_basis(float(sr), hop_length, fmin, n_bins, bins_per_octave, float(t), octave,
                                   filter_scale, norm, sparsity, window) for t in uniq]
        R = None
        counts = None
        for n_fft in sorted({b[3] for b in bases}):
            frames, counts = _frame_ragged(cur, frame_length=n_fft, hop_length=hop, center=True,
                                           pad_mode="constant")
            use = [g for g, b in enumerate(bases) if b[3] == n_fft]
            lo = min(bases[g][1] for g in use)
            hi = max(bases[g][2] for g in use)
            # window 'ones'; a float32 FFT (librosa's is float64 rounded to complex64: the same to
            # ~1e-6 of each frame's level, nothing downstream of the CQT is discontinuous)
            D = scipy.fft.rfft(frames, axis=1)[:, lo:hi]
            if R is None:
                R = np.empty((D.shape[0], bases[0][0].shape[1]), dtype=np.complex64)
            fstart = np.concatenate([[0], np.cumsum(counts)])
            for g in use:
                band, blo, bhi, _ = bases[g]
                a, b = fstart[group_start[g]], fstart[group_end[g]]
                R[a:b] = rowwise(D[a:b, blo - lo:bhi - lo], band)
        responses.append(R)
        frame_counts.append(counts)
        if octave < n_octaves - 1:
            hop //= 2
            cur = _halve_many(cur)
    fc = np.stack(frame_counts)  # (octaves, clips), permuted order
    keep = fc.min(axis=0)
    out = np.empty((n_bins, int(keep.sum())), dtype=np.complex64)
    end = n_bins
    for octave, R in enumerate(responses):
        n_oct = R.shape[1]
        if np.array_equal(fc[octave], keep):
            blk = R.T
        else:
            starts = np.concatenate([[0], np.cumsum(fc[octave])[:-1]])
            idx = np.concatenate([np.arange(starts[c], starts[c] + keep[c]) for c in range(n_clips)])
            blk = R[idx].T
        if end < n_oct:
            out[:end] = blk[-end:]
        else:
            out[end - n_oct:end] = blk
        end -= n_oct
    kstart = np.concatenate([[0], np.cumsum(keep)])
    if scale:
        for g, t in enumerate(uniq):
            a, b = kstart[group_start[g]], kstart[group_end[g]]
            out[:, a:b] /= _cqt_lengths(float(sr), fmin, n_bins, bins_per_octave, float(t), filter_scale,
                                        window)[:, None]
    # back to the callers' clip order
    inv = np.empty(n_clips, dtype=np.int64)
    inv[perm] = np.arange(n_clips)
    counts_out = keep[inv]
    if np.array_equal(perm, np.arange(n_clips)):
        return out, counts_out
    cols = np.concatenate([np.arange(kstart[inv[i]], kstart[inv[i] + 1]) for i in range(n_clips)])
    return out[:, cols], counts_out


def cqt(
    y: np.ndarray,
    *,
    sr: float,
    hop_length: int = 512,
    fmin: float = 32.70319566257483,
    n_bins: int = 84,
    bins_per_octave: int = 12,
    tuning: float | None = 0.0,
    filter_scale: float = 1.0,
    norm: float = 1.0,
    sparsity: float = 0.01,
    window: str = "hann",
    scale: bool = True,
) -> np.ndarray:
    """Constant-Q transform by librosa's multirate algorithm (``librosa.cqt``, soxr_hq resampling).

    Parameters
    ----------
    y : np.ndarray, shape ``(..., samples)``
    sr : float
    hop_length : int
        Must be divisible by ``2 ** (n_octaves - 1)``.
    fmin : float
        Lowest frequency (Hz; default C1).
    n_bins, bins_per_octave : int
    tuning : float or None
        Tuning offset in fractions of a bin; ``None`` estimates it per clip.
    filter_scale, norm, sparsity, window, scale
        Filter design and normalisation, as librosa.

    Returns
    -------
    np.ndarray, complex64, shape ``(..., n_bins, frames)``

    Example
    -------
    >>> import numpy as np
    >>> cqt(np.zeros(22050, np.float32), sr=22050).shape
    (84, 44)
    """
    clips, lead = _as_clips(y)
    tunings = _resolve_tunings(clips, tuning, sr=sr, bins_per_octave=bins_per_octave)
    C, counts = _cqt_ragged(clips, tunings, sr=sr, hop_length=hop_length, fmin=fmin, n_bins=n_bins,
                            bins_per_octave=bins_per_octave, filter_scale=filter_scale, norm=norm,
                            sparsity=sparsity, window=window, scale=scale)
    return _unflatten(C, counts, lead)


def _resolve_tunings(clips: Sequence[np.ndarray], tuning: float | None, *, sr: float,
                     bins_per_octave: int) -> np.ndarray:
    if tuning is not None:
        return np.full(len(clips), float(tuning))
    S, counts = _stft_ragged(clips, n_fft=2048, hop_length=512, win_length=None, window="hann",
                             center=True, pad_mode="constant")
    return _tuning_ragged(np.abs(S), counts, sr=sr, n_fft=2048, bins_per_octave=bins_per_octave)


@functools.lru_cache(maxsize=16)
def _cq_to_chroma(n_input: int, bins_per_octave: int, n_chroma: int, fmin: float) -> np.ndarray:
    import librosa

    m = librosa.filters.cq_to_chroma(n_input, bins_per_octave=bins_per_octave, n_chroma=n_chroma,
                                     fmin=fmin).astype(np.float32)
    m.setflags(write=False)
    return m


def _chroma_cqt_ragged(clips: Sequence[np.ndarray], *, sr: float, hop_length: int, fmin: float,
                       n_chroma: int, n_octaves: int, bins_per_octave: int, tuning: float | None,
                       norm: float | None, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    n_bins = n_octaves * bins_per_octave
    tunings = _resolve_tunings(clips, tuning, sr=sr, bins_per_octave=bins_per_octave)
    C, counts = _cqt_ragged(clips, tunings, sr=sr, hop_length=hop_length, fmin=fmin, n_bins=n_bins,
                            bins_per_octave=bins_per_octave)
    chroma = colwise(_cq_to_chroma(n_bins, bins_per_octave, n_chroma, float(fmin)), np.abs(C))
    chroma[chroma < threshold] = 0.0
    return _normalize_frames(chroma, norm), counts


def chroma_cqt(
    y: np.ndarray,
    *,
    sr: float,
    hop_length: int = 512,
    fmin: float = 32.70319566257483,
    n_chroma: int = 12,
    n_octaves: int = 7,
    bins_per_octave: int = 36,
    tuning: float | None = None,
    norm: float | None = np.inf,
    threshold: float = 0.0,
) -> np.ndarray:
    """Chromagram from a constant-Q transform (``librosa.feature.chroma_cqt``).

    Returns
    -------
    np.ndarray, float32, shape ``(..., n_chroma, frames)``

    Example
    -------
    >>> import numpy as np
    >>> t = np.arange(22050) / 22050
    >>> c = chroma_cqt(np.sin(2 * np.pi * 261.63 * t).astype(np.float32), sr=22050)
    >>> int(c.mean(axis=-1).argmax())  # C
    0
    """
    if bins_per_octave % n_chroma:
        raise ParameterError(
            f"bins_per_octave={bins_per_octave} must be a multiple of n_chroma={n_chroma}."
        )
    clips, lead = _as_clips(y)
    ch, counts = _chroma_cqt_ragged(clips, sr=sr, hop_length=hop_length, fmin=fmin, n_chroma=n_chroma,
                                    n_octaves=n_octaves, bins_per_octave=bins_per_octave, tuning=tuning,
                                    norm=norm, threshold=threshold)
    return _unflatten(ch, counts, lead)


@functools.lru_cache(maxsize=4)
def _tonnetz_matrix(n_chroma: int) -> np.ndarray:
    dim_map = np.linspace(0, 12, num=n_chroma, endpoint=False)
    scale = np.asarray([7.0 / 6, 7.0 / 6, 3.0 / 2, 3.0 / 2, 2.0 / 3, 2.0 / 3])
    V = np.multiply.outer(scale, dim_map)
    V[::2] -= 0.5
    R = np.array([1, 1, 1, 1, 0.5, 0.5])
    phi = (R[:, None] * np.cos(np.pi * V)).astype(np.float32)
    phi.setflags(write=False)
    return phi


def _tonnetz_flat(chroma: np.ndarray) -> np.ndarray:
    return colwise(_tonnetz_matrix(chroma.shape[0]), _normalize_frames(chroma, 1))


def tonnetz(
    y: np.ndarray | None = None,
    *,
    sr: float,
    chroma: np.ndarray | None = None,
    hop_length: int = 512,
    harmonic_first: bool = False,
) -> np.ndarray:
    """Tonal centroid features (``librosa.feature.tonnetz``) from ``chroma_cqt`` of the audio.

    Parameters
    ----------
    y : np.ndarray, shape ``(..., samples)``, optional
        Audio; or ``chroma`` ``(..., 12, frames)``.
    hop_length : int
        Hop of the chroma CQT.
    harmonic_first : bool
        Take the harmonic part (:func:`harmonic`) before the CQT, as the spoken-digit reference does
        with ``librosa.effects.harmonic``.

    Returns
    -------
    np.ndarray, float32, shape ``(..., 6, frames)``

    Example
    -------
    >>> import numpy as np
    >>> t = np.arange(22050) / 22050
    >>> tonnetz(np.sin(2 * np.pi * 440 * t).astype(np.float32), sr=22050).shape
    (6, 44)
    """
    if chroma is None:
        if y is None:
            raise ParameterError("tonnetz needs either audio 'y' or 'chroma'. Got neither.")
        clips, lead = _as_clips(y)
        if harmonic_first:
            clips = _harmonic_ragged(clips, n_fft=2048, hop_length=512, kernel_size=31, power=2.0,
                                     margin=1.0)
        ch, counts = _chroma_cqt_ragged(clips, sr=sr, hop_length=hop_length, fmin=32.70319566257483,
                                        n_chroma=12, n_octaves=7, bins_per_octave=36, tuning=None,
                                        norm=np.inf, threshold=0.0)
        return _unflatten(_tonnetz_flat(ch), counts, lead)
    Cf, counts, lead = _flatten_spec(chroma)
    return _unflatten(_tonnetz_flat(Cf.astype(np.float32)), counts, lead)


# ----------------------------------------------------------------------------------------------
# frame statistics
# ----------------------------------------------------------------------------------------------


def _centroid_flat(S: np.ndarray, sr: float) -> np.ndarray:
    freq = np.fft.rfftfreq(2 * (S.shape[0] - 1), 1.0 / sr).astype(np.float32)
    tot = S.sum(axis=0, keepdims=True)
    tot = np.where(tot < _TINY32, 1.0, tot)
    return colwise(freq[None, :], S) / tot


def spectral_centroid(
    y: np.ndarray | None = None, *, sr: float, S: np.ndarray | None = None, n_fft: int,
    hop_length: int, win_length: int | None = None, window: str = "hann", center: bool = True,
    pad_mode: str = "constant",
) -> np.ndarray:
    """Spectral centroid (Hz) of each frame's magnitude spectrum.

    Returns
    -------
    np.ndarray, float32, shape ``(..., 1, frames)``

    Example
    -------
    >>> import numpy as np
    >>> t = np.arange(16000) / 16000
    >>> c = spectral_centroid(np.sin(2 * np.pi * 1000 * t).astype(np.float32), sr=16000, n_fft=512,
    ...                       hop_length=256)
    >>> round(float(np.median(c)))
    1000
    """
    Sf, counts, lead = _spec_input(y, S, n_fft=n_fft, hop_length=hop_length, win_length=win_length,
                                   window=window, center=center, pad_mode=pad_mode, power=1.0,
                                   owner="spectral_centroid")
    return _unflatten(_centroid_flat(Sf, sr), counts, lead)


def _bandwidth_flat(S: np.ndarray, sr: float, p: float) -> np.ndarray:
    freq = np.fft.rfftfreq(2 * (S.shape[0] - 1), 1.0 / sr).astype(np.float32)
    cent = _centroid_flat(S, sr)
    tot = S.sum(axis=0, keepdims=True)
    Sn = S / np.where(tot < _TINY32, 1.0, tot)
    dev = np.abs(freq[:, None] - cent)
    return ((Sn * dev**p).sum(axis=0, keepdims=True)) ** (1.0 / p)


def spectral_bandwidth(
    y: np.ndarray | None = None, *, sr: float, S: np.ndarray | None = None, n_fft: int,
    hop_length: int, win_length: int | None = None, window: str = "hann", center: bool = True,
    pad_mode: str = "constant", p: float = 2.0,
) -> np.ndarray:
    """Spectral bandwidth of order ``p`` (Hz) around each frame's centroid (normalised spectrum).

    Returns
    -------
    np.ndarray, float32, shape ``(..., 1, frames)``

    Example
    -------
    >>> import numpy as np
    >>> y = np.random.default_rng(0).standard_normal(8000).astype(np.float32)
    >>> spectral_bandwidth(y, sr=8000, n_fft=256, hop_length=128).shape
    (1, 63)
    """
    Sf, counts, lead = _spec_input(y, S, n_fft=n_fft, hop_length=hop_length, win_length=win_length,
                                   window=window, center=center, pad_mode=pad_mode, power=1.0,
                                   owner="spectral_bandwidth")
    return _unflatten(_bandwidth_flat(Sf, sr, p), counts, lead)


def _rolloff_flat(S: np.ndarray, sr: float, roll_percent: float) -> np.ndarray:
    freq = np.fft.rfftfreq(2 * (S.shape[0] - 1), 1.0 / sr)
    total = np.cumsum(S, axis=0)
    threshold = roll_percent * total[-1:]
    ind = np.where(total < threshold, np.nan, 1)
    return np.nanmin(ind * freq[:, None], axis=0, keepdims=True).astype(np.float32)


def spectral_rolloff(
    y: np.ndarray | None = None, *, sr: float, S: np.ndarray | None = None, n_fft: int,
    hop_length: int, win_length: int | None = None, window: str = "hann", center: bool = True,
    pad_mode: str = "constant", roll_percent: float = 0.85,
) -> np.ndarray:
    """Frequency (Hz) below which ``roll_percent`` of each frame's magnitude lies.

    Returns
    -------
    np.ndarray, float32, shape ``(..., 1, frames)``

    Example
    -------
    >>> import numpy as np
    >>> y = np.random.default_rng(0).standard_normal(8000).astype(np.float32)
    >>> spectral_rolloff(y, sr=8000, n_fft=256, hop_length=128).shape
    (1, 63)
    """
    if not 0.0 < roll_percent < 1.0:
        raise ParameterError(f"The 'roll_percent' parameter must be in (0, 1). Got {roll_percent}.")
    Sf, counts, lead = _spec_input(y, S, n_fft=n_fft, hop_length=hop_length, win_length=win_length,
                                   window=window, center=center, pad_mode=pad_mode, power=1.0,
                                   owner="spectral_rolloff")
    return _unflatten(_rolloff_flat(Sf, sr, roll_percent), counts, lead)


def _flatness_flat(S: np.ndarray, amin: float, power: float) -> np.ndarray:
    St = np.maximum(amin, S.astype(np.float64) ** power)
    gmean = np.exp(np.mean(np.log(St), axis=0, keepdims=True))
    return (gmean / St.mean(axis=0, keepdims=True)).astype(np.float32)


def spectral_flatness(
    y: np.ndarray | None = None, *, S: np.ndarray | None = None, n_fft: int, hop_length: int,
    win_length: int | None = None, window: str = "hann", center: bool = True,
    pad_mode: str = "constant", amin: float = 1e-10, power: float = 2.0,
) -> np.ndarray:
    """Spectral flatness: geometric over arithmetic mean of ``max(amin, |S| ** power)`` per frame.

    Returns
    -------
    np.ndarray, float32, shape ``(..., 1, frames)``

    Example
    -------
    >>> import numpy as np
    >>> y = np.random.default_rng(0).standard_normal(8000).astype(np.float32)
    >>> bool(spectral_flatness(y, n_fft=256, hop_length=128).mean() > 0.3)
    True
    """
    Sf, counts, lead = _spec_input(y, S, n_fft=n_fft, hop_length=hop_length, win_length=win_length,
                                   window=window, center=center, pad_mode=pad_mode, power=1.0,
                                   owner="spectral_flatness")
    return _unflatten(_flatness_flat(Sf, amin, power), counts, lead)


def zero_crossing_rate(
    y: np.ndarray, *, frame_length: int, hop_length: int, center: bool = True,
) -> np.ndarray:
    """Fraction of sign changes per frame (``librosa.feature.zero_crossing_rate``, edge padding).

    Returns
    -------
    np.ndarray, float32, shape ``(..., 1, frames)``

    Example
    -------
    >>> import numpy as np
    >>> float(zero_crossing_rate(np.array([1, -1] * 1024, np.float32), frame_length=2048,
    ...                          hop_length=512)[0, 2])  # 2047 crossings in 2048 samples
    0.99951171875
    """
    clips, lead = _as_clips(y)
    frames, counts = _frame_ragged(clips, frame_length=frame_length, hop_length=hop_length,
                                   center=center, pad_mode="edge")
    return _unflatten(_zcr_frames(frames)[None, :], counts, lead)


def _zcr_frames(frames: np.ndarray) -> np.ndarray:
    s = np.signbit(np.where(np.abs(frames) <= 1e-10, np.float32(0), frames))
    cross = np.zeros(frames.shape, dtype=bool)
    cross[:, 1:] = s[:, 1:] != s[:, :-1]
    return cross.mean(axis=1).astype(np.float32)


def rms(
    y: np.ndarray, *, frame_length: int, hop_length: int, center: bool = True,
    pad_mode: str = "constant",
) -> np.ndarray:
    """Root-mean-square energy of each frame of samples (``librosa.feature.rms``).

    Returns
    -------
    np.ndarray, float32, shape ``(..., 1, frames)``

    Example
    -------
    >>> import numpy as np
    >>> float(rms(np.ones(4096, np.float32), frame_length=1024, hop_length=512)[0, 4])
    1.0
    """
    clips, lead = _as_clips(y)
    frames, counts = _frame_ragged(clips, frame_length=frame_length, hop_length=hop_length,
                                   center=center, pad_mode=pad_mode)
    return _unflatten(_rms_frames(frames)[None, :], counts, lead)


def _rms_frames(frames: np.ndarray) -> np.ndarray:
    return np.sqrt(np.mean(np.square(frames, dtype=np.float32), axis=1)).astype(np.float32)


def _n_frames(n_samples: int, *, frame_length: int, hop_length: int, center: bool) -> int:
    n = n_samples + (2 * (frame_length // 2) if center else 0)
    return 1 + (n - frame_length) // hop_length if n >= frame_length else 0


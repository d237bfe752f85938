"""Feature presets: named, frozen, JSON-round-tripping recipes from one mono clip to an array.

A :class:`Preset` is a frozen dataclass (``name``, ``kind``, ``sample_rate``, ``params``). The
``kind`` selects the implementation from a registry of *kinds*; ``params`` hold every setting
(all DSP parameters explicit). ``to_dict()`` is the full recipe: it is the cache key of the
feature store and is saved in model bundles.

Example
-------
>>> from earmark.features import get_preset
>>> p = get_preset("logmel")
>>> p.output_shape
(64, 101)
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

from earmark.errors import ParameterError
from earmark.features import _spectral as sp

__all__ = ["FEATURE_FORMAT", "Preset", "get_preset", "list_presets", "register_preset"]

#: Bumped when an implementation changes its numbers (part of every cache key).
FEATURE_FORMAT = 1


# ----------------------------------------------------------------------------------------------
# kinds: the implementations
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Kind:
    name: str
    defaults: Mapping[str, Any]
    batch: Callable[[Sequence[np.ndarray], int, Mapping[str, Any]], np.ndarray | list[np.ndarray]]
    pooled: bool
    shape: Callable[[int, Mapping[str, Any]], tuple[int, ...] | None]
    names: Callable[[Mapping[str, Any]], list[str] | None] = lambda p: None
    description: str = ""
    #: Raises when the preset cannot compute its features at all (e.g. the model it embeds with
    #: has changed): called when the preset is built, so a model refuses to load, once, rather
    #: than failing file by file.
    ready: Callable[[Mapping[str, Any]], None] = lambda p: None


_KINDS: dict[str, _Kind] = {}


def _fix_length(clips: Sequence[np.ndarray], n: int, align: str) -> list[np.ndarray]:
    out = []
    for c in clips:
        if len(c) > n:
            start = 0 if align == "start" else (len(c) - n) // 2
            c = c[start:start + n]
        out.append(c)
    return out


def _zero_extend(c: np.ndarray, n: int) -> np.ndarray:
    """``c`` followed by zeros up to ``n`` samples (unchanged when already that long)."""
    if len(c) >= n:
        return c
    out = np.zeros(n, dtype=np.float32)
    out[: len(c)] = c
    return out


def _target_samples(sr: int, p: Mapping[str, Any]) -> int | None:
    d = p.get("duration")
    return None if d is None else int(round(float(d) * sr))


# --- logmel -----------------------------------------------------------------------------------


def _logmel_batch(clips: Sequence[np.ndarray], sr: int, p: Mapping[str, Any]) -> np.ndarray:
    n_target = _target_samples(sr, p)
    assert n_target is not None
    n_fft, hop, n_mels = p["n_fft"], p["hop_length"], p["n_mels"]
    n_frames = 1 + n_target // hop
    clips = _fix_length(clips, n_target, p["align"])
    # Frames that lie wholly in the zero padding have zero power: only compute the others.
    short = [_zero_extend(c, min(n_target, len(c) + n_fft)) for c in clips]
    spec, counts = sp._stft_ragged(short, n_fft=n_fft, hop_length=hop, win_length=p["win_length"],
                                   window=p["window"], center=True, pad_mode="constant", fast=True)
    F = spec.T  # (frames, bins), contiguous
    if p["power"] == 2.0:
        power = F.real * F.real
        power += F.imag * F.imag
    else:
        mag = np.abs(F)
        power = mag if p["power"] == 1.0 else mag ** p["power"]
    fb = sp.mel_filterbank(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=p["fmin"], fmax=p["fmax"],
                           htk=p["htk"], norm=p["norm"])
    MT = sp.rowwise(power, fb.T)  # (computed frames, mels), each frame's row as if alone
    return _logmel_db(MT, counts.astype(np.int64), len(clips), n_frames, p)


def _logmel_db(MT: np.ndarray, counts: np.ndarray, n_clips: int, n_frames: int, p: Mapping[str, Any]
               ) -> np.ndarray:
    """``power_to_db`` (per-clip ``top_db``) of the computed frames ``MT`` (frames, mels), the
    frames after each clip's ``counts`` being all-zero power; → ``(clips, mels, n_frames)``."""
    if np.any(counts > n_frames) or np.any(counts < 1):
        raise ParameterError(f"internal: frame counts outside [1, {n_frames}]")
    amin, ref, top_db = p["amin"], p["ref"], p["top_db"]
    first = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    clip_of = np.repeat(np.arange(n_clips), counts)
    frame_of = np.arange(len(MT)) - first[clip_of]
    db = 10.0 * np.log10(np.maximum(amin, MT))
    db -= 10.0 * np.log10(max(amin, ref))
    zero = 10.0 * np.log10(np.maximum(amin, np.zeros(1, dtype=MT.dtype)))  # dB of an all-zero frame
    zero -= 10.0 * np.log10(max(amin, ref))
    pad_value = np.full(n_clips, zero[0], dtype=db.dtype)
    if top_db is not None:
        if top_db < 0:
            raise ParameterError(f"The 'top_db' parameter must be >= 0 or None. Got {top_db} instead.")
        peak = np.maximum.reduceat(db.max(axis=1), first)
        peak = np.where(counts < n_frames, np.maximum(peak, zero[0]), peak)
        floor = (peak - top_db).astype(db.dtype)
        np.maximum(db, floor[clip_of][:, None], out=db)
        pad_value = np.maximum(pad_value, floor)
    out = np.empty((n_clips, n_frames, MT.shape[1]), dtype=np.float32)
    out[:] = pad_value[:, None, None]
    out[clip_of, frame_of] = db
    return np.ascontiguousarray(out.transpose(0, 2, 1))


_register_kind = _KINDS.__setitem__

_register_kind("logmel", _Kind(
    name="logmel",
    defaults={"duration": 1.0, "align": "start", "n_fft": 512, "win_length": 400, "hop_length": 160,
              "window": "hann", "power": 2.0, "n_mels": 64, "fmin": 20.0, "fmax": 8000.0,
              "htk": False, "norm": "slaney", "ref": 1.0, "amin": 1e-10, "top_db": 80.0},
    batch=_logmel_batch,
    pooled=False,
    shape=lambda sr, p: (p["n_mels"], 1 + _target_samples(sr, p) // p["hop_length"]),
    description="log-mel spectrogram (dB) of a clip padded/cropped to a fixed duration",
))


# --- mfcc sequences ---------------------------------------------------------------------------


#: A row whose spread over time is below this share of the clip's largest value is constant:
#: float rounding, not signal. Digital silence gives identical frames up to rounding noise of about
#: 1e-7 of the largest coefficient, which must not be blown up to unit scale.
_CONSTANT_ROW = 1e-5


def _normalize_seq(x: np.ndarray, how: str) -> np.ndarray:
    """Per-row (coefficient) normalisation over time of one clip ``(coefficients, frames)``; rows
    that are constant up to float rounding (digital silence) become 0, not amplified rounding noise."""
    if how == "none":
        return x
    x64 = x.astype(np.float64)
    tol = _CONSTANT_ROW * (float(np.abs(x64).max(initial=0.0)) + 1.0)
    if how == "minmax":
        lo = x64.min(axis=-1, keepdims=True)
        spread = x64.max(axis=-1, keepdims=True) - lo
        flat = spread <= tol
        return np.where(flat, 0.0, (x64 - lo) / np.where(flat, 1.0, spread)).astype(x.dtype, copy=False)
    if how == "meanvar":
        mu = x64.mean(axis=-1, keepdims=True)
        sd = x64.std(axis=-1, keepdims=True)
        flat = sd <= tol
        return np.where(flat, 0.0, (x64 - mu) / np.where(flat, 1.0, sd)).astype(x.dtype, copy=False)
    raise ParameterError(f"The 'normalize' parameter must be 'none', 'minmax' or 'meanvar'. Got {how!r}.")


def _delta_any_length(x: np.ndarray, width: int, order: int) -> np.ndarray:
    """``delta`` over time for a clip of any length: with fewer frames than ``width`` (variable-length
    features of a short clip) the window shrinks to the largest odd length that fits (at least 3);
    a clip of 1-2 frames has no measurable change, so its deltas are 0. Fixed-length presets refuse
    a ``delta_width`` longer than their clips up front (in ``Preset.__post_init__``)."""
    n = x.shape[-1]
    if n >= width:
        return sp.delta(x, width=width, order=order)
    w = n if n % 2 else n - 1
    return sp.delta(x, width=w, order=order) if w >= 3 else np.zeros_like(x)


def _with_deltas(x: np.ndarray, deltas: int, width: int) -> np.ndarray:
    parts = [x]
    for order in range(1, deltas + 1):
        parts.append(_delta_any_length(x, width, order))
    return np.concatenate(parts, axis=-2)


def _stack_or_list(arrs: list[np.ndarray], fixed: bool) -> np.ndarray | list[np.ndarray]:
    return np.stack(arrs).astype(np.float32, copy=False) if fixed else arrs


def _mfcc_seq_batch(clips: Sequence[np.ndarray], sr: int, p: Mapping[str, Any]):
    n_target = _target_samples(sr, p)
    if n_target is not None:
        clips = [_zero_extend(c, n_target) for c in _fix_length(clips, n_target, p["align"])]
    spec, counts = sp._stft_ragged(clips, n_fft=p["n_fft"], hop_length=p["hop_length"],
                                   win_length=p["win_length"], window=p["window"], center=True,
                                   pad_mode="constant")
    fb = sp.mel_filterbank(sr=sr, n_fft=p["n_fft"], n_mels=p["n_mels"], fmin=p["fmin"], fmax=p["fmax"],
                           htk=p["htk"], norm="slaney")
    logm = sp._power_to_db_flat(sp.colwise(fb, np.abs(spec) ** 2), counts, ref=1.0, amin=1e-10, top_db=p["top_db"])
    M = sp._mfcc_flat(logm, n_mfcc=p["n_mfcc"], dct_type=2, norm="ortho", lifter=p["lifter"])
    out = []
    off = 0
    for c in counts:
        x = M[:, off:off + int(c)]
        off += int(c)
        x = _with_deltas(x, p["deltas"], p["delta_width"])
        out.append(_normalize_seq(x, p["normalize"]).astype(np.float32))
    return _stack_or_list(out, n_target is not None)


_register_kind("mfcc-seq", _Kind(
    name="mfcc-seq",
    defaults={"duration": 1.0, "align": "start", "n_mfcc": 13, "deltas": 0, "delta_width": 9,
              "normalize": "meanvar", "n_fft": 512, "win_length": 400, "hop_length": 160,
              "window": "hann", "n_mels": 40, "fmin": 0.0, "fmax": None, "htk": False, "lifter": 0.0,
              "top_db": 80.0},
    batch=_mfcc_seq_batch,
    pooled=False,
    shape=lambda sr, p: None if p["duration"] is None else (
        p["n_mfcc"] * (1 + p["deltas"]), 1 + _target_samples(sr, p) // p["hop_length"]),
    description="MFCC sequence (+ deltas), per-clip normalised (minmax | meanvar | none)",
))


# --- python_speech_features recipe --------------------------------------------------------------


def _psf_filterbank(nfilt: int, nfft: int, sr: int, lowfreq: float, highfreq: float) -> np.ndarray:
    def hz2mel(hz):
        return 2595 * np.log10(1 + hz / 700.0)

    def mel2hz(mel):
        return 700 * (10 ** (mel / 2595.0) - 1)

    melpoints = np.linspace(hz2mel(lowfreq), hz2mel(highfreq), nfilt + 2)
    bins = np.floor((nfft + 1) * mel2hz(melpoints) / sr)
    fb = np.zeros([nfilt, nfft // 2 + 1])
    for j in range(nfilt):
        for i in range(int(bins[j]), int(bins[j + 1])):
            fb[j, i] = (i - bins[j]) / (bins[j + 1] - bins[j])
        for i in range(int(bins[j + 1]), int(bins[j + 2])):
            fb[j, i] = (bins[j + 2] - i) / (bins[j + 2] - bins[j + 1])
    return fb


def _round_half_up(x: float) -> int:
    import decimal

    return int(decimal.Decimal(x).quantize(decimal.Decimal("1"), rounding=decimal.ROUND_HALF_UP))


def _psf_batch(clips: Sequence[np.ndarray], sr: int, p: Mapping[str, Any]):
    n_target = _target_samples(sr, p)
    if n_target is not None:
        clips = [_zero_extend(c, n_target) for c in _fix_length(clips, n_target, p["align"])]
    flen = _round_half_up(p["winlen"] * sr)
    fstep = _round_half_up(p["winstep"] * sr)
    nfft = p["nfft"]
    if flen > nfft:
        raise ParameterError(
            f"psf-mfcc frame length {flen} samples exceeds nfft={nfft}; raise nfft or lower winlen."
        )
    fb = _psf_filterbank(p["nfilt"], nfft, sr, p["lowfreq"], p["highfreq"] or sr / 2)
    eps = np.finfo(float).eps
    n = np.arange(p["numcep"])
    lift = 1 + (p["ceplifter"] / 2.0) * np.sin(np.pi * n / p["ceplifter"]) if p["ceplifter"] > 0 else 1
    frames_all = []
    counts = []
    for c in clips:
        x = np.asarray(c, dtype=np.float64)
        x = np.append(x[0], x[1:] - p["preemph"] * x[:-1]) if len(x) else x
        slen = len(x)
        nf = 1 if slen <= flen else 1 + int(np.ceil((1.0 * slen - flen) / fstep))
        padlen = int((nf - 1) * fstep + flen)
        x = np.concatenate((x, np.zeros(padlen - slen)))
        idx = np.arange(flen)[None, :] + (np.arange(nf) * fstep)[:, None]
        frames_all.append(x[idx])
        counts.append(nf)
    F = np.concatenate(frames_all)
    pspec = 1.0 / nfft * np.square(np.abs(np.fft.rfft(F, nfft)))
    energy = pspec.sum(axis=1)
    energy = np.where(energy == 0, eps, energy)
    feat = sp.rowwise(pspec, fb.T)
    feat = np.where(feat == 0, eps, feat)
    import scipy.fft

    cep = scipy.fft.dct(np.log(feat), type=2, axis=1, norm="ortho")[:, : p["numcep"]] * lift
    if p["append_energy"]:
        cep[:, 0] = np.log(energy)
    out = []
    off = 0
    for nf in counts:
        out.append(cep[off:off + nf].T.astype(np.float32))
        off += nf
    out = [_with_deltas(x, p["deltas"], p["delta_width"]) for x in out]
    out = [_normalize_seq(x, p["normalize"]) for x in out]
    return _stack_or_list(out, n_target is not None)


def _psf_shape(sr: int, p: Mapping[str, Any]) -> tuple[int, int] | None:
    n = _target_samples(sr, p)
    if n is None:
        return None
    flen = _round_half_up(p["winlen"] * sr)
    fstep = _round_half_up(p["winstep"] * sr)
    nf = 1 if n <= flen else 1 + int(np.ceil((1.0 * n - flen) / fstep))
    return (p["numcep"] * (1 + p["deltas"]), nf)


_register_kind("psf-mfcc", _Kind(
    name="psf-mfcc",
    defaults={"duration": 1.0, "align": "start", "winlen": 0.025, "winstep": 0.01, "numcep": 13,
              "nfilt": 26, "nfft": 512, "lowfreq": 0.0, "highfreq": None, "preemph": 0.97,
              "ceplifter": 22, "append_energy": True, "deltas": 0, "delta_width": 9,
              "normalize": "none"},
    batch=_psf_batch,
    pooled=False,
    shape=_psf_shape,
    description="python_speech_features MFCC recipe (13 cepstra, 26 filters, preemph 0.97, lifter 22, "
                "log-energy as c0)",
))


# --- pooled presets ---------------------------------------------------------------------------


def _mfcc_mean_batch(clips: Sequence[np.ndarray], sr: int, p: Mapping[str, Any]) -> np.ndarray:
    spec, counts = sp._stft_ragged(clips, n_fft=p["n_fft"], hop_length=p["hop_length"], win_length=None,
                                   window="hann", center=True, pad_mode="constant")
    fb = sp.mel_filterbank(sr=sr, n_fft=p["n_fft"], n_mels=p["n_mels"], fmin=0.0, fmax=None)
    logm = sp._power_to_db_flat(sp.colwise(fb, np.abs(spec) ** 2), counts, ref=1.0, amin=1e-10, top_db=80.0)
    M = sp._mfcc_flat(logm, n_mfcc=p["n_mfcc"], dct_type=2, norm="ortho", lifter=0.0)
    return sp.segment_mean(M, counts).T.astype(np.float32)


_register_kind("mfcc-mean", _Kind(
    name="mfcc-mean",
    defaults={"n_mfcc": 40, "n_fft": 2048, "hop_length": 512, "n_mels": 128},
    batch=_mfcc_mean_batch,
    pooled=True,
    shape=lambda sr, p: (p["n_mfcc"],),
    names=lambda p: [f"mfcc_{i}_mean" for i in range(p["n_mfcc"])],
    description="time-mean of librosa-default MFCCs (UrbanSound8K / spoken-digit references)",
))


def _classic_batch(clips: Sequence[np.ndarray], sr: int, p: Mapping[str, Any]) -> np.ndarray:
    D, counts = sp._stft_ragged(clips, n_fft=2048, hop_length=512, win_length=None, window="hann",
                                center=True, pad_mode="constant")
    S = np.abs(D)
    mel = sp.colwise(sp.mel_filterbank(sr=sr, n_fft=2048, n_mels=128, fmin=0.0, fmax=None), S * S)
    logm = sp._power_to_db_flat(mel, counts, ref=1.0, amin=1e-10, top_db=80.0)
    mf = sp._mfcc_flat(logm, n_mfcc=20, dct_type=2, norm="ortho", lifter=0.0)
    chroma = sp._chroma_stft_flat(S, counts, sr=sr, n_chroma=12, tuning=None, norm=np.inf)
    contrast = sp._contrast_flat(S, counts, sr=sr, fmin=200.0, n_bands=6, quantile=0.02, linear=False)
    harm = sp._harmonic_ragged(clips, n_fft=2048, hop_length=512, kernel_size=31, power=2.0, margin=1.0,
                               stft_done=(D, counts))
    ch_cqt, c_counts = sp._chroma_cqt_ragged(harm, sr=sr, hop_length=512, fmin=32.70319566257483,
                                             n_chroma=12, n_octaves=7, bins_per_octave=36, tuning=None,
                                             norm=np.inf, threshold=0.0)
    ton = sp._tonnetz_flat(ch_cqt)
    parts = [sp.segment_mean(mf, counts), sp.segment_mean(chroma, counts), sp.segment_mean(mel, counts),
             sp.segment_mean(contrast, counts), sp.segment_mean(ton, c_counts)]
    return np.concatenate(parts, axis=0).T.astype(np.float32)


_CHROMA_NAMES = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]

_register_kind("classic173", _Kind(
    name="classic173",
    defaults={},
    batch=_classic_batch,
    pooled=True,
    shape=lambda sr, p: (173,),
    names=lambda p: ([f"mfcc_{i}" for i in range(20)] + [f"chroma_{c}" for c in _CHROMA_NAMES]
                     + [f"mel_{i}" for i in range(128)] + [f"contrast_{i}" for i in range(7)]
                     + [f"tonnetz_{i}" for i in range(6)]),
    description="time-means of MFCC(20), chroma(12), mel(128), contrast(7), tonnetz(6) as the "
                "spoken-digit reference (librosa defaults at 22,050 Hz)",
))


_STATS = ("mean", "std", "p10", "p50", "p90")


def _stats_rows(p: Mapping[str, Any]) -> list[str]:
    rows = [f"mfcc{i}" for i in range(p["n_mfcc"])] + [f"dmfcc{i}" for i in range(p["n_mfcc"])]
    rows += ["centroid", "bandwidth", "rolloff", "flatness", "zcr", "rms"]
    rows += [f"contrast{i}" for i in range(p["n_bands"] + 1)] + [f"chroma_{c}" for c in _CHROMA_NAMES]
    return rows


#: Power floor (``amin``) of the flatness and log-mel rows: a frame with no STFT bin above it is
#: digital silence (white noise that weak is about 1/40 of a 16-bit step).
_AMIN = 1e-10


def _stats_batch(clips: Sequence[np.ndarray], sr: int, p: Mapping[str, Any]) -> np.ndarray:
    """Pooled statistics of every frame row.

    With ``skip_silence`` the statistics (and the deltas) leave out frames of digital silence (no
    STFT bin above ``_AMIN``), whose spectral flatness (1.0), contrast and log-mel floor lie far
    outside anything recorded sound gives, unless the clip is all silence.
    """
    n_fft, hop = p["n_fft"], p["hop_length"]
    D, counts = sp._stft_ragged(clips, n_fft=n_fft, hop_length=hop, win_length=p["win_length"],
                                window="hann", center=True, pad_mode="constant")
    S = np.abs(D)
    fb = sp.mel_filterbank(sr=sr, n_fft=n_fft, n_mels=p["n_mels"], fmin=0.0, fmax=None)
    logm = sp._power_to_db_flat(sp.colwise(fb, S * S), counts, ref=1.0, amin=_AMIN, top_db=80.0)
    mf = sp._mfcc_flat(logm, n_mfcc=p["n_mfcc"], dct_type=2, norm="ortho", lifter=0.0)
    frames, _ = sp._frame_ragged(clips, frame_length=n_fft, hop_length=hop, center=True, pad_mode="constant")
    zframes, _ = sp._frame_ragged(clips, frame_length=n_fft, hop_length=hop, center=True, pad_mode="edge")
    sounding = ((S * S).max(axis=0) > _AMIN) if p["skip_silence"] else np.ones(S.shape[1], bool)
    rows = [
        sp._centroid_flat(S, sr), sp._bandwidth_flat(S, sr, 2.0), sp._rolloff_flat(S, sr, 0.85),
        sp._flatness_flat(S, _AMIN, 2.0), sp._zcr_frames(zframes)[None, :], sp._rms_frames(frames)[None, :],
        sp._contrast_flat(S, counts, sr=sr, fmin=200.0, n_bands=p["n_bands"], quantile=0.02, linear=False),
        sp._chroma_stft_flat(S * S, counts, sr=sr, n_chroma=12, tuning=0.0, norm=np.inf),
    ]
    out = np.empty((len(clips), len(_stats_rows(p)) * len(_STATS)), dtype=np.float32)
    off = 0
    for i, c in enumerate(counts):
        c = int(c)
        keep = sounding[off:off + c]
        idx = np.flatnonzero(keep) + off if keep.any() else np.arange(off, off + c)
        m = mf[:, idx]
        d = _delta_any_length(m, p["delta_width"], 1)
        X = np.concatenate([m, d] + [r[:, idx] for r in rows], axis=0).astype(np.float64)
        pct = np.percentile(X, [10, 50, 90], axis=1)
        out[i] = np.stack([X.mean(axis=1), X.std(axis=1), pct[0], pct[1], pct[2]], axis=1).ravel()
        off += c
    return out


_register_kind("stats", _Kind(
    name="stats",
    # skip_silence defaults to the recipe before it existed, so bundles saved then keep their
    # features; the registered "stats" preset turns it on
    defaults={"n_mfcc": 20, "n_mels": 40, "n_fft": 512, "win_length": 400, "hop_length": 160,
              "n_bands": 6, "delta_width": 9, "skip_silence": False},
    batch=_stats_batch,
    pooled=True,
    shape=lambda sr, p: (len(_stats_rows(p)) * len(_STATS),),
    names=lambda p: [f"{r}_{s}" for r in _stats_rows(p) for s in _STATS],
    description="mean, std and 10/50/90th percentiles of MFCC, ΔMFCC, spectral shape, ZCR, RMS, "
                "contrast and chroma frames (frames of digital silence left out)",
))


def _raw_batch(clips: Sequence[np.ndarray], sr: int, p: Mapping[str, Any]) -> np.ndarray:
    n = _target_samples(sr, p)
    assert n is not None
    out = np.zeros((len(clips), n), dtype=np.float32)
    for i, c in enumerate(_fix_length(clips, n, p["align"])):
        if p["peak_normalize"]:
            peak = float(np.abs(c).max()) if len(c) else 0.0
            c = c / peak if peak > 0 else c
        out[i, : len(c)] = c
    return out


_register_kind("raw", _Kind(
    name="raw",
    defaults={"duration": 1.0, "align": "start", "peak_normalize": False},
    batch=_raw_batch,
    pooled=False,
    shape=lambda sr, p: (_target_samples(sr, p),),
    description="the waveform, zero-padded/cropped to a fixed duration (1-D CNN input)",
))


# ----------------------------------------------------------------------------------------------
# Preset
# ----------------------------------------------------------------------------------------------

#: Integer settings that may be 0 (all others count something and must be >= 1).
_ZERO_OK = frozenset({"deltas", "ceplifter"})
#: Settings in Hz: a number >= 0 (or None where that is the default), at most the Nyquist frequency.
_FREQUENCIES = ("fmin", "fmax", "lowfreq", "highfreq")
#: Settings whose None means something (no filter normalisation, no dB floor, variable length;
#: a preset that needs a fixed length refuses ``duration=None`` itself).
_NONE_OK = frozenset({"norm", "top_db", "duration"})
#: Text settings with a fixed set of values.
_CHOICES = {"normalize": ("none", "minmax", "meanvar"), "norm": ("slaney", None), "align": ("start", "center")}
#: Float settings that must be > 0 when set.
_POSITIVE = frozenset({"duration", "winlen", "winstep", "amin", "top_db", "window", "hop", "power"})


def _number(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def _coerce_values(name: str, defaults: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    """Settings as plain Python values typed like their defaults: numpy numbers become Python
    numbers, whole numbers become floats where the default is a float (so ``duration=2`` and
    ``duration=2.0`` are one preset with one cache key); a bool or text setting must be given as one
    (the text ``"false"`` is not False)."""
    out = {}
    for key, value in params.items():
        if isinstance(value, np.generic):
            value = value.item()
        default = defaults.get(key)
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise ParameterError(f"The {key!r} of preset {name!r} must be True or False. Got {value!r}.")
        elif (isinstance(default, float) or (default is None and key not in _NONE_OK)) and isinstance(
                value, int) and not isinstance(value, bool):
            value = float(value)  # (settings whose default is None are Hz or seconds: numbers)
        elif isinstance(default, str) and not isinstance(value, str) and not (value is None and key in _NONE_OK):
            raise ParameterError(f"The {key!r} of preset {name!r} must be text (default {default!r}). Got {value!r}.")
        out[key] = value
    return out


def _check_values(name: str, sr: int, defaults: Mapping[str, Any], params: Mapping[str, Any]) -> None:
    """Refuse settings a preset cannot compute, naming the setting and what it must be."""
    for key, value in params.items():
        default = defaults.get(key)
        if key in _CHOICES and value not in _CHOICES[key]:
            options = ", ".join(repr(c) for c in _CHOICES[key])
            raise ParameterError(f"The {key!r} of preset {name!r} must be one of {options}. Got {value!r}.")
        if _number(value) and not math.isfinite(float(value)):
            raise ParameterError(f"The {key!r} of preset {name!r} must be a finite number. Got {value!r}.")
        if isinstance(default, (int, np.integer)) and not isinstance(default, bool):
            lowest = 0 if key in _ZERO_OK else 1
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < lowest:
                raise ParameterError(f"The {key!r} of preset {name!r} must be an integer >= {lowest}. Got {value!r}.")
        elif key in _FREQUENCIES or (key in _POSITIVE and not isinstance(default, str)) or default is None:
            if value is None:
                continue
            if not _number(value):
                raise ParameterError(f"The {key!r} of preset {name!r} must be a number. Got {value!r}.")
            if key in _POSITIVE and not float(value) > 0:
                raise ParameterError(f"The {key!r} of preset {name!r} must be > 0. Got {value!r}.")
            if key in _FREQUENCIES and not 0 <= float(value) <= sr / 2:
                raise ParameterError(
                    f"The {key!r} of preset {name!r} ({value} Hz) must be between 0 and the Nyquist frequency "
                    f"of its sample_rate {sr} Hz ({sr / 2:g}); lower it or raise the sample_rate.")
    for ceps, bands in (("n_mfcc", "n_mels"), ("numcep", "nfilt")):
        n_ceps, n_bands = params.get(ceps), params.get(bands)
        if _number(n_ceps) and _number(n_bands) and n_ceps > n_bands:
            raise ParameterError(
                f"Preset {name!r} would compute {n_ceps} MFCCs from {n_bands} mel bands, but a cepstrum has at "
                f"most as many coefficients as bands: lower {ceps} to {n_bands} or less, or raise {bands}.")
    if _number(params.get("ref")) and not float(params["ref"]) > 0:
        raise ParameterError(f"The 'ref' of preset {name!r} (the level of 0 dB) must be > 0. Got {params['ref']!r}.")
    if _number(params.get("preemph")) and not 0 <= float(params["preemph"]) < 1:
        raise ParameterError(f"The 'preemph' of preset {name!r} must be in [0, 1). Got {params['preemph']!r}.")
    if isinstance(params.get("window"), str):
        import scipy.signal

        try:
            scipy.signal.get_window(params["window"], 4)
        except ValueError:
            raise ParameterError(f"The 'window' of preset {name!r} must name a scipy window such as 'hann', "
                                 f"'hamming' or 'blackman'. Got {params['window']!r}.") from None
    width = params.get("delta_width")
    if width is not None and (not isinstance(width, int) or width < 3 or width % 2 != 1):
        raise ParameterError(f"The 'delta_width' of preset {name!r} must be an odd integer >= 3 (a centred "
                             f"window of frames). Got {width!r}.")
    duration = params.get("duration")
    if _number(duration) and round(float(duration) * sr) < 1:
        raise ParameterError(f"The 'duration' of preset {name!r} ({duration} s) is shorter than one sample at "
                             f"{sr} Hz; give a longer duration.")
    low = params.get("fmin", params.get("lowfreq"))
    high = params.get("fmax", params.get("highfreq"))
    if _number(low) and _number(high) and float(low) >= float(high):
        raise ParameterError(f"Preset {name!r} needs its lowest frequency ({low} Hz) below its highest ({high} Hz).")



#: Kinds whose numbers changed for some inputs without a change of their settings (a store key
#: changes with it; a bundle still loads): 2 = normalised MFCC rows of digital silence are 0, not
#: scaled rounding noise, and clips shorter than ``delta_width`` frames get deltas over the widest
#: window that fits, not zeros.
_RECIPE_REVISION = {"mfcc-seq": 2, "psf-mfcc": 2, "stats": 2}


def _freeze(d: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(d))


@dataclass(frozen=True)
class Preset:
    """A named feature recipe: the implementation ``kind``, the decode ``sample_rate`` and every
    setting in ``params``.

    Attributes
    ----------
    name : str
    kind : str
        Registered implementation (``logmel``, ``mfcc-seq``, ``psf-mfcc``, ``mfcc-mean``,
        ``classic173``, ``stats``, ``raw``, ``cqt``; ``embed`` for embeddings of a model).
    sample_rate : int
        Audio is decoded and resampled to this rate before :meth:`transform`.
    params : Mapping[str, Any]
        All settings (read-only).

    Example
    -------
    >>> p = get_preset("mfcc-mean", n_mfcc=20)
    >>> Preset.from_dict(p.to_dict()) == p
    True
    """

    name: str
    kind: str
    sample_rate: int
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ParameterError(f"Unknown feature kind {self.kind!r}; known kinds: {sorted(_KINDS)}.")
        if not isinstance(self.sample_rate, (int, np.integer)) or self.sample_rate <= 0:
            raise ParameterError(
                f"The 'sample_rate' of preset {self.name!r} must be a positive int. Got {self.sample_rate!r}."
            )
        kind = _KINDS[self.kind]
        unknown = set(self.params) - set(kind.defaults)
        if unknown:
            raise ParameterError(
                f"Preset {self.name!r} (kind {self.kind!r}) has no parameter(s) {sorted(unknown)}; "
                f"valid: {sorted(kind.defaults)}."
            )
        merged = {**kind.defaults, **_coerce_values(self.name, kind.defaults, self.params)}
        object.__setattr__(self, "sample_rate", int(self.sample_rate))
        object.__setattr__(self, "params", _freeze(merged))
        if "duration" in merged and merged["duration"] is not None and float(merged["duration"]) <= 0:
            raise ParameterError(f"The 'duration' of preset {self.name!r} must be > 0. Got {merged['duration']}.")
        if "align" in merged and merged["align"] not in ("start", "center"):
            raise ParameterError(f"The 'align' of preset {self.name!r} must be 'start' or 'center'. "
                                 f"Got {merged['align']!r}.")
        _check_values(self.name, self.sample_rate, kind.defaults, merged)
        if self.kind in ("logmel", "raw", "cqt") and merged["duration"] is None:
            raise ParameterError(f"Preset {self.name!r} needs a fixed 'duration' in seconds.")
        if self.kind in ("classic173", "stats"):  # spectral contrast: octave bands from 200 Hz up
            n_bands = int(merged.get("n_bands", 6))
            if 200.0 * 2 ** (n_bands - 1) >= self.sample_rate / 2:
                fit = max(int(math.floor(math.log2(self.sample_rate / 2 / 200.0 - 1e-9))) + 1, 0)
                how = (f"lower n_bands to {fit} or less, or " if "n_bands" in kind.defaults and fit >= 1 else "")
                raise ParameterError(
                    f"Preset {self.name!r} measures spectral contrast in {n_bands} octave bands from 200 Hz up to "
                    f"{200 * 2 ** n_bands:g} Hz, beyond the Nyquist frequency of sample_rate {self.sample_rate} Hz; "
                    f"{how}use a sample_rate above {int(200 * 2 ** n_bands)} Hz.")
        shape = kind.shape(int(self.sample_rate), merged) if merged.get("deltas") else None  # (an embed
        # preset's shape loads its model: only asked for where deltas need it)
        if shape is not None and merged["delta_width"] > shape[-1]:
            raise ParameterError(
                f"The 'delta_width' of preset {self.name!r} ({merged['delta_width']} frames) is longer than its "
                f"clips ({shape[-1]} frames); lower delta_width or raise the duration.")
        kind.ready(merged)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Preset) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(self.cache_key())

    def __repr__(self) -> str:
        return f"Preset(name={self.name!r}, kind={self.kind!r}, sample_rate={self.sample_rate})"

    # -- description --------------------------------------------------------------------------

    @property
    def pooled(self) -> bool:
        """One 1-D vector per clip (for classical models)."""
        return _KINDS[self.kind].pooled

    @property
    def output_shape(self) -> tuple[int, ...] | None:
        """Shape of one clip's features, or ``None`` when the number of frames varies."""
        return _KINDS[self.kind].shape(self.sample_rate, self.params)

    @property
    def feature_names(self) -> list[str] | None:
        """Names of the dimensions of pooled presets (``None`` for sequences)."""
        return _KINDS[self.kind].names(self.params)

    @property
    def description(self) -> str:
        """One line on what the preset computes."""
        return _KINDS[self.kind].description

    def to_dict(self) -> dict[str, Any]:
        """Full JSON-able recipe (cache key and bundle record)."""
        return {"name": self.name, "kind": self.kind, "sample_rate": self.sample_rate,
                "params": dict(self.params), "format": FEATURE_FORMAT}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Preset:
        """Rebuild a preset saved by :meth:`to_dict`.

        Raises
        ------
        ParameterError
            The dict is not a preset record, or was written by an incompatible feature format.
        """
        try:
            fmt = d.get("format", FEATURE_FORMAT)
            if fmt != FEATURE_FORMAT:
                raise ParameterError(
                    f"Preset record has feature format {fmt}, this earmark computes format "
                    f"{FEATURE_FORMAT}; re-extract the features (or install the matching earmark)."
                )
            return cls(name=str(d["name"]), kind=str(d["kind"]), sample_rate=int(d["sample_rate"]),
                       params=dict(d.get("params", {})))
        except (KeyError, TypeError, AttributeError) as exc:
            raise ParameterError(f"Not a preset record ({exc!r}): {d!r}") from None

    def cache_key(self) -> str:
        """Hex digest of :meth:`to_dict` (the feature store's folder for this preset), and of the
        kind's recipe revision when its numbers changed for some inputs (:data:`_RECIPE_REVISION`):
        features stored by the earlier recipe are then computed again, never mixed with new ones."""
        record = self.to_dict()
        if self.kind in _RECIPE_REVISION:
            record["revision"] = _RECIPE_REVISION[self.kind]
        blob = json.dumps(record, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()[:20]

    # -- computing ----------------------------------------------------------------------------

    def check_window(self, window: float, hop: float | None = None) -> float:
        """Check a window and hop (seconds) for predicting along a long recording; return the hop
        (default: the window). A window longer than this preset's clip length (``duration``) is
        refused: each window would be cut to that length and the rest of it never heard.

        Example
        -------
        >>> get_preset("logmel").check_window(1.0, 0.5)
        0.5
        """
        import numbers

        from earmark.errors import ParameterError

        def positive(v: Any) -> bool:  # numpy numbers too; not bools
            return isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_)) and v > 0

        if not positive(window):
            raise ParameterError(f"The 'window' parameter must be a positive number of seconds. Got {window!r} instead.")
        hop = window if hop is None else hop
        if not positive(hop):
            raise ParameterError(f"The 'hop' parameter must be a positive number of seconds. Got {hop!r} instead.")
        clip = self.params.get("duration")
        if clip is not None and window > float(clip) + 1e-6:
            raise ParameterError(
                f"The window ({window:g} s) is longer than the clips the model hears ({float(clip):g} s): each window "
                f"would be cut to {float(clip):g} s and the rest of it never heard. Use a window of at most "
                f"{float(clip):g} s (e.g. window {float(clip):g} s, hop {float(clip) / 2:g} s), or train a model on "
                "longer clips (duration=, earmark train --duration).")
        return float(hop)

    def transform(self, y: np.ndarray) -> np.ndarray:
        """Features of one mono float32 clip sampled at :attr:`sample_rate`.

        Example
        -------
        >>> import numpy as np
        >>> get_preset("raw").transform(np.ones(100, np.float32)).shape
        (16000,)
        """
        out = self.transform_batch([y])
        return out[0]

    def transform_batch(self, clips: Sequence[np.ndarray]) -> np.ndarray | list[np.ndarray]:
        """Features of many clips at once (the fast path): a stacked array, or a list of arrays
        when the preset's number of frames varies (``output_shape is None``).

        Example
        -------
        >>> import numpy as np
        >>> get_preset("logmel").transform_batch([np.zeros(8000, np.float32)] * 3).shape
        (3, 64, 101)
        """
        arrs = []
        for i, c in enumerate(clips):
            a = np.asarray(c, dtype=np.float32)
            if a.ndim != 1 or a.size == 0:
                raise ParameterError(
                    f"Preset {self.name!r} needs non-empty mono 1-D clips; clip {i} has shape {a.shape}."
                )
            arrs.append(a)
        if not arrs:
            shape = self.output_shape
            return np.zeros((0, *shape), np.float32) if shape is not None else []
        return _KINDS[self.kind].batch(arrs, self.sample_rate, self.params)


_PRESETS: dict[str, Preset] = {}


def register_preset(preset: Preset, *, overwrite: bool = False) -> Preset:
    """Add a preset to the registry under ``preset.name``.

    Example
    -------
    >>> p = register_preset(Preset("logmel-2s", "logmel", 16000, {"duration": 2.0}), overwrite=True)
    >>> get_preset("logmel-2s").output_shape
    (64, 201)
    """
    if not isinstance(preset, Preset):
        raise ParameterError(f"register_preset takes a Preset. Got {type(preset).__name__}.")
    if preset.name in _PRESETS and not overwrite and _PRESETS[preset.name] != preset:
        raise ParameterError(f"A preset named {preset.name!r} exists; pass overwrite=True or pick another name.")
    _PRESETS[preset.name] = preset
    return preset


def list_presets() -> list[str]:
    """Names of the registered presets.

    Example
    -------
    >>> "classic173" in list_presets()
    True
    """
    return sorted(_PRESETS)


_KIND_OF_VALUE = {int: "an integer", float: "a number", bool: "true or false", str: "text"}


def _parse_setting(preset: str, item: str, defaults: Mapping[str, Any]) -> tuple[str, Any]:
    """``"n_mels=128"`` -> ``("n_mels", 128)``, typed like the setting's default."""
    key, sep, text = (part.strip() for part in item.partition("="))
    if not sep or not key:
        raise ParameterError(f"Feature setting {item!r} of {preset!r} is not KEY=VALUE, "
                             f"e.g. '{preset}:{next(iter(defaults), 'n_mels')}=...'.")
    if key != "sample_rate" and key not in defaults:
        import difflib

        close = difflib.get_close_matches(key, [*defaults, "sample_rate"], n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        names = ", ".join(["sample_rate", *sorted(k for k in defaults if k != "sample_rate")])
        raise ParameterError(f"Feature preset {preset!r} has no setting {key!r}.{hint} Settings: {names}.")
    default = defaults["sample_rate"] if key == "sample_rate" else defaults[key]
    low = text.lower()
    value: Any
    if isinstance(default, str) and not (low in ("none", "null") and key in _NONE_OK):
        value = text  # text settings keep the text as written ('normalize=none' is the mode 'none')
    elif low in ("none", "null"):
        value = None
    elif low in ("true", "false"):
        value = low == "true"
    else:
        try:
            value = int(text)
        except ValueError:
            try:
                value = float(text)
            except ValueError:
                value = text
    want = type(default)
    ok = ((default is None and (value is None or _number(value)))
          or (value is None and key in _NONE_OK)
          or (want is bool and isinstance(value, bool))
          or (want is int and isinstance(value, int) and not isinstance(value, bool))
          or (want is float and isinstance(value, (int, float)) and not isinstance(value, bool))
          or (want is str and isinstance(value, str)))
    if not ok:
        what = "a number" if default is None else _KIND_OF_VALUE.get(want, want.__name__)
        raise ParameterError(f"Feature setting {key}={text!r} of {preset!r} must be {what} (default {default!r}).")
    if want is float and isinstance(value, int):
        value = float(value)
    return key, value


def get_preset(name: str | Preset, **overrides: Any) -> Preset:
    """A registered preset, optionally with some settings changed (``sample_rate`` or any param).

    ``name`` may carry settings after a colon, comma-separated: ``"logmel:n_mels=128,n_fft=1024"``
    (the form ``--features`` takes on the command line). Values are typed like the setting's
    default; an unknown setting is refused with the valid ones.

    Example
    -------
    >>> get_preset("mfcc-mean", n_mfcc=20).output_shape
    (20,)
    >>> get_preset("logmel:n_mels=40,duration=0.5").output_shape
    (40, 51)
    """
    if isinstance(name, str) and ":" in name and name not in _PRESETS:
        base_name, _, spec = name.partition(":")
        if base_name not in _PRESETS:
            return get_preset(base_name)  # refused with a did-you-mean
        base = _PRESETS[base_name]
        defaults = {**_KINDS[base.kind].defaults, **base.params, "sample_rate": base.sample_rate}
        settings = dict(_parse_setting(base_name, item, defaults) for item in spec.split(",") if item.strip())
        return get_preset(base_name, **{**settings, **overrides})
    if isinstance(name, Preset):
        base = name
    else:
        if name not in _PRESETS:
            import difflib

            close = difflib.get_close_matches(str(name), list(_PRESETS), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ParameterError(f"Unknown feature preset {name!r}.{hint} Known: {', '.join(list_presets())}.")
        base = _PRESETS[name]
    if not overrides:
        return base
    sr = overrides.pop("sample_rate", base.sample_rate)
    fmax = base.params.get("fmax")
    if "fmax" not in overrides and fmax is not None and float(fmax) == base.sample_rate / 2 and sr != base.sample_rate:
        overrides["fmax"] = sr / 2  # the band follows the rate when it was the whole band (librosa's fmax=None)
    return Preset(name=base.name, kind=base.kind, sample_rate=sr, params={**base.params, **overrides})


for _p in (
    Preset("logmel", "logmel", 16000),
    Preset("mfcc-seq", "mfcc-seq", 16000),
    Preset("psf-mfcc", "psf-mfcc", 16000),
    Preset("mfcc-mean", "mfcc-mean", 22050),
    Preset("classic173", "classic173", 22050),
    Preset("stats", "stats", 16000, {"skip_silence": True}),
    Preset("raw", "raw", 16000),
):
    register_preset(_p)

"""Torch modules wrapping the same feature maths: an STFT as a 1-D convolution with fixed DFT
kernels (exportable to ONNX, unlike ``torch.stft``), a mel spectrogram and a log-mel front end.

``LogMel.from_preset(get_preset("logmel"))`` applied to the ``raw`` preset's output (the same
clip padded/cropped to the same duration) equals ``get_preset("logmel").transform`` within
1e-3 dB where the signal is above the ``top_db`` floor (float32 rounding; see the tests).

Example
-------
>>> import torch
>>> from earmark.features import LogMel
>>> LogMel(sample_rate=16000, n_fft=512, win_length=400, hop_length=160, n_mels=64)(
...     torch.zeros(2, 16000)).shape
torch.Size([2, 64, 101])
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from earmark.errors import ParameterError
from earmark.features._presets import Preset, get_preset
from earmark.features._spectral import _window, mel_filterbank

__all__ = ["STFT", "LogMel", "MelSpectrogram", "logmel_module"]


class STFT(nn.Module):
    """Power (or magnitude) spectrogram by convolution with windowed DFT kernels.

    Parameters
    ----------
    n_fft, hop_length : int
    win_length : int or None
        Window length (centred in ``n_fft``); ``None``: ``n_fft``.
    window : str
        SciPy window name (periodic).
    center : bool
        Zero-pad ``n_fft // 2`` on both sides (librosa ``pad_mode="constant"``).
    power : float
        1 for magnitude, 2 for power.

    Shapes: ``(batch, samples)`` → ``(batch, 1 + n_fft // 2, frames)``.

    Example
    -------
    >>> import torch
    >>> STFT(n_fft=256, hop_length=128)(torch.zeros(1, 1024)).shape
    torch.Size([1, 129, 9])
    """

    def __init__(self, *, n_fft: int, hop_length: int, win_length: int | None = None,
                 window: str = "hann", center: bool = True, power: float = 2.0) -> None:
        super().__init__()
        if n_fft < 2 or hop_length < 1:
            raise ParameterError(
                f"STFT needs n_fft >= 2 and hop_length >= 1. Got n_fft={n_fft}, hop_length={hop_length}."
            )
        if power not in (1.0, 2.0):
            raise ParameterError(f"The 'power' parameter of STFT must be 1.0 or 2.0. Got {power}.")
        self.n_fft, self.hop_length, self.center, self.power = n_fft, hop_length, center, float(power)
        w = _window(window, win_length or n_fft, n_fft).astype(np.float64)
        n_bins = n_fft // 2 + 1
        k = np.arange(n_bins)[:, None]
        t = np.arange(n_fft)[None, :]
        ang = 2 * np.pi * k * t / n_fft
        kernel = np.concatenate([np.cos(ang) * w, -np.sin(ang) * w]).astype(np.float32)
        self.register_buffer("kernel", torch.from_numpy(kernel[:, None, :]))
        self.n_bins = n_bins

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        x = y.unsqueeze(1)
        if self.center:
            pad = self.n_fft // 2
            x = nn.functional.pad(x, (pad, pad))
        z = nn.functional.conv1d(x, self.kernel, stride=self.hop_length)
        re, im = z[:, : self.n_bins], z[:, self.n_bins:]
        p = re * re + im * im
        return p if self.power == 2.0 else torch.sqrt(p)


class MelSpectrogram(nn.Module):
    """Mel spectrogram: mel filters (as :func:`earmark.features.mel_filterbank`) over :class:`STFT`.

    Shapes: ``(batch, samples)`` → ``(batch, n_mels, frames)``.

    Example
    -------
    >>> import torch
    >>> MelSpectrogram(sample_rate=16000, n_fft=512, hop_length=160, n_mels=40)(
    ...     torch.zeros(1, 1600)).shape
    torch.Size([1, 40, 11])
    """

    def __init__(self, *, sample_rate: int, n_fft: int, hop_length: int, win_length: int | None = None,
                 window: str = "hann", center: bool = True, power: float = 2.0, n_mels: int,
                 fmin: float = 0.0, fmax: float | None = None, htk: bool = False,
                 norm: str | None = "slaney") -> None:
        super().__init__()
        self.stft = STFT(n_fft=n_fft, hop_length=hop_length, win_length=win_length, window=window,
                         center=center, power=power)
        fb = mel_filterbank(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax, htk=htk,
                            norm=norm)
        self.register_buffer("fb", torch.from_numpy(np.array(fb)))

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return torch.matmul(self.fb, self.stft(y))


class LogMel(nn.Module):
    """Log-mel spectrogram in dB with a per-clip ``top_db`` floor, exportable to ONNX.

    Parameters
    ----------
    sample_rate, n_fft, hop_length, win_length, window, center, power, n_mels, fmin, fmax, htk, norm
        As :func:`earmark.features.log_mel`.
    ref, amin, top_db : float
        ``10 log10(max(amin, S) / ref)``, floored at ``top_db`` below each clip's peak
        (``top_db=None``: no floor).

    Shapes: ``(batch, samples)`` → ``(batch, n_mels, frames)``.

    Example
    -------
    >>> import torch
    >>> m = LogMel.from_preset(get_preset("logmel"))
    >>> m(torch.randn(3, 16000)).shape
    torch.Size([3, 64, 101])
    """

    def __init__(self, *, sample_rate: int, n_fft: int, hop_length: int, win_length: int | None = None,
                 window: str = "hann", center: bool = True, power: float = 2.0, n_mels: int,
                 fmin: float = 0.0, fmax: float | None = None, htk: bool = False,
                 norm: str | None = "slaney", ref: float = 1.0, amin: float = 1e-10,
                 top_db: float | None = 80.0) -> None:
        super().__init__()
        self.mel = MelSpectrogram(sample_rate=sample_rate, n_fft=n_fft, hop_length=hop_length,
                                  win_length=win_length, window=window, center=center, power=power,
                                  n_mels=n_mels, fmin=fmin, fmax=fmax, htk=htk, norm=norm)
        self.amin = float(amin)
        self.offset = 10.0 * math.log10(max(amin, ref))
        self.top_db = None if top_db is None else float(top_db)
        self.sample_rate = int(sample_rate)

    @classmethod
    def from_preset(cls, preset: Preset | str) -> LogMel:
        """The module computing a ``logmel``-kind preset (input: the clip at the preset's rate,
        already padded/cropped to its duration, e.g. by the ``raw`` preset)."""
        p = get_preset(preset) if isinstance(preset, str) else preset
        if p.kind != "logmel":
            raise ParameterError(f"LogMel.from_preset needs a 'logmel' kind preset. Got {p.name!r} ({p.kind}).")
        q: dict[str, Any] = dict(p.params)
        return cls(sample_rate=p.sample_rate, n_fft=q["n_fft"], hop_length=q["hop_length"],
                   win_length=q["win_length"], window=q["window"], center=True, power=q["power"],
                   n_mels=q["n_mels"], fmin=q["fmin"], fmax=q["fmax"], htk=q["htk"], norm=q["norm"],
                   ref=q["ref"], amin=q["amin"], top_db=q["top_db"])

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        m = self.mel(y)
        db = torch.log(torch.clamp(m, min=self.amin)) * (10.0 / math.log(10.0)) - self.offset
        if self.top_db is not None:
            peak = torch.amax(db, dim=(-2, -1), keepdim=True)
            db = torch.maximum(db, peak - self.top_db)
        return db


def logmel_module(preset: Preset | str = "logmel") -> LogMel:
    """Shorthand for :meth:`LogMel.from_preset`.

    Example
    -------
    >>> logmel_module().mel.fb.shape
    torch.Size([64, 257])
    """
    return LogMel.from_preset(preset)

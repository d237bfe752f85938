"""Make clean synthetic speech sound recorded: room, silence trimming, padding, level and noise.

Every function is pure: it takes float32 samples and a :class:`numpy.random.Generator` where it
draws anything, and returns new samples.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields

import numpy as np
from scipy.signal import fftconvolve

from earmark.errors import ParameterError

__all__ = ["PostProcessing", "add_noise", "add_reverb", "pad", "postprocess", "set_peak", "trim_silence"]


@dataclass(frozen=True)
class PostProcessing:
    """How a rendered clip is turned into a plausible recording (ranges are ``(low, high)``).

    Attributes
    ----------
    trim_db : float
        Leading/trailing samples quieter than ``trim_db`` below the peak are cut (``None``: no trim).
    pad_seconds : tuple of float
        Range of the silence padding added at each end after trimming.
    peak_dbfs : tuple of float
        Range of the clip's final peak level, dB relative to full scale.
    reverb_probability : float
        Chance a clip is played in a simulated room.
    rt60 : tuple of float
        Range of the room's reverberation time in seconds.
    wet_db : tuple of float
        Range of the reverberant level relative to the direct sound, dB.
    noise_probability : float
        Chance a clip gets background noise.
    snr_db : tuple of float
        Range of the signal-to-noise ratio, dB (noise colour drawn between white and pink).

    Example
    -------
    >>> PostProcessing.from_json(PostProcessing(noise_probability=0.0).to_json()).noise_probability
    0.0
    """

    trim_db: float | None = 40.0
    pad_seconds: tuple[float, float] = (0.0, 0.05)
    peak_dbfs: tuple[float, float] = (-20.0, -2.0)
    reverb_probability: float = 0.3
    rt60: tuple[float, float] = (0.1, 0.5)
    wet_db: tuple[float, float] = (-20.0, -6.0)
    noise_probability: float = 0.5
    snr_db: tuple[float, float] = (20.0, 45.0)

    def __post_init__(self) -> None:
        for name in ("reverb_probability", "noise_probability"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ParameterError(f"The '{name}' parameter of PostProcessing must be in [0, 1]. Got {value!r} instead.")
        for name, lo, hi in (
            ("pad_seconds", 0.0, 10.0), ("peak_dbfs", -120.0, 0.0), ("rt60", 0.01, 5.0),
            ("wet_db", -60.0, 20.0), ("snr_db", -20.0, 120.0),
        ):
            value = getattr(self, name)
            if len(value) != 2 or not lo <= value[0] <= value[1] <= hi:
                raise ParameterError(
                    f"The '{name}' parameter of PostProcessing must be a (low, high) pair within [{lo}, {hi}]. "
                    f"Got {value!r} instead."
                )
        if self.trim_db is not None and not 0 < self.trim_db <= 120:
            raise ParameterError(f"The 'trim_db' parameter of PostProcessing must be in (0, 120] or None. Got {self.trim_db!r} instead.")

    def to_dict(self) -> dict[str, object]:
        """JSON-ready dictionary (tuples become lists)."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> PostProcessing:
        """Inverse of :meth:`to_dict`."""
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ParameterError(f"PostProcessing.from_dict got unknown keys {sorted(unknown)}.")
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items()})  # type: ignore[arg-type]

    def to_json(self) -> str:
        """JSON text, the inverse of :meth:`from_json`."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> PostProcessing:
        """Inverse of :meth:`to_json`."""
        return cls.from_dict(json.loads(text))


def trim_silence(y: np.ndarray, *, sr: int, top_db: float = 40.0, margin_seconds: float = 0.005) -> np.ndarray:
    """Cut leading and trailing samples quieter than ``top_db`` below the peak.

    Parameters
    ----------
    y : numpy.ndarray
        ``(samples,)`` float audio.
    sr : int
        Sample rate in Hz (for the margin).
    top_db : float
        Threshold below the absolute peak, in dB (40 dB = 1 % of the peak).
    margin_seconds : float
        Kept on each side of the first and last loud sample.

    Returns
    -------
    numpy.ndarray
        ``(samples',)``; unchanged when ``y`` is silent.

    Example
    -------
    >>> y = np.r_[np.zeros(100), np.ones(10), np.zeros(100)].astype(np.float32)
    >>> trim_silence(y, sr=8000, margin_seconds=0.0).shape
    (10,)
    """
    peak = float(np.max(np.abs(y))) if y.size else 0.0
    if peak == 0.0:
        return y
    loud = np.flatnonzero(np.abs(y) >= peak * 10.0 ** (-top_db / 20.0))
    margin = int(round(margin_seconds * sr))
    return y[max(loud[0] - margin, 0): loud[-1] + margin + 1]


def pad(y: np.ndarray, *, before: int, after: int) -> np.ndarray:
    """Add ``before`` and ``after`` zero samples.

    Example
    -------
    >>> pad(np.ones(2, np.float32), before=1, after=2).tolist()
    [0.0, 1.0, 1.0, 0.0, 0.0]
    """
    return np.concatenate([np.zeros(before, y.dtype), y, np.zeros(after, y.dtype)])


def set_peak(y: np.ndarray, *, dbfs: float) -> np.ndarray:
    """Scale so the absolute peak is ``dbfs`` dB relative to full scale (silence stays silent).

    Example
    -------
    >>> float(set_peak(np.array([0.5, -0.25], np.float32), dbfs=0.0).max())
    1.0
    """
    peak = float(np.max(np.abs(y))) if y.size else 0.0
    if peak == 0.0:
        return y
    return (y * (10.0 ** (dbfs / 20.0) / peak)).astype(np.float32)


def add_reverb(
    y: np.ndarray, *, sr: int, rt60: float, wet_db: float, rng: np.random.Generator
) -> np.ndarray:
    """Convolve with a simple room: an exponentially decaying noise tail after the direct sound.

    The impulse response is a unit direct path followed by Gaussian noise decaying by 60 dB in
    ``rt60`` seconds, scaled so the tail's energy is ``wet_db`` relative to the direct path. The
    output keeps the reverberant tail (it is longer than ``y`` by ``rt60`` seconds).

    Example
    -------
    >>> y = np.r_[1.0, np.zeros(99)].astype(np.float32)
    >>> add_reverb(y, sr=8000, rt60=0.2, wet_db=-10, rng=np.random.default_rng(0)).shape
    (1700,)
    """
    n = max(int(rt60 * sr), 1)
    t = np.arange(n) / sr
    tail = rng.standard_normal(n) * 10.0 ** (-3.0 * t / rt60)  # -60 dB at t = rt60
    tail *= 10.0 ** (wet_db / 20.0) / np.sqrt(np.sum(tail**2))
    ir = np.r_[1.0, tail]
    return fftconvolve(y, ir)[: y.size + n].astype(np.float32)


def add_noise(y: np.ndarray, *, snr_db: float, colour: float, rng: np.random.Generator) -> np.ndarray:
    """Add stationary noise at ``snr_db`` relative to the clip's power.

    Parameters
    ----------
    colour : float
        Spectral slope exponent: 0 is white, 1 pink (power ∝ 1/f^colour).

    Example
    -------
    >>> y = np.sin(np.arange(8000) / 5).astype(np.float32)
    >>> out = add_noise(y, snr_db=20, colour=1.0, rng=np.random.default_rng(0))
    >>> round(float(10 * np.log10(np.mean(y**2) / np.mean((out - y)**2))))
    20
    """
    power = float(np.mean(y.astype(np.float64) ** 2)) if y.size else 0.0
    if power == 0.0:
        return y
    spectrum = np.fft.rfft(rng.standard_normal(y.size))
    freqs = np.arange(spectrum.size, dtype=np.float64)
    freqs[0] = 1.0
    noise = np.fft.irfft(spectrum / freqs ** (colour / 2.0), n=y.size)
    noise *= np.sqrt(power / 10.0 ** (snr_db / 10.0) / np.mean(noise**2))
    return (y + noise).astype(np.float32)


def postprocess(
    y: np.ndarray, *, sr: int, config: PostProcessing, rng: np.random.Generator
) -> tuple[np.ndarray, dict[str, float]]:
    """Room → trim → pad → level → noise, drawing every random choice from ``rng``.

    Parameters
    ----------
    y : numpy.ndarray
        ``(samples,)`` float32 clean speech at ``sr``.
    sr : int
        Sample rate in Hz.
    config : PostProcessing
        Probabilities and ranges.
    rng : numpy.random.Generator
        Source of all random draws (same state → same output).

    Returns
    -------
    samples : numpy.ndarray
        ``(samples',)`` float32 within [-1, 1].
    drawn : dict
        What was drawn: ``peak_dbfs``, ``rt60`` and ``snr_db`` (NaN when not applied).

    Example
    -------
    >>> y = np.sin(np.arange(4000) / 3).astype(np.float32)
    >>> out, drawn = postprocess(y, sr=8000, config=PostProcessing(), rng=np.random.default_rng(0))
    >>> bool(np.abs(out).max() <= 1.0)
    True
    """
    # Draw everything up front, in a fixed order, so each choice is independent of the others' outcome.
    use_reverb = rng.random() < config.reverb_probability
    rt60 = float(rng.uniform(*config.rt60))
    wet_db = float(rng.uniform(*config.wet_db))
    before, after = (int(rng.uniform(*config.pad_seconds) * sr) for _ in range(2))
    peak_dbfs = float(rng.uniform(*config.peak_dbfs))
    use_noise = rng.random() < config.noise_probability
    snr_db = float(rng.uniform(*config.snr_db))
    colour = float(rng.uniform(0.0, 1.0))
    room_rng, noise_rng = (np.random.default_rng(s) for s in rng.integers(0, 2**63, size=2))

    out = np.asarray(y, dtype=np.float32)
    if use_reverb:
        out = add_reverb(out, sr=sr, rt60=rt60, wet_db=wet_db, rng=room_rng)
    if config.trim_db is not None:
        out = trim_silence(out, sr=sr, top_db=config.trim_db)
    out = set_peak(pad(out, before=before, after=after), dbfs=peak_dbfs)
    if use_noise:
        out = add_noise(out, snr_db=snr_db, colour=colour, rng=noise_rng)
    peak = float(np.max(np.abs(out))) if out.size else 0.0
    if peak > 1.0:
        out = out / peak
    drawn = {
        "peak_dbfs": peak_dbfs,
        "rt60": rt60 if use_reverb else float("nan"),
        "snr_db": snr_db if use_noise else float("nan"),
    }
    return out.astype(np.float32), drawn

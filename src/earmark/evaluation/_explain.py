"""Why a model answered what it did: occlusion of time-frequency regions of the sound itself.

Each region (a time window × a frequency band) is silenced in the clip's short-time Fourier
transform, the clip is re-synthesised, run through the model's own feature recipe and the model
again, and the region's importance is how much the score of the explained class falls (or, for
a regressor, how far the predicted value moves). Working on the waveform rather than on one
feature representation makes it apply to every model earmark trains: pooled statistics for
scikit-learn models, log-mel or MFCC sequences, raw waveforms, embeddings.

Example
-------
>>> from earmark.bundle import load_model  # doctest: +SKIP
>>> exp = explain(load_model("digits"), "../shared/data/fsdd/recordings/7_jackson_32.wav")  # doctest: +SKIP
>>> exp.top_regions(1)[0]["start_s"] < exp.duration  # doctest: +SKIP
True
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from earmark.errors import ParameterError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["Explanation", "deletion_curve", "explain", "min_window", "plot_explanation"]

#: Longest clip :func:`explain` takes: each region costs one feature extraction and prediction.
MAX_SECONDS = 30.0


@dataclass
class Explanation:
    """What a model heard in one clip.

    Attributes
    ----------
    source : str
        The file (or ``"array"``).
    explained : str
        The class whose score is explained (classifiers), or ``"value"`` (regressors).
    predicted : str or float
        The model's answer on the intact clip.
    score : float
        Score of ``explained`` on the intact clip: its probability, or the predicted value.
    importance : ndarray, shape (n_bands, n_windows)
        Fall of the score when each region is silenced (classifiers; negative when silencing
        the region made the class more likely), or the absolute change of the predicted value
        (regressors). Band 0 is the lowest.
    times : ndarray, shape (n_windows + 1,)
        Window edges in seconds.
    freqs : ndarray, shape (n_bands + 1,)
        Band edges in Hz (mel-spaced).
    sample_rate : int
        Rate the clip was analysed at (the model's feature rate).
    samples : ndarray
        The clip as the model heard it (for plots).
    window : float
        Width of the time windows in seconds (the last one may be shorter).
    """

    source: str
    explained: str
    predicted: Any
    score: float
    importance: np.ndarray
    times: np.ndarray
    freqs: np.ndarray
    sample_rate: int
    samples: np.ndarray = field(repr=False)
    window: float = 0.1

    @property
    def duration(self) -> float:
        """Length of the clip in seconds."""
        return len(self.samples) / self.sample_rate

    def top_regions(self, k: int = 5) -> list[dict[str, float]]:
        """The ``k`` regions whose silencing changed the score most, largest first.

        Example
        -------
        >>> exp.top_regions(1)  # doctest: +SKIP
        [{'start_s': 0.3, 'end_s': 0.4, 'low_hz': 300.0, 'high_hz': 697.2, 'drop': 0.81}]
        """
        order = np.argsort(self.importance, axis=None)[::-1][: max(0, int(k))]
        out = []
        for flat in order:
            b, w = np.unravel_index(flat, self.importance.shape)
            out.append({"start_s": round(float(self.times[w]), 4), "end_s": round(float(self.times[w + 1]), 4),
                        "low_hz": round(float(self.freqs[b]), 1), "high_hz": round(float(self.freqs[b + 1]), 1),
                        "drop": round(float(self.importance[b, w]), 6)})
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary (without the samples)."""
        return {"source": self.source, "explained": self.explained, "window": self.window,
                "predicted": self.predicted if isinstance(self.predicted, str) else float(self.predicted),
                "score": float(self.score), "times": self.times.round(4).tolist(),
                "freqs": self.freqs.round(1).tolist(), "importance": self.importance.round(6).tolist(),
                "top_regions": self.top_regions(5)}


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + np.maximum(f, 0.0) / 700.0)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (np.asarray(m) / 2595.0) - 1.0)


def _mel_edges(n_bands: int, sr: int) -> np.ndarray:
    return _mel_to_hz(np.linspace(0.0, float(_hz_to_mel(np.array(sr / 2.0))), n_bands + 1))


def _frame(rate: int) -> int:
    """STFT frame of the analysis: the power of two nearest above 32 ms."""
    return 1 << int(np.ceil(np.log2(max(64, rate * 0.032))))


def min_window(rate: int) -> float:
    """Narrowest region :func:`explain` can silence at ``rate``: one STFT hop (8-12 ms).

    Example
    -------
    >>> min_window(16000)
    0.008
    """
    return _frame(rate) // 4 / rate


class _Grid:
    """A clip's STFT cut into time windows × mel bands; re-synthesises it with cells silenced."""

    def __init__(self, y: np.ndarray, rate: int, window: float, bands: int) -> None:
        from scipy.signal import stft

        self.y, self.rate = y, rate
        self.n_fft = _frame(rate)
        self.hop = self.n_fft // 4
        # a clip shorter than one frame is analysed padded with silence, and cropped back after
        padded = np.pad(y, (0, max(0, self.n_fft - len(y))))
        freqs, frame_t, self.Z = stft(padded, fs=rate, nperseg=self.n_fft, noverlap=self.n_fft - self.hop,
                                      boundary="even", padded=True)
        self.n_windows = max(1, int(np.ceil(len(y) / rate / window - 1e-9)))
        self.times = np.minimum(np.arange(self.n_windows + 1) * window, len(y) / rate)
        self.edges = _mel_edges(bands, rate)
        self.band_of = np.clip(np.searchsorted(self.edges, freqs, side="right") - 1, 0, bands - 1)
        self.window_of = np.clip((frame_t / window).astype(int), 0, self.n_windows - 1)

    def has(self, band: int, win: int) -> bool:
        return bool((self.band_of == band).any() and (self.window_of == win).any())

    def silence(self, cells: list[tuple[int, int]]) -> np.ndarray:
        from scipy.signal import istft

        mask = np.zeros(self.Z.shape, dtype=bool)
        for b, w in cells:
            mask |= np.outer(self.band_of == b, self.window_of == w)
        _, x = istft(np.where(mask, 0, self.Z), fs=self.rate, nperseg=self.n_fft,
                     noverlap=self.n_fft - self.hop, boundary=True)
        out = np.zeros(len(self.y), dtype=np.float32)
        out[: min(len(x), len(self.y))] = x[: len(self.y)]
        return out


def _decode(model: Any, clip: Any, sr: int | None) -> tuple[np.ndarray, str]:
    from earmark.audio import float_samples, load_audio, to_mono
    from earmark.features._extract import resample_like_librosa
    from earmark.training._trained import _warn_assumed_rate

    rate = model.preset.sample_rate
    if isinstance(clip, np.ndarray):
        y = to_mono(float_samples(clip), channels_first=None)
        if sr is None:
            _warn_assumed_rate(rate)
        elif sr != rate:
            y = resample_like_librosa(y, orig_sr=int(sr), target_sr=rate)
        return y, "array"
    y, native = load_audio(clip, max_seconds=MAX_SECONDS + 1.0)  # the same decode as predict
    return resample_like_librosa(y, orig_sr=native, target_sr=rate), os.fspath(clip)


def explain(
    model: Any,
    clip: str | os.PathLike[str] | np.ndarray,
    *,
    target: str | None = None,
    window: float = 0.1,
    bands: int = 8,
    sr: int | None = None,
    batch_size: int = 64,
    max_regions: int | None = None,
) -> Explanation:
    """Occlusion map of one clip: how much each time-frequency region mattered to the model.

    Parameters
    ----------
    model : TrainedModel
        A trained model or loaded bundle (:func:`earmark.bundle.load_model`).
    clip : path or ndarray
        An audio file, or mono samples at ``sr``.
    target : str, optional
        Class to explain (default: the predicted class). Ignored for regressors.
    window : float
        Width of a region in seconds (at least :func:`min_window`; the last one may be shorter).
    bands : int
        Number of mel-spaced frequency bands from 0 Hz to the Nyquist frequency.
    sr : int, optional
        Rate of array input (default: the model's feature rate).
    batch_size : int
        Occluded copies featurised and predicted at once.
    max_regions : int, optional
        Refuse an explanation needing more regions (windows × bands) than this: each costs one
        feature extraction and prediction of the whole clip (the service sets it).

    Returns
    -------
    Explanation

    Raises
    ------
    ParameterError
        An unknown ``target`` class, a clip longer than :data:`MAX_SECONDS`, or bad settings.

    Example
    -------
    >>> exp = explain(model, "7_jackson_32.wav", window=0.05, bands=12)  # doctest: +SKIP
    >>> exp.importance.shape  # 12 bands × 11 windows of 50 ms for this 0.53 s clip  # doctest: +SKIP
    (12, 11)
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ParameterError(f"The 'batch_size' parameter of explain must be an int >= 1. Got {batch_size!r} instead.")
    if isinstance(model, (str, os.PathLike)):
        raise ParameterError(
            f"explain() takes a trained model, not the path {os.fspath(model)!r}; load the bundle first: "
            "explain(earmark.load_model(path), clip)."
        )
    if not isinstance(window, (int, float)) or not 0.005 <= window <= 5.0:
        raise ParameterError(f"The 'window' of explain must be between 0.005 and 5 seconds. Got {window!r}.")
    if not isinstance(bands, (int, np.integer)) or not 1 <= bands <= 64:
        raise ParameterError(f"The 'bands' of explain must be an int in [1, 64]. Got {bands!r}.")
    regression = model.task == "regression"
    if not regression and target is not None and str(target) not in model.classes:
        raise ParameterError(f"Unknown class {target!r} to explain; the model's classes are {model.classes}.")
    y, source = _decode(model, clip, sr)
    shown = "the clip" if source == "array" else source  # in messages
    rate = int(model.preset.sample_rate)
    if len(y) > MAX_SECONDS * rate:
        raise ParameterError(f"{shown} is longer than {MAX_SECONDS:g} s; explain a part of it "
                             "(cut it, or find the part with 'earmark predict --window').")
    if window < min_window(rate):
        raise ParameterError(f"The 'window' of explain must be at least {min_window(rate):g} s at "
                             f"{rate} Hz (one step of its analysis); got {window!r}.")
    if len(y) == 0:
        raise ParameterError(f"{shown} has no samples to explain.")
    n_cells = int(np.ceil(len(y) / rate / window - 1e-9)) * int(bands)
    if max_regions is not None and n_cells > max_regions:
        raise ParameterError(f"Explaining {shown} ({len(y) / rate:.1f} s) in {window:g} s windows × {bands} bands "
                             f"takes {n_cells} regions, more than the {max_regions} allowed; use a wider "
                             "window, fewer bands or a shorter clip.")

    def score(clips: list[np.ndarray]) -> np.ndarray:
        out = []
        for i in range(0, len(clips), batch_size):
            X = model.preset.transform_batch(clips[i:i + batch_size])
            out.append(model.predict_features(X).astype(float) if regression
                       else model.predict_proba_features(X))
        return np.concatenate(out)

    base = score([y])[0]
    if regression:
        explained, predicted, base_score = "value", float(base), float(base)
    else:
        k = int(np.argmax(base)) if target is None else model.classes.index(str(target))
        explained, predicted, base_score = model.classes[k], model.classes[int(np.argmax(base))], float(base[k])

    grid = _Grid(y, rate, window, int(bands))
    cells = [(b, w) for b in range(bands) for w in range(grid.n_windows) if grid.has(b, w)]
    importance = np.zeros((bands, grid.n_windows))
    for i in range(0, len(cells), batch_size):  # a batch of silenced copies at a time (bounded memory)
        part = cells[i:i + batch_size]
        for (b, w), s in zip(part, score([grid.silence([c]) for c in part])):
            importance[b, w] = abs(float(s) - base_score) if regression else base_score - float(s[k])
    times, edges = grid.times, grid.edges
    return Explanation(source=source, explained=explained, predicted=predicted, score=base_score,
                       importance=importance, times=times, freqs=edges, sample_rate=rate, samples=y,
                       window=float(window))


def deletion_curve(model: Any, exp: Explanation, *, steps: int = 10, order: str = "importance",
                   seed: int = 0) -> np.ndarray:
    """Score of the explained class as the regions are silenced one after another, cumulatively.

    The check of an explanation's faithfulness (the "deletion" measure): silencing regions in the
    order of their importance should make the score fall faster than silencing them in a random
    order (``order="random"``).

    Returns
    -------
    ndarray, shape (min(steps, regions) + 1,)
        The score with 0, 1, … ``steps`` regions silenced (probability of ``exp.explained``, or
        the predicted value for regressors); shorter when the clip has fewer regions.

    Example
    -------
    >>> deletion_curve(model, exp, steps=3)  # doctest: +SKIP
    array([0.97, 0.41, 0.12, 0.05])
    """
    if order not in ("importance", "random"):
        raise ParameterError(f"The 'order' of deletion_curve must be 'importance' or 'random'. Got {order!r}.")
    n_bands, n_windows = exp.importance.shape
    grid = _Grid(exp.samples, exp.sample_rate, exp.window, n_bands)
    cells = [(int(b), int(w)) for b, w in zip(*np.unravel_index(np.argsort(exp.importance, axis=None)[::-1],
                                                                  exp.importance.shape)) if grid.has(b, w)]
    if order == "random":
        rng = np.random.default_rng(seed)
        cells = [cells[i] for i in rng.permutation(len(cells))]
    out = []
    for start in range(0, min(steps, len(cells)) + 1, 32):  # 32 silenced copies at a time
        clips = [grid.silence(cells[:i]) if i else exp.samples
                 for i in range(start, min(start + 32, min(steps, len(cells)) + 1))]
        X = model.preset.transform_batch(clips)
        out.append(model.predict_features(X).astype(float) if model.task == "regression"
                   else model.predict_proba_features(X)[:, model.classes.index(exp.explained)])
    return np.concatenate(out)


def plot_explanation(exp: Explanation) -> Figure:
    """The clip's spectrogram with the importance of each region drawn over it.

    Example
    -------
    >>> plot_explanation(exp).savefig("why.png")  # doctest: +SKIP
    """
    from matplotlib.figure import Figure
    from scipy.signal import stft

    fig = Figure(figsize=(8.0, 3.6), layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    n_fft = _frame(exp.sample_rate)
    samples = np.pad(exp.samples, (0, max(0, n_fft - len(exp.samples))))
    f, t, Z = stft(samples, fs=exp.sample_rate, nperseg=n_fft, noverlap=n_fft * 3 // 4)
    db = 20 * np.log10(np.abs(Z) + 1e-6)
    ax.pcolormesh(t, f, db, cmap="gray_r", vmin=db.max() - 80, shading="auto")
    scale = float(np.abs(exp.importance).max()) or 1.0
    # a fall of a probability has a sign (red: the answer rests there); a regressor's change is a size
    one_sided = exp.explained == "value"
    mesh = ax.pcolormesh(exp.times, exp.freqs, exp.importance, cmap="Reds" if one_sided else "RdBu_r",
                         vmin=0.0 if one_sided else -scale, vmax=scale, alpha=0.55, shading="flat")
    ax.set_yscale("function", functions=(_hz_to_mel, _mel_to_hz))  # mel scale: every band as tall
    ax.set_ylim(0, exp.sample_rate / 2)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("frequency (Hz)")
    what = "|change of the value|" if exp.explained == "value" else f"fall of p({exp.explained})"
    fig.colorbar(mesh, ax=ax, label=what + " when silenced")
    answer = exp.predicted if isinstance(exp.predicted, str) else f"{exp.predicted:.3g}"
    ax.set_title(f"{os.path.basename(exp.source)}: predicted {answer}; explained {exp.explained} "
                 f"(score {exp.score:.3g})", fontsize=9)
    return fig

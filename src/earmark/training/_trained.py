"""The result of :func:`earmark.training.train`: estimator + feature preset + everything a bundle keeps."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from earmark.errors import ParameterError, SampleRateWarning

__all__ = ["TrainedModel", "summary_vectors"]


def _warn_assumed_rate(rate: int) -> None:
    """Say that arrays given without ``sr`` are taken to be at the model's rate (never silently)."""
    import warnings

    warnings.warn(
        f"Arrays of samples were given without sr=, so they are taken to be at the model's own rate, "
        f"{rate} Hz. Pass sr= (the rate earmark.load_audio or soundfile.read returned) and earmark "
        "resamples them; audio at another rate gets wrong answers.", SampleRateWarning, stacklevel=3)


def _has_paths(inputs: Any) -> bool:
    """Whether ``inputs`` names files (a table, a path, paths) rather than holding sample arrays."""
    if isinstance(inputs, (pd.DataFrame, str, os.PathLike)):
        return True
    return bool(len(inputs)) and isinstance(inputs[0], (str, os.PathLike))


def _array_problem(y: np.ndarray) -> str | None:
    """Why an array of samples cannot be predicted (as a decoder says it of a file), or None."""
    if y.dtype.kind != "f":
        return "does not hold real numbers; pass float or integer PCM samples"
    if y.ndim == 0 or y.size == 0:
        return "holds no samples"
    if y.ndim > 2:
        return f"has {y.ndim} dimensions; pass (samples,) or (samples, channels)"
    bad = int(np.count_nonzero(~np.isfinite(y)))
    if bad:
        return f"holds {bad} non-finite sample{'' if bad == 1 else 's'} (NaN or Inf); fix the array before predicting"
    return None


def summary_vectors(X: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
    """One vector per clip for drift monitoring: the pooled vector, or the time mean of sequences.

    Parameters
    ----------
    X : ndarray of shape (n, d) or (n, ..., frames), or list of (..., frames) arrays
        Features as :func:`earmark.features.extract` returns them.

    Returns
    -------
    ndarray of shape (n, k), float32

    Examples
    --------
    >>> summary_vectors(np.ones((3, 64, 101))).shape
    (3, 64)
    """
    if isinstance(X, np.ndarray) and X.ndim == 2:
        return X.astype(np.float32, copy=False)
    if isinstance(X, np.ndarray) and X.dtype != object:
        if X.ndim == 1:
            return X.reshape(-1, 1).astype(np.float32)
        return X.mean(axis=-1).reshape(len(X), -1).astype(np.float32)
    rows = [np.asarray(x, np.float32) for x in X]
    if not rows:
        return np.zeros((0, 0), np.float32)
    return np.stack([r.mean(axis=-1).ravel() if r.ndim > 1 else r for r in rows]).astype(np.float32)


@dataclass
class TrainedModel:
    """A trained model with the feature recipe and the record of how it was made.

    Attributes
    ----------
    estimator : estimator
        Fitted scikit-learn estimator (a :class:`~earmark.models.TorchClassifier` for neural models).
    preset : earmark.features.Preset
        Feature recipe the estimator was trained on (audio is decoded at ``preset.sample_rate``).
    task : {"classification", "regression"}
    classes : list of str
        Class names in the order of probability columns (empty for regression).
    target : str
        Dataset column that was learned.
    config : dict
        Full JSON-able run configuration (model name and parameters, preset, seed, epochs,
        validation, padding policy, …).
    history : list of dict
        Per-epoch ``epoch, loss, accuracy, val_loss, val_accuracy, lr`` (empty for classical models).
    metrics : dict
        Metrics on the held-out validation part of the training data.
    data : dict
        Fingerprint of the training data (counts, class counts, SHA-256 of the sorted paths and
        labels, extra-train info, skipped files).
    reference : dict of ndarray
        ``"features"``: summary vectors of up to 2,000 training clips; ``"proba"``: the model's
        validation probabilities (``"pred"`` for regression), used for drift monitoring;
        ``"train_files"`` and ``"train_groups"``: 64-bit digests of the files and group names it
        was fitted on, with which :func:`earmark.evaluate` says when it is scored on them.

    Examples
    --------
    >>> from earmark.training import train  # doctest: +SKIP
    >>> model = train(df, model="logreg", features="mfcc-mean")  # doctest: +SKIP
    >>> model.predict(["../shared/data/fsdd/recordings/7_jackson_32.wav"]).label[0]  # doctest: +SKIP
    '7'
    """

    estimator: Any
    preset: Any
    task: str = "classification"
    classes: list[str] = field(default_factory=list)
    target: str = "label"
    config: dict = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)
    metrics: dict = field(default_factory=dict)
    data: dict = field(default_factory=dict)
    reference: dict = field(default_factory=dict)

    def __repr__(self) -> str:
        acc = (self.metrics or {}).get("accuracy", (self.metrics or {}).get("mae"))
        what = (f"classes={len(self.classes)}" if self.task == "classification" else f"target={self.target!r}")
        score = ""
        if isinstance(acc, (int, float)):
            score = f", val_{'accuracy' if self.task == 'classification' else 'mae'}={acc:.4g}"
        return (f"TrainedModel(model={(self.config or {}).get('model')!r}, preset={getattr(self.preset, 'name', None)!r}, "
                f"task={self.task!r}, {what}{score})")

    # ------------------------------------------------------------------ features
    def features(self, inputs: Any, *, sr: int | None = None) -> tuple[Any, list[str], list[dict]]:
        """Features of paths, a dataset table, or arrays of samples.

        Parameters
        ----------
        inputs : DataFrame with a ``path`` column, sequence of paths, one path, or sequence of
            1-D float arrays (samples at ``sr``, default ``preset.sample_rate``)
        sr : int, optional
            Rate of array inputs.

        Returns
        -------
        (X, names, errors)
            Features of the clips that decoded, their names (path, or ``"array[i]"``), and
            ``{"path", "reason"}`` for those that did not.
        """
        from earmark.audio import float_samples, to_mono
        from earmark.features import extract, featurize

        if isinstance(inputs, np.ndarray) and inputs.dtype != object:
            if inputs.ndim == 1:
                inputs = [inputs]
            elif inputs.ndim == 2 and inputs.shape[1] <= 8 < inputs.shape[0]:
                # one clip as (samples, channels), the layout soundfile.read gives; a 2-D array of
                # longer rows is a batch of clips
                inputs = [to_mono(float_samples(inputs), channels_first=False)]
        if isinstance(inputs, (str, os.PathLike)):
            inputs = [inputs]
        if isinstance(inputs, pd.DataFrame) or (
            len(inputs) and isinstance(inputs[0], (str, os.PathLike))
        ):
            fs = extract(inputs, self.preset, workers=1)
            return fs.X, list(fs.paths), list(fs.errors)
        if sr is None:
            _warn_assumed_rate(self.preset.sample_rate)
        elif isinstance(sr, bool) or not isinstance(sr, (int, np.integer)) or sr <= 0:
            raise ParameterError(f"sr must be the arrays' sample rate in Hz, a positive integer; got {sr!r}.")
        feats, names, errors = [], [], []
        for i, y in enumerate(inputs):
            try:
                samples = float_samples(y)
            except (TypeError, ValueError):
                samples = np.asarray([], dtype=object)
            reason = _array_problem(samples)
            if reason:
                errors.append({"path": f"array[{i}]", "reason": reason})
                continue
            feats.append(featurize(samples, self.preset, sr=sr))
            names.append(f"array[{i}]")
        if feats and len({f.shape for f in feats}) == 1:
            return np.stack(feats), names, errors
        return feats, names, errors

    # ------------------------------------------------------------------ prediction
    def _need_classifier(self, what: str) -> None:
        if self.task != "classification":
            raise ParameterError(f"{what} needs a classifier; this model is a {self.task} model "
                                 f"of {self.target!r}. Use predict().")

    def predict_proba_features(self, X: Any) -> np.ndarray:
        """Class probabilities of precomputed features, shape (n, len(classes)).

        Examples
        --------
        >>> model.predict_proba_features(fs.X).shape  # doctest: +SKIP
        (20, 10)
        """
        self._need_classifier("predict_proba_features")
        return np.asarray(self.estimator.predict_proba(X), dtype=np.float64)

    def predict_features(self, X: Any) -> np.ndarray:
        """Predictions (class names or numbers) of precomputed features."""
        if self.task == "classification":
            proba = self.predict_proba_features(X)
            return np.asarray(self.classes, dtype=object)[proba.argmax(axis=1)]
        return np.asarray(self.estimator.predict(X), dtype=np.float64)

    def predict_proba(self, inputs: Any, *, sr: int | None = None) -> np.ndarray:
        """Class probabilities of audio files or sample arrays, shape (n, len(classes)).

        Raises :class:`~earmark.errors.AudioDecodeError` when a file cannot be decoded (use
        :meth:`predict` to get per-file errors instead).

        Examples
        --------
        >>> model.predict_proba(["../shared/data/fsdd/recordings/7_jackson_32.wav"]).shape  # doctest: +SKIP
        (1, 10)
        """
        from earmark.errors import AudioDecodeError

        self._need_classifier("predict_proba")
        if not isinstance(inputs, (str, os.PathLike)) and len(inputs) == 0:
            return np.zeros((0, len(self.classes)), np.float64)
        X, _, errors = self.features(inputs, sr=sr)
        if errors:
            raise AudioDecodeError(errors[0]["path"], errors[0]["reason"])
        return self.predict_proba_features(X)

    def predict(self, inputs: Any, *, sr: int | None = None) -> pd.DataFrame:
        """Predict audio files (or arrays); one row per input, failed files included with ``error``.

        Returns
        -------
        DataFrame
            ``path``, ``label`` (classification; ``prediction`` for regression), ``confidence``,
            ``proba_<class>`` per class, and ``error`` (None when the file decoded).

        Examples
        --------
        >>> model.predict(["../shared/data/fsdd/recordings/7_jackson_32.wav"])  # doctest: +SKIP
        """
        X, names, errors = self.features(inputs, sr=sr)
        order = self._input_order(inputs, names, errors)
        rows: list[dict[str, Any]] = []
        if len(names):
            if self.task == "classification":
                proba = self.predict_proba_features(X)
                best = proba.argmax(axis=1)
                for i, name in enumerate(names):
                    row = {"path": name, "label": self.classes[best[i]], "confidence": float(proba[i, best[i]])}
                    row.update({f"proba_{c}": float(p) for c, p in zip(self.classes, proba[i])})
                    row["error"] = None
                    rows.append(row)
            else:
                pred = self.predict_features(X)
                rows += [{"path": n, "prediction": float(p), "error": None} for n, p in zip(names, pred)]
        key = "label" if self.task == "classification" else "prediction"
        rows += [{"path": e["path"], key: None, "error": e["reason"]} for e in errors]
        out = pd.DataFrame([rows[i] for i in order] if order is not None else rows)
        if "error" in out:
            out["error"] = out["error"].astype(object).where(out["error"].notna(), None)
        return out

    def _input_order(self, inputs: Any, names: list[str], errors: list[dict]) -> list[int] | None:
        """Positions in ``names + errors`` of each input, in input order (files that failed stay
        where they were given, as in ``earmark predict``); ``None`` when they already are in order."""
        if not errors:
            return None
        every = [str(n) for n in [*names, *(e["path"] for e in errors)]]
        arrays = [re.fullmatch(r"array\[(\d+)\]", n) for n in every]
        if every and all(arrays) and not _has_paths(inputs):  # arrays: back to their index order
            index = [int(m.group(1)) for m in arrays if m]
            return sorted(range(len(index)), key=index.__getitem__)
        if isinstance(inputs, pd.DataFrame):
            given = [str(p) for p in inputs["path"]]
        elif isinstance(inputs, (str, os.PathLike)):
            given = [str(inputs)]
        else:
            given = [str(p) for p in inputs]
        from collections import defaultdict, deque

        slots: dict[str, deque[int]] = defaultdict(deque)
        for i, name in enumerate([*names, *(e["path"] for e in errors)]):
            slots[str(name)].append(i)
        order = [slots[g].popleft() for g in given if slots.get(g)]
        if len(order) != len(names) + len(errors):  # names not as given: keep the plain order
            return None
        return order

    def predict_windows(
        self, path_or_array: Any, *, window: float = 1.0, hop: float = 0.5, sr: int | None = None
    ) -> tuple[pd.DataFrame, dict]:
        """Predict a long recording window by window.

        Parameters
        ----------
        path_or_array : path or 1-D array
            The recording (arrays at ``sr``, default ``preset.sample_rate``).
        window, hop : float
            Window length and hop in seconds.

        Returns
        -------
        (windows, summary)
            ``windows``: one row per window (``start``, ``end`` in seconds, ``label``/``prediction``,
            ``confidence``, ``silent`` (digital silence) and ``proba_<class>``); ``summary``: the
            clip-level result (``label`` from the mean of the probabilities of the windows that are
            not silent, ``confidence``, ``probabilities``; or the mean ``prediction`` for
            regression), ``n_windows`` and ``n_silent_windows``.

        Examples
        --------
        >>> windows, clip = model.predict_windows("long.wav", window=1.0, hop=0.5)  # doctest: +SKIP
        """
        from earmark.audio import float_samples, is_silent, load_audio, resample, to_mono

        hop = self.preset.check_window(window, hop)  # positive, and no longer than the clips the model hears
        rate = self.preset.sample_rate
        if isinstance(path_or_array, np.ndarray):
            samples = float_samples(path_or_array)
            reason = _array_problem(samples)
            if reason:
                raise ParameterError(f"The array {reason}.")
            y = to_mono(samples, channels_first=None)
            if sr is None:
                _warn_assumed_rate(rate)
            elif isinstance(sr, bool) or not isinstance(sr, (int, np.integer)) or sr <= 0:
                raise ParameterError(f"sr must be the array's sample rate in Hz, a positive integer; got {sr!r}.")
            elif sr != rate:
                y = resample(y, orig_sr=int(sr), target_sr=rate)
        else:
            y, _ = load_audio(path_or_array, sr=rate)
        win, step = max(1, round(window * rate)), max(1, round(hop * rate))
        starts = list(range(0, max(1, len(y) - win + 1), step))
        if len(y) > win and starts[-1] + win < len(y):
            starts.append(len(y) - win)
        from earmark.features import _extract

        clips = [y[s : s + win] for s in starts]  # views of y: no copies
        # features a block of windows at a time: memory stays flat for hours of audio
        block = _extract.WINDOW_BLOCK
        blocks = (self.preset.transform_batch(clips[i:i + block]) for i in range(0, len(clips), block))
        rows: list[dict[str, Any]] = []
        # a window of digital silence gets the model's guess about nothing: flagged, and left out of
        # the summary (all windows count only when every one is silent)
        silent = np.array([is_silent(np.asarray(c)) for c in clips])
        heard = ~silent if (~silent).any() else np.ones_like(silent)
        summary: dict[str, Any] = {"n_windows": len(clips), "n_silent_windows": int(silent.sum())}
        if self.task == "classification":
            proba = np.concatenate([self.predict_proba_features(b) for b in blocks])
            for s, p, q in zip(starts, proba, silent):
                k = int(p.argmax())
                row = {"start": s / rate, "end": min(len(y), s + win) / rate, "label": self.classes[k],
                       "confidence": float(p[k]), "silent": bool(q)}
                row.update({f"proba_{c}": float(v) for c, v in zip(self.classes, p)})
                rows.append(row)
            mean = proba[heard].mean(axis=0)
            k = int(mean.argmax())
            summary.update(label=self.classes[k], confidence=float(mean[k]),
                           probabilities={c: float(v) for c, v in zip(self.classes, mean)})
        else:
            pred = np.concatenate([self.predict_features(b) for b in blocks])
            rows = [{"start": s / rate, "end": min(len(y), s + win) / rate, "prediction": float(p), "silent": bool(q)}
                    for s, p, q in zip(starts, pred, silent)]
            summary["prediction"] = float(np.mean(pred[heard]))
        return pd.DataFrame(rows), summary

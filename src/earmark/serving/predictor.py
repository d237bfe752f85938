"""Prediction from audio bytes, arrays and files with the model's own feature code.

:class:`Predictor` wraps a trained model (or a bundle path) once and answers many requests:
decode → the model's feature preset → the estimator. It is what the HTTP service, ``earmark
predict`` and the benchmarks share, so all of them compute features exactly as training did.

Example
-------
>>> p = Predictor.load("models/digits")  # doctest: +SKIP
>>> p.predict_file("../shared/data/fsdd/recordings/7_jackson_32.wav").label  # doctest: +SKIP
'7'
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from earmark.audio import SILENCE_PEAK, is_silent, load_audio, resample, resample_many
from earmark.errors import AudioDecodeError, ParameterError

__all__ = ["RUNTIMES", "SILENCE_PEAK", "Prediction", "Predictor", "UploadRejected", "is_silent", "top_k"]

UNKNOWN = "unknown"
#: What may compute probabilities from features (see :class:`Predictor`).
RUNTIMES = ("estimator", "onnx", "auto")


class UploadRejected(ParameterError):
    """An input breaks a limit of the service (size, duration, emptiness); ``status`` is the HTTP code.

    Attributes
    ----------
    kind : str
        Short machine-readable name (``too_large``, ``too_long``, ``empty``).
    status : int
        HTTP status the service answers with.
    """

    def __init__(self, message: str, *, kind: str, status: int) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status


@dataclass(frozen=True)
class Prediction:
    """One clip's answer.

    Attributes
    ----------
    label : str
        Top class (or ``unknown`` when rejected as too uncertain); for a regressor, the predicted
        value as text.
    confidence : float or None
        Probability of the top class (``None`` for a regressor).
    probabilities : dict
        Probability of every class, in the model's class order (empty for a regressor).
    duration : float
        Seconds of audio used.
    features : np.ndarray or None
        The clip's summary vector for drift monitoring.
    value : float or None
        The predicted number of a regressor (``None`` for a classifier).
    rejected : bool
        The top class was replaced by ``unknown`` (its probability was below ``reject_below``).
    silent : bool
        The clip is digital silence (see :func:`is_silent`): the answer is the model's guess about
        nothing, however confident.
    heard : float or None
        Seconds of the clip the model heard, when that is less than ``duration`` (it hears its
        clip length; for longer audio, predict windows); ``None`` when it heard all of it.
    """

    label: str
    confidence: float | None
    probabilities: dict[str, float]
    duration: float
    features: np.ndarray | None = field(default=None, repr=False, compare=False)
    value: float | None = None
    rejected: bool = False
    silent: bool = False
    heard: float | None = None

    def top(self, k: int) -> list[dict[str, Any]]:
        """The ``k`` most probable classes as ``[{"label", "probability"}, …]`` (rejected or not)."""
        return top_k(self.probabilities, k)

    def to_dict(self, *, k: int | None = None) -> dict[str, Any]:
        """JSON-ready answer: ``label``, ``confidence``, ``rejected``, ``probabilities``, ``top``,
        ``duration``; for a regressor ``prediction`` and ``duration``.

        Example
        -------
        >>> Prediction("7", 0.9, {"7": 0.9, "1": 0.1}, 0.5).to_dict(k=1)["top"]
        [{'label': '7', 'probability': 0.9}]
        >>> Prediction("61.5", None, {}, 1.5, value=61.5).to_dict()
        {'prediction': 61.5, 'duration': 1.5}
        """
        flag: dict[str, Any] = {"silent": True} if self.silent else {}
        if self.heard is not None:  # a longer clip: the model heard its first (or middle) seconds only
            flag["heard_seconds"] = self.heard
        if self.value is not None:
            return {"prediction": self.value, "duration": self.duration, **flag}
        return {
            "label": self.label,
            "confidence": self.confidence,
            "rejected": self.rejected,
            "probabilities": self.probabilities,
            "top": self.top(k or len(self.probabilities)),
            "duration": self.duration,
            **flag,
        }




def top_k(probabilities: dict[str, float], k: int) -> list[dict[str, Any]]:
    """The ``k`` largest entries of a ``{label: probability}`` dict, most probable first.

    Example
    -------
    >>> top_k({"a": 0.2, "b": 0.7, "c": 0.1}, 2)
    [{'label': 'b', 'probability': 0.7}, {'label': 'a', 'probability': 0.2}]
    """
    items = sorted(probabilities.items(), key=lambda kv: -kv[1])[: max(int(k), 1)]
    return [{"label": lab, "probability": p} for lab, p in items]


def bundle_identity(manifest: Mapping[str, Any], *, task: str | None = None, target: str | None = None,
                    classes: Sequence[str] | None = None) -> dict[str, Any]:
    """A model's identity in a request log, from its bundle manifest (``task`` / ``target`` /
    ``classes`` given where there is no manifest).

    Example
    -------
    >>> bundle_identity({"manifest_sha256": "ab12", "task": "regression", "target": "pitch"})["classes"]
    []
    """
    task = str(task or manifest.get("task") or "classification")
    names = classes if classes is not None else (manifest.get("classes") or [])
    return {"bundle": manifest.get("manifest_sha256"), "created": manifest.get("created"), "task": task,
            "target": target if target is not None else manifest.get("target"),
            "classes": [str(c) for c in names] if task == "classification" else []}


class Predictor:
    """A trained model ready to answer: decoding limits, features, probabilities, drift summary.

    Parameters
    ----------
    model : earmark.training.TrainedModel
        The model (from :func:`earmark.train` or :func:`earmark.load_model`).
    manifest : dict, optional
        Its bundle manifest, when it came from one (shown by ``GET /model``).
    reject_below : float or None
        Answer ``unknown`` when the top probability is below this (classifiers).
    runtime : {"estimator", "onnx", "auto"}
        What computes the probabilities from the features: the estimator's ``predict_proba``;
        ONNX Runtime running the same network (torch classifiers only; exported in memory and
        checked against PyTorch within 1e-4 when the predictor is made, and ~20 times cheaper per
        call for one clip); or ``"auto"``, ONNX Runtime where it is possible and the estimator
        elsewhere. :attr:`runtime` tells which one runs.

    A regressor (``task == "regression"``) answers the predicted number of its :attr:`target`
    (:attr:`Prediction.value`) instead of class probabilities, through the estimator.

    Example
    -------
    >>> p = Predictor(trained)  # doctest: +SKIP
    >>> p.classes[:3]  # doctest: +SKIP
    ['0', '1', '2']
    """

    def __init__(
        self,
        model: Any,
        manifest: dict[str, Any] | None = None,
        *,
        reject_below: float | None = None,
        runtime: str = "estimator",
        threads: int = 1,
    ) -> None:
        if runtime not in RUNTIMES:
            raise ParameterError(f"The 'runtime' parameter of Predictor must be one of {RUNTIMES}. Got {runtime!r} instead.")
        self.task: str = str(getattr(model, "task", "classification"))
        self.target: str = str(getattr(model, "target", "label"))
        classes = getattr(model, "classes", None)
        if self.task == "classification" and (classes is None or len(classes) == 0):
            raise ParameterError("This model is a classifier without classes; train it again (earmark train).")
        if self.task == "regression" and runtime == "onnx":
            raise ParameterError(
                f"runtime='onnx' serves classifiers; this model is a regressor of {self.target!r}. "
                "Use runtime='estimator' (or 'auto')."
            )
        self.model = model
        self.manifest = manifest
        self.preset = model.preset
        self.classes: list[str] = [str(c) for c in classes] if self.task == "classification" else []
        self.sample_rate = int(self.preset.sample_rate)
        self.reject_below = reject_below
        est_classes = getattr(model.estimator, "classes_", None)
        # column order of predict_proba → position in self.classes
        self._order = None
        if est_classes is not None:
            names = [str(c) for c in est_classes]
            if names != self.classes and sorted(names) == sorted(self.classes):
                self._order = np.array([names.index(c) for c in self.classes])
        self._onnx = None
        self.runtime = "estimator"
        if runtime != "estimator" and self.task == "classification":
            from earmark.serving.export import onnx_network

            try:
                self._onnx = onnx_network(model, threads=max(1, int(threads)))
                self.runtime = "onnx"
            except ParameterError as exc:
                if runtime == "onnx":
                    raise ParameterError(f"runtime='onnx' serves neural classifiers through ONNX Runtime, and this "
                                         f"model cannot: {exc} Use runtime='auto' or 'estimator'.") from None

    @classmethod
    def load(cls, model_or_path: Any, *, reject_below: float | None = None, runtime: str = "estimator",
             threads: int = 1) -> Predictor:
        """A predictor for a trained model, or for the bundle at a path (verified on load).

        A :class:`Predictor` is returned as it is (``reject_below`` and ``runtime`` ignored).

        Example
        -------
        >>> Predictor.load("digits.earmark").classes  # doctest: +SKIP
        ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9']
        """
        if isinstance(model_or_path, Predictor):
            return model_or_path
        if isinstance(model_or_path, (str, os.PathLike)):
            from earmark.bundle import load_bundle

            model, manifest = load_bundle(model_or_path)
            return cls(model, manifest, reject_below=reject_below, runtime=runtime, threads=threads)
        return cls(model_or_path, reject_below=reject_below, runtime=runtime, threads=threads)

    def identity(self) -> dict[str, Any]:
        """What a request log stores of the model that writes it: its bundle's manifest hash and
        creation time (when it came from a bundle), task, target and classes.

        Example
        -------
        >>> Predictor.load("digits.earmark").identity()["task"]  # doctest: +SKIP
        'classification'
        """
        return bundle_identity(self.manifest or {}, task=self.task, target=self.target, classes=self.classes)

    # -- features -------------------------------------------------------------------------

    def features(self, y: np.ndarray) -> np.ndarray:
        """The model's input for one mono clip at :attr:`sample_rate` (the training preset)."""
        return np.asarray(self.preset.transform(y))

    def summary(self, y: np.ndarray) -> np.ndarray:
        """The per-clip drift descriptors (:func:`earmark.serving.drift.drift_summary`)."""
        from earmark.serving.drift import drift_summary

        return drift_summary(y, self.sample_rate)

    def outputs(self, inputs: Sequence[np.ndarray]) -> np.ndarray:
        """What the model answers for model inputs: :meth:`proba` for a classifier, the predicted
        values as ``(n, 1)`` for a regressor. Rows of it make :class:`Prediction` objects.

        Example
        -------
        >>> p.outputs([p.features(y)]).shape  # doctest: +SKIP
        (1, 10)
        """
        if self.task == "classification":
            return self.proba(inputs)
        batch, _ = _batch(inputs)
        return np.asarray(self.model.estimator.predict(batch), dtype=np.float64).reshape(len(inputs), 1)

    def proba(self, inputs: Sequence[np.ndarray]) -> np.ndarray:
        """Probabilities ``(n, n_classes)`` in :attr:`classes` order for model inputs (classifiers)."""
        if self.task != "classification":
            raise ParameterError(
                f"This model is a regressor of {self.target!r}; it has no class probabilities. Use outputs()."
            )
        est = self.model.estimator
        batch, shape = _batch(inputs)
        if self._onnx is not None and shape is not None and shape == self._onnx.input_shape:
            p = self._onnx(batch)
        else:  # other shapes: the estimator pads or crops them as in training
            p = np.asarray(est.predict_proba(batch), dtype=np.float64)
        if self._order is not None:
            p = p[:, self._order]
        return p

    # -- prediction -------------------------------------------------------------------------

    def decode(
        self,
        source: Any,
        *,
        max_bytes: int | None = None,
        max_seconds: float | None = None,
        timeout: float | None = None,
    ) -> np.ndarray:
        """Decode bytes, a file or a file object to mono float32 at :attr:`sample_rate`, enforcing limits.

        Raises
        ------
        UploadRejected
            Empty, larger than ``max_bytes`` or longer than ``max_seconds``.
        AudioDecodeError
            Not decodable audio.
        """
        y, sr = self._decode_native(source, max_bytes=max_bytes, max_seconds=max_seconds, timeout=timeout)
        return resample(y, orig_sr=sr, target_sr=self.sample_rate) if sr != self.sample_rate else y

    def _decode_native(
        self, source: Any, *, max_bytes: int | None, max_seconds: float | None, timeout: float | None
    ) -> tuple[np.ndarray, int]:
        """Mono float32 at the file's own rate, with the limits of :meth:`decode` checked."""
        if isinstance(source, (bytes, bytearray, memoryview)):
            if len(source) == 0:
                raise UploadRejected("empty upload (0 bytes); send an audio file", kind="empty", status=400)
            if max_bytes is not None and len(source) > max_bytes:
                raise UploadRejected(
                    f"upload is {len(source):,} bytes, above the limit of {max_bytes:,} "
                    "(setting max_bytes / --max-bytes / EARMARK_SERVE_MAX_BYTES)",
                    kind="too_large", status=413,
                )
        kwargs: dict[str, Any] = {}
        if max_bytes is not None:
            kwargs["max_bytes"] = max_bytes
        if timeout is not None:
            kwargs["timeout"] = timeout
        # decode a little more than allowed, to tell "too long" from "exactly the limit"
        limit = None if max_seconds is None else max_seconds + 0.5
        y, sr = load_audio(source, sr=None, mono=True, max_seconds=limit, **kwargs)
        if max_seconds is not None and y.shape[0] > max_seconds * sr + 1:
            raise UploadRejected(
                f"audio is longer than the limit of {max_seconds:g} s "
                "(setting max_seconds / --max-seconds / EARMARK_SERVE_MAX_SECONDS)",
                kind="too_long", status=413,
            )
        return y, sr

    def decode_many(
        self,
        sources: Sequence[Any],
        *,
        max_bytes: int | None = None,
        max_seconds: float | None = None,
        timeout: float | None = None,
    ) -> list[np.ndarray | Exception]:
        """:meth:`decode` of many uploads: each clip, or the exception that rejected it.

        Clips of one sample rate are resampled together (fewer, larger soxr calls; the same samples
        as one :meth:`decode` per clip), which is what makes batched serving cheap.

        Example
        -------
        >>> [y.shape for y in p.decode_many([wav_bytes, wav_bytes])]  # doctest: +SKIP
        [(16000,), (16000,)]
        """
        out: list[np.ndarray | Exception] = []
        native: dict[int, list[int]] = {}
        for source in sources:
            try:
                y, sr = self._decode_native(source, max_bytes=max_bytes, max_seconds=max_seconds, timeout=timeout)
            except Exception as exc:  # handed back in place of the clip
                out.append(exc)
                continue
            native.setdefault(sr, []).append(len(out))
            out.append(y)
        for sr, idx in native.items():
            if sr != self.sample_rate:
                clips = resample_many([out[i] for i in idx], orig_sr=sr, target_sr=self.sample_rate)  # type: ignore[misc]
                for i, y in zip(idx, clips, strict=True):
                    out[i] = y
        return out

    def _make(self, p: np.ndarray, duration: float, summary: np.ndarray | None, silent: bool = False,
              *, whole: bool = False) -> Prediction:
        """A :class:`Prediction` from one row of :meth:`outputs` (``whole``: every second of
        ``duration`` was heard, as by windows)."""
        clip = self.preset.params.get("duration")
        heard = (float(clip) if not whole and clip is not None and duration is not None
                 and duration > float(clip) + 1e-3 else None)
        if self.task != "classification":
            value = float(p[0])
            return Prediction(label=f"{value:.6g}", confidence=None, probabilities={}, duration=duration,
                              features=summary, value=value, silent=silent, heard=heard)
        i = int(np.argmax(p))
        conf = float(p[i])
        rejected = self.reject_below is not None and conf < self.reject_below
        return Prediction(
            label=UNKNOWN if rejected else self.classes[i],
            confidence=conf,
            probabilities={c: float(v) for c, v in zip(self.classes, p, strict=True)},
            duration=duration,
            features=summary,
            rejected=rejected,
            silent=silent,
            heard=heard,
        )

    def predict_arrays(self, clips: Sequence[np.ndarray], *, summaries: bool = False) -> list[Prediction]:
        """Predict mono clips already at :attr:`sample_rate`.

        Example
        -------
        >>> p.predict_arrays([y])[0].label  # doctest: +SKIP
        '7'
        """
        if not clips:
            return []
        xs = self.preset.transform_batch([np.asarray(y, dtype=np.float32) for y in clips])
        proba = self.outputs(list(xs))
        out = []
        for y, p in zip(clips, proba, strict=True):
            s = self.summary(y) if summaries else None
            out.append(self._make(p, y.shape[0] / self.sample_rate, s, is_silent(np.asarray(y))))
        return out

    def predict_bytes(
        self,
        data: Any,
        *,
        max_bytes: int | None = None,
        max_seconds: float | None = None,
        timeout: float | None = None,
        summaries: bool = False,
    ) -> Prediction:
        """Decode (with limits) and predict one upload; see :meth:`decode` for the errors.

        Example
        -------
        >>> p.predict_bytes(open("7_jackson_32.wav", "rb").read()).label  # doctest: +SKIP
        '7'
        """
        y = self.decode(data, max_bytes=max_bytes, max_seconds=max_seconds, timeout=timeout)
        return self.predict_arrays([y], summaries=summaries)[0]

    def predict_file(self, path: str | os.PathLike[str], **limits: Any) -> Prediction:
        """Predict one file (same limits as :meth:`predict_bytes`)."""
        return self.predict_bytes_path(Path(path), **limits)

    def predict_bytes_path(self, path: Path, **limits: Any) -> Prediction:
        y = self.decode(path, max_bytes=limits.get("max_bytes"), max_seconds=limits.get("max_seconds"),
                        timeout=limits.get("timeout"))
        return self.predict_arrays([y], summaries=limits.get("summaries", False))[0]

    def check_window(self, window: float, hop: float | None = None) -> float:
        """:meth:`earmark.features.Preset.check_window` of the model's preset: the hop, or a
        :class:`ParameterError` for a window the model cannot hear whole."""
        return self.preset.check_window(window, hop)

    def predict_windows(
        self, y: np.ndarray, *, window: float, hop: float | None = None
    ) -> tuple[list[tuple[float, float, Prediction]], Prediction]:
        """Predict a long clip window by window; also the clip-level summary (mean probabilities,
        or a regressor's mean value, over the windows that are not digital silence).

        Parameters
        ----------
        y : np.ndarray
            Mono clip at :attr:`sample_rate`.
        window, hop : float
            Window length and step in seconds (``hop`` defaults to ``window``).

        Returns
        -------
        windows : list of (start, end, Prediction)
        summary : Prediction

        Example
        -------
        >>> windows, clip = p.predict_windows(y, window=1.0, hop=0.5)  # doctest: +SKIP
        """
        from earmark.features import _extract

        hop = self.check_window(window, hop)
        sr = self.sample_rate
        w, h = max(1, round(window * sr)), max(1, round(hop * sr))
        n = y.shape[0]
        starts = list(range(0, max(n - w, 0) + 1, h))
        if starts[-1] + w < n:  # cover the tail
            starts.append(max(n - w, 0))
        chunks = [y[s : s + w] for s in starts]  # views of y: no copies
        # features and outputs a block of windows at a time: memory stays flat for hours of audio
        block = _extract.WINDOW_BLOCK
        proba = np.concatenate([self.outputs(list(self.preset.transform_batch(chunks[i:i + block])))
                                for i in range(0, len(chunks), block)])
        silent = np.array([is_silent(np.asarray(c)) for c in chunks])
        windows = [
            (s / sr, min(s + w, n) / sr, self._make(p, c.shape[0] / sr, None, bool(q)))
            for s, c, p, q in zip(starts, chunks, proba, silent, strict=True)
        ]
        # the summary is of what was heard: a window of digital silence gets the model's guess about
        # nothing (a recording with gaps was summarised by its gaps); all of them when all are silent
        heard = proba[~silent] if (~silent).any() else proba
        return windows, self._make(heard.mean(axis=0), n / sr, None, is_silent(np.asarray(y)), whole=True)


def _batch(inputs: Sequence[np.ndarray]) -> tuple[Any, tuple[int, ...] | None]:
    """Model inputs as one array when they share a shape (and that shape), else as a list (and
    ``None``: the estimator pads or crops them as in training)."""
    shapes = {np.shape(x) for x in inputs}
    if len(shapes) == 1:
        return np.stack(inputs), shapes.pop()
    return list(inputs), None


def check_decodable(error: Exception) -> str:
    """A one-line reason for a per-file error (used in outputs that list failures)."""
    if isinstance(error, AudioDecodeError):
        return error.reason
    return str(error)

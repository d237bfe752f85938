"""Predict many files at once (``earmark predict``): folders recursively, in parallel, per-file errors.

Example
-------
>>> rows = predict_paths("models/digits", ["../shared/data/fsdd/recordings"])  # doctest: +SKIP
>>> rows[0]["label"], rows[0]["error"]  # doctest: +SKIP
('0', None)
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from earmark.audio import is_audio_file
from earmark.errors import AudioDecodeError, EarmarkError, ParameterError
from earmark.serving.predictor import UNKNOWN, Predictor, top_k

__all__ = ["expand_paths", "predict_paths"]

_CHUNK = 256


def expand_paths(paths: Iterable[str | os.PathLike[str]]) -> list[str]:
    """Files as given, folders replaced by their audio files (recursively, sorted).

    A path that does not exist is kept, so that it is reported as a per-file error.

    Example
    -------
    >>> len(expand_paths(["../shared/data/fsdd/recordings"]))  # doctest: +SKIP
    2500
    """
    out: list[str] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            out.extend(str(f) for f in sorted(p.rglob("*")) if f.is_file() and is_audio_file(f))
        else:
            out.append(str(p))
    return out


def _default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def predict_paths(
    model: Any,
    paths: Sequence[str | os.PathLike[str]],
    *,
    k: int = 1,
    window: float | None = None,
    hop: float | None = None,
    reject_below: float | None = None,
    workers: int | None = None,
    cache: str | os.PathLike[str] | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[dict[str, Any]]:
    """Predict every audio file under ``paths``.

    Parameters
    ----------
    model : TrainedModel, Predictor, str or path-like
        The model or its bundle.
    paths : sequence of paths
        Files and folders (folders are searched recursively for audio files).
    k : int
        Number of top classes listed per file (``top``).
    window, hop : float, optional
        Seconds: predict each file window by window (``windows`` lists them) and summarise the
        clip by the mean of the windows' probabilities.
    reject_below : float, optional
        Label a file ``unknown`` when its top probability is below this.
    workers : int, optional
        Parallel decoding / feature threads (default: CPU count, at most 8).
    cache : path, optional
        Feature store directory: features are read from it when present and written to it
        otherwise (the store of :func:`earmark.extract`).
    progress : callable, optional
        Called with the number of files just finished.

    Returns
    -------
    list of dict
        One row per file, in input order: ``path``, ``label``, ``confidence``, ``top`` (list of
        ``{label, probability}``), ``probabilities``, ``duration``, ``error`` (``None`` when it
        worked), and ``windows`` when ``window`` is given.

    Example
    -------
    >>> rows = predict_paths(model, ["clips/"], k=3, reject_below=0.5)  # doctest: +SKIP
    """
    if k < 1:
        raise ParameterError(f"The 'k' parameter of predict_paths must be >= 1. Got {k!r} instead.")
    if reject_below is not None and not 0 <= reject_below <= 1:
        raise ParameterError(f"The 'reject_below' parameter must be a probability in [0, 1]. Got {reject_below!r} instead.")
    if hop is not None and window is None:
        raise ParameterError("The 'hop' parameter needs 'window' too; pass both (seconds).")
    predictor = Predictor.load(model)
    predictor.reject_below = reject_below
    files = expand_paths(paths)
    workers = workers or _default_workers()
    tick = progress or (lambda n: None)
    if window is not None:
        return _predict_windows(predictor, files, k, window, hop, workers, tick)
    rows: list[dict[str, Any] | None] = [None] * len(files)
    if cache is not None:
        xs, errors, durations = _extract_cached(predictor, files, cache, workers)
    else:
        xs, errors, durations = _extract(predictor, files, workers, tick)
    ok = [i for i in range(len(files)) if xs[i] is not None]
    for start in range(0, len(ok), _CHUNK):
        idx = ok[start : start + _CHUNK]
        proba = predictor.proba([xs[i] for i in idx])
        for i, p in zip(idx, proba, strict=True):
            rows[i] = _row(predictor, files[i], p, durations[i], k)
        if cache is not None:
            tick(len(idx))
    for i, err in errors.items():
        rows[i] = _error_row(files[i], err)
        if cache is not None:
            tick(1)
    return [r for r in rows if r is not None]


def _row(predictor: Predictor, path: str, p: np.ndarray, duration: float | None, k: int) -> dict[str, Any]:
    pred = predictor._make(p, float(duration) if duration is not None else float("nan"), None)
    return {
        "path": path,
        "label": pred.label,
        "confidence": pred.confidence,
        "top": top_k(pred.probabilities, k),
        "probabilities": pred.probabilities,
        "duration": pred.duration,
        "error": None,
    }


def _error_row(path: str, error: str) -> dict[str, Any]:
    return {"path": path, "label": None, "confidence": None, "top": [], "probabilities": {},
            "duration": None, "error": error}


def _reason(exc: Exception) -> str:
    if isinstance(exc, AudioDecodeError):
        return exc.reason
    return f"{type(exc).__name__}: {exc}"


def _extract(
    predictor: Predictor, files: list[str], workers: int, tick: Callable[[int], None]
) -> tuple[list[Any], dict[int, str], list[float | None]]:
    def one(path: str) -> tuple[Any, str | None, float | None]:
        try:
            y = predictor.decode(path)
            return predictor.features(y), None, y.shape[0] / predictor.sample_rate
        except (EarmarkError, OSError, ValueError) as exc:
            return None, _reason(exc), None

    xs: list[Any] = [None] * len(files)
    durations: list[float | None] = [None] * len(files)
    errors: dict[int, str] = {}
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for i, (x, err, dur) in enumerate(pool.map(one, files, chunksize=8)):
            xs[i], durations[i] = x, dur
            if err is not None:
                errors[i] = err
            tick(1)
    return xs, errors, durations


def _extract_cached(
    predictor: Predictor, files: list[str], cache: str | os.PathLike[str], workers: int
) -> tuple[list[Any], dict[int, str], list[float | None]]:
    """Features through the feature store of :func:`earmark.extract` (same code as training)."""
    import pandas as pd

    from earmark.features import extract

    df = pd.DataFrame({"path": [os.path.abspath(f) for f in files]})
    fs = extract(df, predictor.preset, cache=cache, workers=workers)
    xs_all = fs.X
    xs: list[Any] = [None] * len(files)
    rows = list(np.asarray(fs.rows))
    for j, i in enumerate(rows):
        xs[int(i)] = xs_all[j]
    errors: dict[int, str] = {}
    err_map = _errors_by_path(getattr(fs, "errors", None))
    for i, f in enumerate(files):
        if xs[i] is None:
            errors[i] = err_map.get(os.path.abspath(f), "could not be read (see the feature store report)")
    durations: list[float | None] = [None] * len(files)
    return xs, errors, durations


def _errors_by_path(errors: Any) -> dict[str, str]:
    if errors is None:
        return {}
    if isinstance(errors, dict):
        return {os.path.abspath(str(k)): str(v) for k, v in errors.items()}
    try:  # DataFrame with path / error columns
        return {os.path.abspath(str(p)): str(e) for p, e in zip(errors["path"], errors["error"], strict=False)}
    except (KeyError, TypeError, IndexError):
        pass
    out = {}
    for item in errors:
        if isinstance(item, dict) and "path" in item:
            out[os.path.abspath(str(item["path"]))] = str(item.get("reason", item.get("error", "")))
        elif isinstance(item, (tuple, list)) and len(item) >= 2:
            out[os.path.abspath(str(item[0]))] = str(item[1])
    return out


def _predict_windows(
    predictor: Predictor, files: list[str], k: int, window: float, hop: float | None, workers: int,
    tick: Callable[[int], None],
) -> list[dict[str, Any]]:
    def one(path: str) -> dict[str, Any]:
        try:
            y = predictor.decode(path)
            windows, clip = predictor.predict_windows(y, window=window, hop=hop)
        except (EarmarkError, OSError, ValueError) as exc:
            return {**_error_row(path, _reason(exc)), "windows": []}
        row = _row(predictor, path, np.array(list(clip.probabilities.values())), clip.duration, k)
        row["windows"] = [
            {"start": s, "end": e, "label": p.label, "confidence": p.confidence} for s, e, p in windows
        ]
        return row

    out = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for row in pool.map(one, files):
            out.append(row)
            tick(1)
    return out


__all__ += ["UNKNOWN"]

"""Predict many files at once (``earmark predict``): folders recursively, in parallel, per-file errors.

Example
-------
>>> rows = predict_paths("models/digits", ["../shared/data/fsdd/recordings"])  # doctest: +SKIP
>>> rows[0]["label"], rows[0]["error"]  # doctest: +SKIP
('0', None)
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from earmark.errors import AudioDecodeError, EarmarkError, ParameterError
from earmark.serving.predictor import UNKNOWN, Predictor, is_silent, top_k

__all__ = ["expand_paths", "predict_paths"]

_CHUNK = 32  # files per task: decoded, featurized and predicted together
#: ``runtime="auto"`` runs torch networks in ONNX Runtime from this many files on: its export takes 1-2 s,
#: about what it saves on 2,000 files (~0.7 ms each for the default CNN).
ONNX_MIN_FILES = 2000


def expand_paths(paths: Iterable[str | os.PathLike[str]]) -> list[str]:
    """Files as given, folders replaced by their audio files (recursively, sorted).

    A path that does not exist is kept, so that it is reported as a per-file error, and so is a
    folder without audio files (never silently dropped).

    Example
    -------
    >>> len(expand_paths(["../shared/data/fsdd/recordings"]))  # doctest: +SKIP
    2500
    """
    from earmark.sources import audio_files  # here: earmark.sources imports scikit-learn (~1 s)

    out: list[str] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            found = [str(f) for f in audio_files(p)]  # as datasets read folders: hidden ones left out
            out.extend(found or [str(p)])
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
    runtime: str = "auto",
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
    runtime : {"auto", "onnx", "estimator"}
        What runs the model (see :class:`~earmark.serving.Predictor`); ``"auto"`` picks ONNX
        Runtime for a torch network from :data:`ONNX_MIN_FILES` files on. Ignored when ``model``
        is a Predictor already.

    Each worker thread decodes, featurizes and predicts a chunk of files at a time, with the
    numerical libraries on one thread each (parallelism comes from the workers).

    Returns
    -------
    list of dict
        One row per file, in input order: ``path``, ``label``, ``confidence`` (the top class's
        probability), ``rejected`` (``label`` was replaced by ``unknown``), ``top`` (list of the
        ``k`` most probable ``{label, probability}``, whether rejected or not), ``probabilities``,
        ``duration``, ``error`` (``None`` when it worked), and ``windows`` when ``window`` is
        given (each ``start``, ``end``, ``label``, ``confidence``, ``rejected``, ``top_label`` and
        its own ``top``). A regressor's rows hold ``path``, ``prediction``, ``duration`` and
        ``error``.

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
    if window is not None and cache is not None:
        raise ParameterError("A feature store (cache) holds features of whole files; windowed prediction "
                             "computes each window's features as it goes and would not use it. Drop cache "
                             "(--cache) or window (--window).")
    files = expand_paths(paths)
    if runtime == "auto" and len(files) < ONNX_MIN_FILES:
        runtime = "estimator"
    predictor = Predictor.load(model, runtime=runtime)
    predictor.reject_below = reject_below
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1):
        raise ParameterError(f"The 'workers' parameter of predict_paths must be an int >= 1 or None. Got {workers!r} instead.")
    workers = workers or _default_workers()
    tick = progress or (lambda n: None)
    if window is not None:
        predictor.check_window(window, hop)  # once, before any file: not one error per file
    folders = [i for i, f in enumerate(files) if os.path.isdir(f)]  # given, with no audio file in them
    skip = set(folders)
    audio = [f for i, f in enumerate(files) if i not in skip]
    with _one_thread_each():
        if window is not None:
            rows = _predict_windows(predictor, audio, k, window, hop, workers, tick)
        elif cache is None:
            rows = _predict_files(predictor, audio, k, workers, tick)
        else:
            rows = _predict_cached(predictor, audio, k, cache, workers, tick)
    for i in folders:
        row = _error_row(predictor, files[i], "a folder with no audio files in it (searched recursively, "
                         "hidden files left out); give audio files or a folder that holds some")
        rows.insert(i, {**row, "windows": []} if window is not None else row)
    if folders:
        tick(len(folders))
    return rows


@contextmanager
def _one_thread_each() -> Iterator[None]:
    """BLAS, OpenMP and PyTorch on one thread while the workers run (restored afterwards)."""
    from threadpoolctl import threadpool_limits

    torch = sys.modules.get("torch")
    before = torch.get_num_threads() if torch is not None else None
    with threadpool_limits(1):
        if torch is not None:
            torch.set_num_threads(1)
        try:
            yield
        finally:
            if torch is not None:
                torch.set_num_threads(before)


def _chunks(items: Sequence[Any]) -> list[Sequence[Any]]:
    return [items[i : i + _CHUNK] for i in range(0, len(items), _CHUNK)]


def _row(predictor: Predictor, path: str, p: np.ndarray, duration: float | None, k: int,
         silent: bool = False) -> dict[str, Any]:
    pred = predictor._make(p, float(duration) if duration is not None else None, None)  # type: ignore[arg-type]
    flag = {"silent": True} if silent else {}  # digital silence: the answer is a guess about nothing
    if pred.value is not None:
        return {"path": path, "prediction": pred.value, "duration": pred.duration, "error": None, **flag}
    return {
        "path": path,
        "label": pred.label,
        "confidence": pred.confidence,
        "rejected": pred.rejected,
        "top": top_k(pred.probabilities, k),
        "probabilities": pred.probabilities,
        "duration": pred.duration,
        "error": None,
        **flag,
    }


def _error_row(predictor: Predictor, path: str, error: str) -> dict[str, Any]:
    if predictor.task != "classification":
        return {"path": path, "prediction": None, "duration": None, "error": error}
    return {"path": path, "label": None, "confidence": None, "rejected": False, "top": [], "probabilities": {},
            "duration": None, "error": error}


def _window_row(start: float, end: float, pred: Any, k: int = 1) -> dict[str, Any]:
    flag = {"silent": True} if pred.silent else {}  # digital silence: left out of the file's summary
    if pred.value is not None:
        return {"start": start, "end": end, "prediction": pred.value, **flag}
    ranked = sorted(pred.probabilities.items(), key=lambda kv: -kv[1])
    return {"start": start, "end": end, "label": pred.label, "confidence": pred.confidence,
            "rejected": pred.rejected, "top_label": ranked[0][0],
            "top": [{"label": c, "probability": float(v)} for c, v in ranked[:k]], **flag}


def _reason(exc: Exception) -> str:
    if isinstance(exc, AudioDecodeError):
        return exc.reason
    return f"{type(exc).__name__}: {exc}"


def _predict_files(
    predictor: Predictor, files: list[str], k: int, workers: int, tick: Callable[[int], None]
) -> list[dict[str, Any]]:
    def chunk_rows(chunk: Sequence[str]) -> list[dict[str, Any]]:
        out: list[dict[str, Any] | None] = [None] * len(chunk)
        clips, where = [], []
        for j, path in enumerate(chunk):
            try:
                clips.append(predictor.decode(path))
                where.append(j)
            except (EarmarkError, OSError, ValueError) as exc:
                out[j] = _error_row(predictor, path, _reason(exc))
        xs, ok = _features(predictor, clips)
        for j, x in zip(where, xs, strict=True):
            if isinstance(x, Exception):
                out[j] = _error_row(predictor, chunk[j], _reason(x))
        if ok:
            proba = predictor.outputs([xs[i] for i in ok])
            for i, p in zip(ok, proba, strict=True):
                j = where[i]
                out[j] = _row(predictor, chunk[j], p, clips[i].shape[0] / predictor.sample_rate, k,
                              is_silent(clips[i]))
        return out  # type: ignore[return-value]

    rows: list[dict[str, Any]] = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for chunk_out in pool.map(chunk_rows, _chunks(files)):
            rows.extend(chunk_out)
            tick(len(chunk_out))
    return rows


def _features(predictor: Predictor, clips: list[np.ndarray]) -> tuple[list[Any], list[int]]:
    """Features of the clips, batched as in training; a clip that breaks the batch gets its error."""
    if not clips:
        return [], []
    try:
        return list(predictor.preset.transform_batch(clips)), list(range(len(clips)))
    except Exception:  # one clip broke the batch: find it, one clip at a time
        pass
    xs: list[Any] = []
    for y in clips:
        try:
            xs.append(predictor.features(y))
        except (EarmarkError, ValueError) as exc:
            xs.append(exc)
    return xs, [i for i, x in enumerate(xs) if not isinstance(x, Exception)]


def _predict_cached(
    predictor: Predictor, files: list[str], k: int, cache: str | os.PathLike[str], workers: int,
    tick: Callable[[int], None],
) -> list[dict[str, Any]]:
    xs, errors, durations = _extract_cached(predictor, files, cache, workers)
    ok = [i for i in range(len(files)) if xs[i] is not None]
    silent_like = _silence_features(predictor.preset)

    def chunk_rows(idx: Sequence[int]) -> list[tuple[int, dict[str, Any]]]:
        proba = predictor.outputs([xs[i] for i in idx])
        return [(i, _row(predictor, files[i], p, durations[i], k, silent_like(xs[i])))
                for i, p in zip(idx, proba, strict=True)]

    rows: list[dict[str, Any] | None] = [None] * len(files)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for done in pool.map(chunk_rows, _chunks(ok)):
            for i, row in done:
                rows[i] = row
            tick(len(done))
    for i, err in errors.items():
        rows[i] = _error_row(predictor, files[i], err)
        tick(1)
    return [r for r in rows if r is not None]


def _silence_features(preset: Any) -> Callable[[Any], bool]:
    """A test of stored features for digital silence, without decoding the file again: the
    features equal those of an all-zero clip (each frame like its frames, for sequences of any
    length). That finds all-zero files, as :func:`~earmark.serving.predictor.is_silent` does on
    decoded audio; float noise below half a 16-bit step, which ``is_silent`` also flags, is found
    only where its features round to those of zeros."""
    seconds = preset.params.get("duration") or 1.0
    ref = np.asarray(preset.transform(np.zeros(max(1, round(seconds * preset.sample_rate)), np.float32)))

    tol = 1e-5 * (float(np.abs(ref).max(initial=0.0)) + 1.0)  # float rounding at the features' own scale

    def test(x: Any) -> bool:
        x = np.asarray(x)
        if x.shape == ref.shape:
            return bool(np.abs(x - ref).max(initial=0.0) <= tol)
        if x.ndim == ref.ndim >= 2 and x.shape[:-1] == ref.shape[:-1] and x.shape[-1]:  # frames vary
            return bool(np.abs(x - ref[..., :1]).max() <= tol)
        return False

    return test


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
    from earmark.audio import audio_info

    durations: list[float | None] = [None] * len(files)
    for i, f in enumerate(files):
        if xs[i] is not None:
            with contextlib.suppress(EarmarkError, OSError):  # from the header (the audio stayed in the store)
                durations[i] = float(audio_info(f).duration)
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
            return {**_error_row(predictor, path, _reason(exc)), "windows": []}
        out = [clip.value] if clip.value is not None else list(clip.probabilities.values())
        row = _row(predictor, path, np.array(out), clip.duration, k, clip.silent)
        row["windows"] = [_window_row(s, e, p, k) for s, e, p in windows]
        row["silent_windows"] = sum(1 for w in row["windows"] if w.get("silent"))
        return row

    out = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for row in pool.map(one, files):
            out.append(row)
            tick(1)
    return out


__all__ += ["UNKNOWN"]

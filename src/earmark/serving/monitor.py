"""Drift monitoring of a deployed model: reference statistics, current statistics, the report.

The reference is what the model heard in training: drift descriptors
(:func:`~earmark.serving.drift.drift_summary`) and predicted probabilities of the training clips,
stored in the bundle under ``drift_features`` / ``drift_proba`` (see :func:`build_reference`).
The current sample is the service's request log, or any dataset source.

Example
-------
>>> report = monitor("digits.earmark", "requests.sqlite")  # doctest: +SKIP
>>> report.drift, report.n  # doctest: +SKIP
(False, 812)
"""

from __future__ import annotations

import dataclasses
import html
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from earmark.errors import EarmarkError, ParameterError
from earmark.serving.drift import DRIFT_FEATURES, DriftReport, detect_drift
from earmark.serving.predictor import Predictor
from earmark.serving.requestlog import (
    RequestLog,
    check_request_log,
    describe_model,
    is_request_log,
    same_model,
)

__all__ = ["build_reference", "current_statistics", "monitor", "render_html"]


def _source_paths(source: Any) -> tuple[list[str], list[dict[str, str]]]:
    """The source's paths, and the files loading it already left out (with their reasons)."""
    if isinstance(source, (list, tuple)):
        return [str(p) for p in source], []
    if hasattr(source, "columns") and "path" in source.columns:
        return [str(p) for p in source["path"]], list(getattr(source, "attrs", {}).get("skipped", []))
    import warnings

    from earmark.sources import load_dataset

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # they are returned, and reported by the caller
        table = load_dataset(source, allow_unlabelled=True)
    return [str(p) for p in table["path"]], list(table.attrs.get("skipped", []))


def current_statistics(
    model: Any, source: Any, *, workers: int | None = None
) -> dict[str, np.ndarray]:
    """Drift descriptors and probabilities of every decodable clip of a source.

    Parameters
    ----------
    model : TrainedModel, Predictor or bundle path
    source : dataset source, DataFrame with ``path``, or list of paths
    workers : int, optional
        Threads (default: CPU count).

    Returns
    -------
    dict
        ``features`` ``(n, 7)`` float32 and ``proba`` ``(n, n_classes)`` (a regressor: its predicted
        values, ``(n, 1)``; drift of a regressor is measured on the features only), and
        ``skipped``: ``{"path", "reason"}`` of every clip left out (unreadable, or its features
        could not be computed).

    Example
    -------
    >>> current_statistics(model, "../shared/data/tts-digits/espeak")["features"].shape  # doctest: +SKIP
    (502, 7)
    """
    predictor = Predictor.load(model)
    paths, skipped = _source_paths(source)

    def one(path: str) -> tuple[np.ndarray, np.ndarray] | str:
        try:
            y = predictor.decode(path)
        except (EarmarkError, OSError) as exc:
            return str(getattr(exc, "reason", None) or exc)  # the reason only: the row names the file
        try:
            return predictor.summary(y), predictor.features(y)
        except (EarmarkError, ValueError) as exc:
            return f"feature extraction failed: {exc}"

    with ThreadPoolExecutor(max_workers=workers or min(8, os.cpu_count() or 1)) as pool:
        results = list(pool.map(one, paths, chunksize=16))
    rows = [r for r in results if not isinstance(r, str)]
    skipped = [*skipped, *({"path": p, "reason": r} for p, r in zip(paths, results) if isinstance(r, str))]
    if not rows:
        raise ParameterError(f"No decodable audio in {source!r} ({len(skipped)} files left out, e.g. "
                             f"{skipped[:2]}); nothing to compare.")
    feats = np.stack([r[0] for r in rows]).astype(np.float32)
    proba = np.concatenate([predictor.outputs([r[1] for r in rows[i : i + 256]]) for i in range(0, len(rows), 256)])
    return {"features": feats, "proba": proba.astype(np.float32), "skipped": skipped}


def build_reference(model: Any, source: Any, *, workers: int | None = None) -> dict[str, np.ndarray]:
    """Reference statistics for drift from the model's training clips, ready for the bundle.

    Returns
    -------
    dict
        ``drift_features`` and ``drift_proba``; pass it as ``save_model(..., reference=...)``.

    Example
    -------
    >>> ref = build_reference(trained, train_df)  # doctest: +SKIP
    >>> save_model(trained, "digits.earmark", reference=ref)  # doctest: +SKIP
    """
    stats = current_statistics(model, source, workers=workers)
    return {"drift_features": stats["features"], "drift_proba": stats["proba"]}


def _reference_of(predictor: Predictor, reference_source: Any, workers: int | None) -> dict[str, np.ndarray]:
    ref = getattr(predictor.model, "reference", None) or {}
    # the confidence bar: the validation clips', what the model says of clips it did not train on
    # (its own training clips would set it too high), whichever data gives the class shares. The
    # validation clips are often one held-out speaker, whose class shares are not the data's.
    held_out = ref.get("proba")
    bar = {}
    if (held_out is not None and np.ndim(held_out) == 2 and len(held_out) >= 20
            and np.shape(held_out)[1] == len(predictor.classes)):
        bar["confidence_proba"] = np.asarray(held_out)
    if reference_source is not None:  # given: it is the reference, whatever the bundle holds
        stats = current_statistics(predictor, reference_source, workers=workers)
        return {"features": stats["features"], "proba": stats["proba"], **bar}
    if "drift_features" in ref:
        return {"features": np.asarray(ref["drift_features"]), "proba": ref.get("drift_proba"), **bar}
    feats = ref.get("features")
    if feats is not None and np.ndim(feats) == 2 and np.shape(feats)[1] == len(DRIFT_FEATURES):
        return {"features": np.asarray(feats), "proba": ref.get("proba")}
    raise ParameterError(
        "The model holds no drift reference (drift_features). Pass the training data as "
        "reference_source (--reference SOURCE), or save the bundle with "
        "save_model(..., reference=build_reference(model, train_source))."
    )


def since_time(value: Any) -> float:
    """A point in time as a UNIX time: a number (already one), a ``datetime``, an ISO date/time
    (UTC unless it names its zone) or a duration back from now (``30m``, ``6h``, ``2d``).

    Example
    -------
    >>> since_time("2026-11-23T09:00:00+00:00")
    1795424400.0
    """
    import re
    import time
    from datetime import datetime, timezone

    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        return float(value)
    when = value
    if isinstance(value, str) and re.fullmatch(r"\s*\d{9,}(\.\d+)?\s*", value):  # a UNIX time as text
        return float(value)
    if isinstance(value, str):
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*", value)
        if m:
            return time.time() - float(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
        try:
            when = datetime.fromisoformat(value.strip())
        except ValueError:
            when = None
    if not isinstance(when, datetime):
        raise ParameterError(f"a time is an ISO date/time (2026-11-23T09:00), a duration back from now (30m, 6h, "
                             f"2d), a datetime or a UNIX time; got {value!r}.")
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.timestamp()


def monitor(
    model: Any,
    log_or_source: Any,
    *,
    reference_source: Any = None,
    workers: int | None = None,
    last: int | None = None,
    since: float | None = None,
    **thresholds: Any,
) -> DriftReport:
    """Compare what a model hears now with what it was trained on.

    Parameters
    ----------
    model : TrainedModel, Predictor or bundle path
    log_or_source : path, DataFrame or list of paths
        A request log written by the service (SQLite), or a dataset source whose clips are
        predicted now.
    reference_source : optional
        Training data, when the bundle holds no drift reference.
    workers : int, optional
        Threads for a dataset source.
    last : int, optional
        Judge only the latest ``last`` requests of a request log (recent traffic, not all of it).
    since : float, str or datetime, optional
        Judge only the requests logged at or after this time (see :func:`since_time`).
    **thresholds
        Passed to :func:`~earmark.serving.drift.detect_drift` (``alpha``, ``psi_threshold``,
        ``feature_share``, ``confidence_drop``, ``prediction_psi``, ``min_samples``).

    Returns
    -------
    DriftReport

    Example
    -------
    >>> monitor("digits.earmark", "../shared/data/tts-digits/espeak").drift  # doctest: +SKIP
    True
    """
    if last is not None and (isinstance(last, bool) or not isinstance(last, (int, np.integer)) or last < 1):
        raise ParameterError(f"The 'last' parameter of monitor must be a whole number of requests >= 1. Got {last!r} instead.")
    if since is not None:
        since = since_time(since)
    predictor = Predictor.load(model)
    if (isinstance(log_or_source, (str, os.PathLike)) and Path(log_or_source).suffix.lower() in (".sqlite", ".db", ".sqlite3")
            and not Path(log_or_source).exists()):
        raise ParameterError(f"{os.fspath(log_or_source)}: no such request log. Give the file earmark serve --log "
                             "writes (it exists once the service has started), or a dataset source.")
    reference = _reference_of(predictor, reference_source, workers)
    if (isinstance(log_or_source, (str, os.PathLike)) and Path(log_or_source).suffix.lower() in (".sqlite", ".db", ".sqlite3")
            and Path(log_or_source).is_file() and not is_request_log(log_or_source)):
        raise ParameterError(f"{os.fspath(log_or_source)} is not an SQLite file, so not a request log of earmark serve "
                             "(--log); give the file the service wrote, or a dataset source (CSV manifest, folder).")
    if isinstance(log_or_source, (str, os.PathLike)) and is_request_log(log_or_source):
        check_request_log(log_or_source)
        with RequestLog(log_or_source) as log:
            rows = log.read(since=since, limit=last)
        if rows["proba"].shape[0] == 0:
            window = " after the time given (since)" if since is not None else ""
            raise ParameterError(f"{log_or_source}: the request log holds no request{window}; nothing to compare yet.")
        me = predictor.identity()
        owner = rows["model"] or ({"task": "classification", "classes": rows["classes"]}
                                  if rows["classes"] and rows["proba"].shape[1] > 1 else None)
        if owner is not None and not same_model(owner, me):
            raise ParameterError(
                f"{log_or_source} holds the requests of another model ({describe_model(owner)}), not of "
                f"{describe_model(me)}. Monitor a log with the model that wrote it (earmark serve MODEL --log)."
            )
        width = len(predictor.classes) if predictor.task == "classification" else 1
        if rows["proba"].shape[1] != width:
            raise ParameterError(
                f"{log_or_source}: logged answers have {rows['proba'].shape[1]} columns but this "
                f"{predictor.task} model gives {width}; the log was written by another model."
            )
        current = {"features": rows["features"], "proba": rows["proba"]}
    else:
        if last is not None or since is not None:
            raise ParameterError("last / since (--last, --since) choose requests of a request log; "
                                 f"{log_or_source!s:.200} is a dataset: give the clips to judge instead.")
        current = current_statistics(predictor, log_or_source, workers=workers)
    try:
        report = detect_drift(
            reference,
            current["features"],
            current["proba"] if reference.get("proba") is not None and predictor.task == "classification" else None,
            classes=predictor.classes,
            feature_names=DRIFT_FEATURES,
            **thresholds,
        )
    except ParameterError as exc:
        if (last is None and since is None) or "min_samples" not in str(exc):
            raise
        n = len(current["proba"]) if current.get("proba") is not None else 0
        need = thresholds.get("min_samples", 20)
        raise ParameterError(f"last / since (--last, --since) kept {n} request(s) of the log, fewer than the "
                             f"{need} drift needs: widen them (a larger --last, an earlier --since) or lower "
                             "min_samples (--min-samples).") from None
    return dataclasses.replace(report, skipped=list(current.get("skipped", [])))


def render_html(report: DriftReport, *, title: str = "earmark drift report") -> str:
    """A self-contained HTML page of a drift report.

    Example
    -------
    >>> "<table" in render_html(report)  # doctest: +SKIP
    True
    """
    e = html.escape
    verdict = "DRIFT" if report.drift else "no drift"
    color = "#c0392b" if report.drift else "#1e8449"
    rows = []
    for t in report.tests:
        rows.append(
            "<tr{cls}><td>{name}</td><td>{kind}</td><td>{test}</td><td>{stat:.4g}</td><td>{p:.3g}</td>"
            "<td>{q:.3g}</td><td>{eff:.3f}</td><td>{ref}</td><td>{cur}</td><td>{d}</td></tr>".format(
                cls=' class="drift"' if t.drift else "", name=e(t.name), kind=e(t.kind), test=e(t.test),
                stat=t.statistic, p=t.p_value, q=t.p_adjusted, eff=t.effect,
                ref="" if np.isnan(t.reference_mean) else f"{t.reference_mean:.4g}",
                cur="" if np.isnan(t.current_mean) else f"{t.current_mean:.4g}",
                d="yes" if t.drift else "",
            )
        )
    reasons = "".join(f"<li>{e(r)}</li>" for r in report.reasons) or "<li>none</li>"
    classes = sorted(set(report.prediction_counts) | set(report.reference_prediction_share))
    total = max(sum(report.prediction_counts.values()), 1)
    pred_rows = "".join(
        f"<tr><td>{e(c)}</td><td>{100 * report.reference_prediction_share.get(c, 0):.1f}%</td>"
        f"<td>{100 * report.prediction_counts.get(c, 0) / total:.1f}%</td></tr>"
        for c in classes
    )
    thresholds = ", ".join(f"{k} = {v:g}" for k, v in report.thresholds.items())
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{e(title)}</title>
<style>body{{font:14px system-ui,sans-serif;margin:24px;color:#1d2330}}table{{border-collapse:collapse;margin:12px 0}}
td,th{{border:1px solid #d5d9e4;padding:4px 8px;text-align:right}}td:first-child,th:first-child{{text-align:left}}
tr.drift{{background:#fdecea}}.verdict{{font-size:22px;font-weight:700;color:{color}}}</style></head>
<body><h1>{e(title)}</h1>
<p class="verdict">{verdict}</p>
<p>{report.n} current clips compared with {report.n_reference} reference clips;
{100 * report.feature_drift_share:.0f}% of descriptors drifted. Thresholds: {e(thresholds)}.</p>
<h2>Reasons</h2><ul>{reasons}</ul>
<h2>Tests</h2><p>p-values adjusted with Benjamini–Hochberg over all tests; effect is PSI for descriptors and
predictions, the mean drop of top-class probability for confidence.</p>
<table><tr><th>name</th><th>kind</th><th>test</th><th>statistic</th><th>p</th><th>p (BH)</th><th>effect</th>
<th>reference mean</th><th>current mean</th><th>drift</th></tr>{''.join(rows)}</table>
<h2>Predicted classes</h2><table><tr><th>class</th><th>reference</th><th>current</th></tr>{pred_rows}</table>
</body></html>
"""

"""One-look summary of a dataset: classes, groups, durations, rates, bad files, duplicates."""

from __future__ import annotations

import numpy as np
import pandas as pd

from earmark.sources._splits import _fold_order, find_duplicates

__all__ = ["summarize"]


def _stats(values: pd.Series) -> dict[str, float]:
    v = values.astype(float).to_numpy()
    if v.size == 0:
        return {}
    return {
        "min": float(v.min()),
        "median": float(np.median(v)),
        "mean": float(v.mean()),
        "max": float(v.max()),
        "total": float(v.sum()),
    }


def summarize(df: pd.DataFrame, *, duplicates: bool = True, workers: int | None = None) -> dict[str, object]:
    """Summarise a table from :func:`load_dataset` as one JSON-able dict.

    Keys: ``n_files`` (files listed by the source), ``n_ok`` (readable), ``n_unlabelled``
    (readable files without a label: all of them when the table has no ``label`` column, as for
    a folder read with ``allow_unlabelled=True``), ``classes`` (label → count), ``groups`` (group → count), ``folds`` (fold → count, when the table has folds), ``duration`` (seconds: min,
    median, mean, max, total), ``sample_rates`` (rate → count), ``channels``, ``balance``
    (smallest / largest class), ``errors`` (list of ``{path, reason}``), ``duplicates`` (lists
    of paths whose decoded audio is identical; ``None`` with ``duplicates=False``: not looked for).

    Example
    -------
    >>> summary = summarize(load_dataset("../shared/data/fsdd/manifest.csv"))  # doctest: +SKIP
    >>> summary["n_files"], len(summary["classes"])  # doctest: +SKIP
    (2500, 10)
    >>> summarize(load_dataset("unsorted/", allow_unlabelled=True))["n_unlabelled"]  # doctest: +SKIP
    3
    """
    errors = list(df.attrs.get("skipped", []))
    out: dict[str, object] = {
        "source": df.attrs.get("source"),
        "n_files": int(df.attrs.get("n_listed", len(df) + len(errors))),
        "n_ok": len(df),
        "n_errors": len(errors),
    }
    if "label" in df.columns:
        counts = df["label"].dropna().astype(str).value_counts()
        out["classes"] = {k: int(counts[k]) for k in sorted(counts.index, key=_natural)}
        out["balance"] = float(counts.min() / counts.max()) if len(counts) else None
        out["n_unlabelled"] = int(df["label"].isna().sum())
    else:
        out["classes"] = {}
        out["n_unlabelled"] = len(df)
    if "group" in df.columns:
        g = df["group"].dropna().astype(str).value_counts()
        out["groups"] = {k: int(g[k]) for k in sorted(g.index, key=_natural)}
    if "fold" in df.columns:
        f = df["fold"].dropna().value_counts()
        out["folds"] = {str(k): int(f[k]) for k in sorted(f.index, key=_fold_order)}
    if "duration" in df.columns:
        out["duration"] = _stats(df["duration"])
    if "sample_rate" in df.columns:
        r = df["sample_rate"].value_counts()
        out["sample_rates"] = {str(k): int(r[k]) for k in sorted(r.index)}
    if "channels" in df.columns:
        c = df["channels"].value_counts()
        out["channels"] = {str(k): int(c[k]) for k in sorted(c.index)}
    out["errors"] = errors
    # None: not looked for (duplicates=False); [] : looked for, none found
    out["duplicates"] = (find_duplicates(df["path"].tolist(), workers=workers) if len(df) else []) if duplicates else None
    return out


def _natural(key: str) -> tuple[int, float | str]:
    try:
        return (0, float(key))
    except ValueError:
        return (1, key)

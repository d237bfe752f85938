"""Result objects of an evaluation, a cross-validation and a model comparison.

They hold plain data (metrics dicts, a predictions table) and turn into one JSON-able dict;
computing them from a model is :mod:`earmark.evaluation._run`'s job.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from earmark.errors import ParameterError
from earmark.evaluation._metrics import calibration_curve, compute_metrics

__all__ = [
    "SUMMARY_METRICS",
    "CVResult",
    "EvaluationResult",
    "FoldResult",
    "Leaderboard",
    "evaluate_predictions",
    "to_json",
]

#: Scalar metrics summarised across folds (those present are used).
SUMMARY_METRICS = (
    "accuracy",
    "balanced_accuracy",
    "macro_f1",
    "micro_f1",
    "weighted_f1",
    "log_loss",
    "ece",
    "roc_auc",
    "pr_auc",
    "mae",
    "rmse",
    "r2",
)

#: Metrics where lower is better (the worst fold is the one with the highest value).
LOWER_IS_BETTER = frozenset({"log_loss", "ece", "mae", "rmse", "median_ae", "max_error"})


def _clean(value: Any) -> Any:
    """Recursively turn numpy scalars into Python ones and NaN/inf into None."""
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, np.ndarray):
        return _clean(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if hasattr(value, "to_dict"):  # a Preset, a config dataclass
        return _clean(value.to_dict())
    return str(value)  # a Path, an enum…


def to_json(obj: Mapping[str, Any], path: str | Path | None = None) -> str:
    """Serialise a result dict as strict JSON (no NaN) and optionally write it to ``path``.

    Parameters
    ----------
    obj : mapping
        A result's ``to_dict()``.
    path : str or Path, optional
        File to write (parent folders are created).

    Returns
    -------
    str
        The JSON text.

    Examples
    --------
    >>> to_json({"accuracy": np.float64(0.5), "r2": float("nan")})
    '{\\n  "accuracy": 0.5,\\n  "r2": null\\n}'
    """
    text = json.dumps(_clean(obj), indent=2, allow_nan=False)
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n", encoding="utf-8")
    return text


@dataclass
class EvaluationResult:
    """Scores of one model on one dataset.

    Attributes
    ----------
    metrics : dict
        :func:`compute_metrics`'s result on the clips that could be scored.
    predictions : DataFrame
        One row per scored clip: ``path``, ``true``, ``predicted``, ``correct``,
        ``confidence`` and one ``proba:<class>`` column per class (classification), plus the
        dataset's ``group``/``fold`` columns when present.
    skipped : list of dict
        Files left out (``{"path", "reason"}``): unreadable when listed or when decoded.
    task : str
        ``"classification"`` or ``"regression"``.
    classes : list or None
        The model's classes, in the order of the probability columns.
    info : dict
        Free context: model name, source, timings.
    features : ndarray or None
        Feature vectors (or embeddings) of the scored rows, shape (n_scored, n_dims), for plots.
    """

    metrics: dict[str, Any]
    predictions: pd.DataFrame
    skipped: list[dict[str, str]] = field(default_factory=list)
    task: str = "classification"
    classes: list | None = None
    info: dict[str, Any] = field(default_factory=dict)
    features: np.ndarray | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        key = "accuracy" if self.task == "classification" else "mae"
        value = self.metrics.get(key)
        shown = f", {key}={value:.4g}" if isinstance(value, (int, float)) else ""
        return (f"EvaluationResult(task={self.task!r}, n={self.metrics.get('n', 0)}{shown}, "
                f"skipped={len(self.skipped)})")

    @property
    def proba(self) -> np.ndarray | None:
        """Class probabilities, shape (n_scored, n_classes), or ``None``."""
        cols = [f"proba:{c}" for c in self.classes or []]
        if not cols or not all(c in self.predictions.columns for c in cols):
            return None
        return self.predictions[cols].to_numpy(dtype=np.float64)

    @property
    def misclassified(self) -> pd.DataFrame:
        """Wrongly predicted clips, most confident mistakes first (classification only)."""
        if self.task != "classification":
            return self.predictions.iloc[0:0]
        wrong = self.predictions[~self.predictions["correct"]]
        if "confidence" not in wrong.columns:  # no probabilities: keep the dataset's order
            return wrong
        return wrong.sort_values("confidence", ascending=False, kind="stable")

    def calibration(self, *, n_bins: int = 15) -> dict[str, list] | None:
        """Reliability curve of the predictions (``None`` without probabilities).

        Examples
        --------
        >>> res = evaluate_predictions(pd.DataFrame({"path": ["a", "b"], "label": ["x", "y"]}),
        ...                            ["x", "x"], proba=[[.9, .1], [.6, .4]], classes=["x", "y"])
        >>> res.calibration(n_bins=2)["count"]
        [0, 2]
        """
        if "confidence" not in self.predictions or self.proba is None:
            return None
        return calibration_curve(
            self.predictions["correct"].to_numpy(),
            self.predictions["confidence"].to_numpy(),
            n_bins=n_bins,
        )

    def to_dict(self) -> dict[str, Any]:
        """One JSON-able object: the metrics at top level, plus ``skipped`` and ``info``.

        Examples
        --------
        >>> res = evaluate_predictions(pd.DataFrame({"path": ["a"], "label": ["x"]}), ["x"])
        >>> res.to_dict()["accuracy"], res.to_dict()["n_skipped"]
        (1.0, 0)
        """
        return _clean(
            {**self.metrics, "n_skipped": len(self.skipped), "skipped": self.skipped, **self.info}
        )


def _label_strings(values: Sequence[Any]) -> np.ndarray:
    return np.asarray([str(v) for v in values], dtype=object)


def evaluate_predictions(
    table: pd.DataFrame,
    y_pred: Sequence[Any],
    *,
    proba: Any = None,
    classes: Sequence[Any] | None = None,
    task: str = "classification",
    target: str = "label",
    skipped: Sequence[Mapping[str, str]] = (),
    info: Mapping[str, Any] | None = None,
) -> EvaluationResult:
    """Score predictions made for the rows of a dataset table.

    Parameters
    ----------
    table : DataFrame
        The scored rows (from :func:`earmark.sources.load_dataset`), with ``path`` and the
        ``target`` column.
    y_pred : sequence, shape (n_rows,)
        Predicted label or value of each row.
    proba : array-like, shape (n_rows, n_classes), optional
        Class probabilities, columns in the order of ``classes``.
    classes : sequence, optional
        The model's classes (labels are compared as strings).
    task : {"classification", "regression"}, default "classification"
        What was predicted.
    target : str, default "label"
        Column of ``table`` holding the truth.
    skipped : sequence of dict, optional
        Files left out before scoring (``{"path", "reason"}``).
    info : mapping, optional
        Context kept in :attr:`EvaluationResult.info` (model name, source…).

    Returns
    -------
    EvaluationResult

    Examples
    --------
    >>> t = pd.DataFrame({"path": ["a.wav", "b.wav"], "label": ["yes", "no"]})
    >>> evaluate_predictions(t, ["yes", "yes"]).metrics["accuracy"]
    0.5
    """
    if target not in table.columns:
        raise ParameterError(
            f"The dataset has no {target!r} column to score against (columns: "
            f"{list(table.columns)}). Pass the right target/label column."
        )
    if len(y_pred) != len(table):
        raise ParameterError(
            f"Got {len(y_pred)} predictions for {len(table)} rows; they must match one to one."
        )
    keep = [c for c in ("path", "group", "fold") if c in table.columns]
    out = table[keep].reset_index(drop=True).copy()
    if task == "regression":
        truth = table[target].to_numpy(dtype=np.float64)
        pred = np.asarray(y_pred, dtype=np.float64)
        metrics = compute_metrics(truth, pred, task="regression")
        out["true"] = truth
        out["predicted"] = pred
        out["error"] = pred - truth
        return EvaluationResult(metrics, out, list(skipped), "regression", None, dict(info or {}))

    truth = _label_strings(table[target].tolist())
    pred = _label_strings(list(y_pred))
    class_list = [str(c) for c in classes] if classes is not None else None
    metrics = compute_metrics(truth, pred, proba, classes=class_list, task="classification")
    class_list = metrics["classes"]
    out["true"] = truth
    out["predicted"] = pred
    out["correct"] = truth == pred
    if proba is not None:
        prob = np.asarray(proba, dtype=np.float64)
        index = {c: i for i, c in enumerate(class_list)}
        out["confidence"] = prob[np.arange(len(pred)), [index[p] for p in pred]]
        for i, c in enumerate(class_list):
            out[f"proba:{c}"] = prob[:, i]
    return EvaluationResult(
        metrics, out, list(skipped), "classification", class_list, dict(info or {})
    )


@dataclass
class FoldResult:
    """One cross-validation fold: what was held out, how long it took, and its scores.

    ``train_seconds`` is the fitting alone; ``feature_seconds`` what training spent on features
    (decoding and extraction, or reading them from the feature store: the first fold usually
    computes every clip's features for all the folds).
    """

    name: str
    n_train: int
    n_test: int
    test_groups: list[str]
    result: EvaluationResult
    train_seconds: float
    predict_seconds: float
    history: list[dict[str, Any]] = field(default_factory=list)
    feature_seconds: float = 0.0
    n_extra_train: int = 0  # extra training clips (extra_train, synthetic voices): trained on, never scored

    def to_dict(self) -> dict[str, Any]:
        """The fold's JSON shape: the evaluation's keys plus fold bookkeeping."""
        return {
            "fold": self.name,
            "n_train": self.n_train,
            "n_extra_train": self.n_extra_train,
            "n_test": self.n_test,
            "test_groups": self.test_groups,
            "train_seconds": self.train_seconds,
            "feature_seconds": self.feature_seconds,
            "predict_seconds": self.predict_seconds,
            **self.result.to_dict(),
        }


def summarize_folds(
    folds: Sequence[Mapping[str, Any]], *, metrics: Sequence[str] = SUMMARY_METRICS
) -> dict[str, dict[str, float]]:
    """Mean, standard deviation (ddof=0), min and max of each scalar metric across folds.

    Parameters
    ----------
    folds : sequence of dict
        Metrics dicts of the folds.
    metrics : sequence of str
        Which keys to summarise (those absent or ``None`` in every fold are left out).

    Returns
    -------
    dict
        {metric: {"mean", "std", "min", "max", "n_folds"}}.

    Examples
    --------
    >>> summarize_folds([{"accuracy": 0.8}, {"accuracy": 1.0}])["accuracy"]["mean"]
    0.9
    """
    out: dict[str, dict[str, float]] = {}
    for key in metrics:
        values = np.array(
            [f[key] for f in folds if f.get(key) is not None], dtype=np.float64
        )
        if values.size:
            out[key] = {
                "mean": float(values.mean()),
                "std": float(values.std()),
                "min": float(values.min()),
                "max": float(values.max()),
                "n_folds": int(values.size),
            }
    return out


@dataclass
class CVResult:
    """Cross-validation of one model: per-fold scores, their spread, the worst fold.

    Attributes
    ----------
    folds : list of FoldResult
        In the order the splitter produced them.
    model : str
        Registry name of the model.
    folds_kind : str
        How folds were made (``fold``, ``group``, ``K``, ``auto``).
    pooled : EvaluationResult
        All out-of-fold predictions scored together (each clip predicted by the model that
        never saw its group).
    skipped : list of dict
        Files left out of every fold.
    info : dict
        Free context (source, seed, features).
    last_model : TrainedModel or None
        The model trained for the last fold (its training history and size are reported).
    """

    folds: list[FoldResult]
    model: str
    folds_kind: str
    pooled: EvaluationResult
    skipped: list[dict[str, str]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    last_model: Any = field(default=None, repr=False)

    def __repr__(self) -> str:
        key = self.main_metric
        spread = self.summary.get(key) if self.folds else None
        shown = (f", {key}={spread['mean']:.4g} ± {spread['std']:.2g}, worst {self.worst_fold['fold']} "
                 f"{self.worst_fold['value']:.4g}") if spread else ""
        return f"CVResult(model={self.model!r}, folds={len(self.folds)} ({self.folds_kind}){shown})"

    @property
    def task(self) -> str:
        """``"classification"`` or ``"regression"``."""
        return self.pooled.task

    @property
    def main_metric(self) -> str:
        """The metric the worst fold is judged by (accuracy, or RMSE for regressors)."""
        return "rmse" if self.task == "regression" else "accuracy"

    @property
    def summary(self) -> dict[str, dict[str, float]]:
        """{metric: {mean, std, min, max, n_folds}} across folds."""
        return summarize_folds([f.result.metrics for f in self.folds])

    @property
    def worst_fold(self) -> dict[str, Any]:
        """The fold with the lowest accuracy (highest RMSE for regressors)."""
        key = self.main_metric
        scored = [f for f in self.folds if f.result.metrics.get(key) is not None]
        pick = max if key in LOWER_IS_BETTER else min
        worst = pick(scored, key=lambda f: f.result.metrics[key])
        return {"fold": worst.name, "metric": key, "value": worst.result.metrics[key],
                "test_groups": worst.test_groups}

    def to_dict(self) -> dict[str, Any]:
        """Summary, worst fold, pooled scores and every fold in the same shape as ``evaluate``."""
        return _clean(
            {
                "model": self.model,
                "folds_kind": self.folds_kind,
                "n_folds": len(self.folds),
                "summary": self.summary,
                "worst_fold": self.worst_fold,
                "pooled": self.pooled.metrics,
                "folds": [f.to_dict() for f in self.folds],
                "n_skipped": len(self.skipped),
                "skipped": self.skipped,
                **self.info,
            }
        )


@dataclass
class Leaderboard:
    """Models × metrics on the same folds, best first.

    Attributes
    ----------
    table : DataFrame
        One row per model: mean and std of the main metrics, training time (s per fold),
        model size (bytes of the saved bundle) and inference time (ms per clip).
    results : dict
        {model name: CVResult}.
    """

    table: pd.DataFrame
    results: dict[str, CVResult]

    def __repr__(self) -> str:
        header, rows = self.display() if len(self.table) else ([], [])
        best = ", ".join(f"{r[1]} {r[2]}" for r in rows[:3])
        return f"Leaderboard({len(rows)} models, {header[2] if header else 'score'}: {best}{' …' if len(rows) > 3 else ''})"

    def display(self) -> tuple[list[str], list[list[str]]]:
        """The leaderboard as people read it (the CLI's table and the report's): rank, model, main
        metric mean ± std, second metric, worst fold, training s per fold, size, ms per clip.

        Example
        -------
        >>> header, rows = board.display()  # doctest: +SKIP
        >>> header[:3]  # doctest: +SKIP
        ['#', 'model', 'accuracy']
        """
        table = self.table
        main = "rmse" if "rmse_mean" in table.columns else "accuracy"
        second = "mae" if main == "rmse" else "macro_f1"
        header = ["#", "model", main, second, "worst fold", "train s/fold", "size", "ms/clip"]
        rows = []
        for i, row in enumerate(table.to_dict(orient="records"), start=1):
            size = row.get("model_bytes")
            rows.append([
                str(i), str(row["model"]),
                f"{row[f'{main}_mean']:.4f} ± {row[f'{main}_std']:.4f}",
                f"{row[f'{second}_mean']:.4f}" if row.get(f"{second}_mean") is not None else "—",
                _worst(row), f"{row['train_seconds']:.2f}",
                "—" if size is None or size != size else f"{size / 1024:.0f} KiB",
                f"{row['ms_per_clip']:.2f}",
            ])
        return header, rows

    def to_dict(self) -> dict[str, Any]:
        """``{"leaderboard": [row, …], "models": {name: cv dict}}``."""
        return _clean(
            {
                "leaderboard": self.table.to_dict(orient="records"),
                "models": {k: v.to_dict() for k, v in self.results.items()},
            }
        )


def _worst(row: Mapping[str, Any]) -> str:
    """A leaderboard row's worst fold as shown: its name and its main metric."""
    value = row.get("worst_fold_value")
    if value is None or value != value:
        return str(row["worst_fold"])
    return f"{row['worst_fold']} ({value:.3f})"

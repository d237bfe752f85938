"""Scores of a classifier or regressor from labels, predictions and probabilities.

Every function here is pure: arrays in, plain Python values out (floats, lists, dicts) so the
result serialises to JSON as it is. Undefined scores (an AUC with one class present, R² of one
value) are ``None``, never ``NaN``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn import metrics as skm

from earmark.errors import ParameterError

__all__ = [
    "TASKS",
    "calibration_curve",
    "compute_metrics",
    "expected_calibration_error",
]

#: The tasks :func:`compute_metrics` knows.
TASKS = ("classification", "regression")

#: The ``k`` of the top-k accuracies reported (only those smaller than the number of classes).
TOP_K = (2, 3, 5)

#: Clipping of probabilities before the log loss, so a confident mistake costs a finite amount.
_EPS = 1e-15


def _finite_or_none(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _as_labels(values: Any, name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ParameterError(
            f"The {name!r} parameter of compute_metrics must be one-dimensional (one label per "
            f"clip). Got shape {array.shape} instead."
        )
    return array


def _resolve_classes(y_true: np.ndarray, y_pred: np.ndarray, classes: Sequence | None) -> list:
    if classes is None:
        return sorted(set(y_true.tolist()) | set(y_pred.tolist()), key=lambda v: (str(type(v)), v))
    classes = list(classes)
    if len(set(classes)) != len(classes):
        raise ParameterError(
            f"The 'classes' parameter of compute_metrics must not repeat a class. Got {classes}."
        )
    known = set(classes)
    unknown = sorted({str(v) for v in (*y_true.tolist(), *y_pred.tolist()) if v not in known})
    if unknown:
        raise ParameterError(
            f"Labels {unknown[:5]} are not in the 'classes' parameter of compute_metrics "
            f"({classes[:10]}{'…' if len(classes) > 10 else ''}). Pass every class the model "
            "knows, in the model's order, or leave 'classes' out."
        )
    return classes


def _check_proba(proba: Any, n: int, n_classes: int) -> np.ndarray:
    proba = np.asarray(proba, dtype=np.float64)
    if proba.ndim != 2 or proba.shape != (n, n_classes):
        raise ParameterError(
            "The 'proba' parameter of compute_metrics must have shape (n_clips, n_classes) = "
            f"({n}, {n_classes}), columns in the order of 'classes'. Got {proba.shape} instead."
        )
    if not np.all(np.isfinite(proba)) or proba.min() < -1e-6:
        raise ParameterError(
            "The 'proba' parameter of compute_metrics must hold finite non-negative "
            "probabilities. Got NaN, infinite or negative values."
        )
    return proba


def calibration_curve(
    correct: np.ndarray, confidence: np.ndarray, *, n_bins: int = 15
) -> dict[str, list]:
    """Bin predictions by confidence and compare confidence with accuracy in each bin.

    Parameters
    ----------
    correct : array of bool, shape (n,)
        Whether each prediction was right.
    confidence : array of float, shape (n,)
        The probability the model gave its predicted class, in [0, 1].
    n_bins : int, default 15
        Number of equal-width bins over [0, 1].

    Returns
    -------
    dict
        ``edges`` (n_bins + 1 floats), and per bin ``accuracy``, ``confidence`` (means, ``None``
        for an empty bin) and ``count``.

    Examples
    --------
    >>> curve = calibration_curve(np.array([True, False]), np.array([0.9, 0.6]), n_bins=2)
    >>> curve["count"]
    [0, 2]
    """
    if not isinstance(n_bins, int | np.integer) or n_bins < 1:
        raise ParameterError(
            f"The 'n_bins' parameter must be an int >= 1. Got {n_bins!r} instead."
        )
    correct = np.asarray(correct, dtype=bool)
    confidence = np.clip(np.asarray(confidence, dtype=np.float64), 0.0, 1.0)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # right-closed bins (a, b], with 0 in the first bin
    index = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, n_bins - 1)
    accuracy: list[float | None] = []
    mean_conf: list[float | None] = []
    count: list[int] = []
    for b in range(n_bins):
        mask = index == b
        count.append(int(mask.sum()))
        accuracy.append(float(correct[mask].mean()) if mask.any() else None)
        mean_conf.append(float(confidence[mask].mean()) if mask.any() else None)
    return {"edges": edges.tolist(), "accuracy": accuracy, "confidence": mean_conf, "count": count}


def expected_calibration_error(
    correct: np.ndarray, confidence: np.ndarray, *, n_bins: int = 15
) -> float:
    """Expected calibration error: the count-weighted mean gap between confidence and accuracy.

    Parameters
    ----------
    correct : array of bool, shape (n,)
        Whether each prediction was right.
    confidence : array of float, shape (n,)
        The probability given to the predicted class.
    n_bins : int, default 15
        Number of equal-width confidence bins.

    Returns
    -------
    float
        In [0, 1]; 0 for a perfectly calibrated model.

    Examples
    --------
    >>> expected_calibration_error(np.array([True, True]), np.array([1.0, 1.0]))
    0.0
    """
    curve = calibration_curve(correct, confidence, n_bins=n_bins)
    n = sum(curve["count"])
    if n == 0:
        return 0.0
    gap = sum(
        c * abs(a - m)
        for c, a, m in zip(curve["count"], curve["accuracy"], curve["confidence"], strict=True)
        if c
    )
    return float(gap / n)


def _regression_metrics(y_true: Any, y_pred: Any) -> dict[str, Any]:
    try:
        t = np.asarray(y_true, dtype=np.float64).ravel()
        p = np.asarray(y_pred, dtype=np.float64).ravel()
    except (TypeError, ValueError) as exc:
        raise ParameterError(
            "compute_metrics(task='regression') needs numeric 'y_true' and 'y_pred'. "
            f"Got a value that is not a number ({exc}). Use task='classification' for labels."
        ) from exc
    if t.shape != p.shape:
        raise ParameterError(
            f"'y_true' and 'y_pred' must have the same length. Got {t.size} and {p.size}."
        )
    if t.size == 0:
        raise ParameterError("compute_metrics needs at least one clip. Got empty 'y_true'.")
    if not (np.all(np.isfinite(t)) and np.all(np.isfinite(p))):
        raise ParameterError("compute_metrics(task='regression') got NaN or infinite values.")
    err = p - t
    r2 = skm.r2_score(t, p) if t.size > 1 and np.ptp(t) > 0 else float("nan")
    return {
        "task": "regression",
        "n": int(t.size),
        "mae": float(np.mean(np.abs(err))),
        "rmse": float(np.sqrt(np.mean(err**2))),
        "median_ae": float(np.median(np.abs(err))),
        "max_error": float(np.max(np.abs(err))),
        "bias": float(np.mean(err)),
        "r2": _finite_or_none(r2),
    }


def compute_metrics(
    y_true: Any,
    y_pred: Any,
    proba: Any = None,
    *,
    classes: Sequence | None = None,
    task: str = "classification",
    n_bins: int = 15,
) -> dict[str, Any]:
    """Score predictions against the truth; every value is JSON-ready.

    Parameters
    ----------
    y_true : array-like, shape (n,)
        True labels (classification) or target values (regression).
    y_pred : array-like, shape (n,)
        Predicted labels or values.
    proba : array-like, shape (n, n_classes), optional
        Class probabilities, columns in the order of ``classes``. Enables ``log_loss``,
        ``top_k_accuracy``, ``ece`` and ``roc_auc`` (for two classes, with ``pr_auc``: the
        positive class is ``classes[1]``; for more, the macro one-vs-rest ROC AUC).
    classes : sequence, optional
        Every class, in the model's order (it orders ``confusion`` and ``proba``'s columns).
        Defaults to the sorted union of ``y_true`` and ``y_pred``; required with ``proba``
        unless that union already lists every class.
    task : {"classification", "regression"}, default "classification"
        What was predicted.
    n_bins : int, default 15
        Confidence bins of the expected calibration error.

    Returns
    -------
    dict
        Classification: ``task``, ``n``, ``classes``, ``accuracy``, ``balanced_accuracy``,
        ``macro_f1``, ``micro_f1``, ``weighted_f1``, ``macro_precision``, ``macro_recall`` (the
        macro means are over the classes that occur in ``y_true`` or ``y_pred``, as scikit-learn's),
        ``per_class`` ({label: {precision, recall, f1, support}}), ``confusion`` (rows = true,
        columns = predicted, ordered by ``classes``) and, with ``proba``, ``log_loss``,
        ``top_k_accuracy`` ({"k": value}), ``ece``, ``mean_confidence``, ``roc_auc``,
        ``pr_auc`` (average precision) and, for two classes, ``positive_class``. Regression: ``task``, ``n``, ``mae``, ``rmse``, ``r2``, ``median_ae``,
        ``max_error``, ``bias``.

    Raises
    ------
    ParameterError
        Lengths differ, no clips, a label outside ``classes``, or ``proba`` of the wrong shape.

    Examples
    --------
    >>> m = compute_metrics(["a", "b", "b"], ["a", "b", "a"])
    >>> round(m["accuracy"], 3), m["confusion"]
    (0.667, [[1, 0], [1, 1]])
    """
    if task not in TASKS:
        raise ParameterError(
            f"The 'task' parameter of compute_metrics must be one of {list(TASKS)}. "
            f"Got {task!r} instead."
        )
    if task == "regression":
        return _regression_metrics(y_true, y_pred)

    t = _as_labels(y_true, "y_true")
    p = _as_labels(y_pred, "y_pred")
    if t.shape != p.shape:
        raise ParameterError(
            f"'y_true' and 'y_pred' must have the same length. Got {t.size} and {p.size}."
        )
    if t.size == 0:
        raise ParameterError("compute_metrics needs at least one clip. Got empty 'y_true'.")
    classes = _resolve_classes(t, p, classes)
    labels = np.arange(len(classes))
    index = {c: i for i, c in enumerate(classes)}
    ti = np.array([index[v] for v in t.tolist()], dtype=np.int64)
    pi = np.array([index[v] for v in p.tolist()], dtype=np.int64)

    precision, recall, f1, support = skm.precision_recall_fscore_support(
        ti, pi, labels=labels, zero_division=0
    )
    present = support > 0
    # macro averages over the classes that occur (true or predicted), as scikit-learn's own: a
    # class the model knows but the test set lacks, and that is never predicted, has no F1 to count
    occur = present | (np.bincount(pi, minlength=len(classes)) > 0)
    out: dict[str, Any] = {
        "task": "classification",
        "n": int(t.size),
        "classes": [c if isinstance(c, str) else _json_scalar(c) for c in classes],
        "accuracy": float(np.mean(ti == pi)),
        # mean recall over the classes present in y_true (sklearn's balanced_accuracy_score)
        "balanced_accuracy": float(np.mean(recall[present])),
        "macro_f1": float(np.mean(f1[occur])),
        "micro_f1": float(skm.f1_score(ti, pi, labels=labels, average="micro", zero_division=0)),
        "weighted_f1": float(
            skm.f1_score(ti, pi, labels=labels, average="weighted", zero_division=0)
        ),
        "macro_precision": float(np.mean(precision[occur])),
        "macro_recall": float(np.mean(recall[occur])),
        "per_class": {
            str(c): {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, c in enumerate(classes)
        },
        "confusion": skm.confusion_matrix(ti, pi, labels=labels).tolist(),
    }
    if proba is None:
        return out

    prob = _check_proba(proba, t.size, len(classes))
    row_sum = prob.sum(axis=1, keepdims=True)
    prob = np.where(row_sum > 0, prob / np.where(row_sum > 0, row_sum, 1.0), 1.0 / len(classes))
    true_p = np.clip(prob[np.arange(t.size), ti], _EPS, 1.0)
    out["log_loss"] = float(-np.mean(np.log(true_p))) + 0.0  # + 0.0: never -0.0 for a perfect score
    # rank of the true class, ties counted against it: a true class tied with others (a kNN's
    # zeros, a one-hot answer for another class) is not "in the top k" by the luck of the order
    p_true = prob[np.arange(t.size), ti][:, None]
    rank = (prob > p_true).sum(axis=1) + (prob == p_true).sum(axis=1) - 1
    out["top_k_accuracy"] = {
        str(k): float(np.mean(rank < k)) for k in TOP_K if k < len(classes)
    }
    confidence = prob.max(axis=1)
    correct = prob.argmax(axis=1) == ti
    out["ece"] = expected_calibration_error(correct, confidence, n_bins=n_bins)
    out["mean_confidence"] = float(confidence.mean())
    if len(classes) == 2:
        out["positive_class"] = str(classes[1])  # the class ROC-AUC and PR-AUC score as positive
        positive = ti == 1
        if positive.all() or not positive.any():
            out["roc_auc"] = out["pr_auc"] = None
        else:
            out["roc_auc"] = float(skm.roc_auc_score(positive, prob[:, 1]))
            out["pr_auc"] = float(skm.average_precision_score(positive, prob[:, 1]))
    elif present.all():
        out["roc_auc"] = float(
            skm.roc_auc_score(ti, prob, multi_class="ovr", average="macro", labels=labels)
        )
    else:
        out["roc_auc"] = None
    return out


def _json_scalar(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return value

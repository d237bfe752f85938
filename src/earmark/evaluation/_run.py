"""Scoring trained models: evaluate on a dataset, cross-validate, compare models on the same folds.

These functions call the training and feature layers below them and return result objects;
they print nothing and write nothing (``compare`` measures model size in a temporary folder).
"""

from __future__ import annotations

import os
import re
import tempfile
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from earmark.errors import DatasetError, EarmarkWarning, ParameterError
from earmark.evaluation._results import (
    LOWER_IS_BETTER,
    CVResult,
    EvaluationResult,
    FoldResult,
    Leaderboard,
    evaluate_predictions,
)

__all__ = ["UnlearntClassWarning", "compare", "cross_validate", "evaluate", "load_table", "predict_table"]


class UnlearntClassWarning(EarmarkWarning):
    """A cross-validation test fold holds a class its training folds lack (scored as errors)."""


def load_table(
    dataset: Any,
    *,
    label_column: str | None = None,
    group_column: str | None = None,
    pattern: str | None = None,
) -> pd.DataFrame:
    """A dataset table: a DataFrame as given, anything else through ``load_dataset``.

    Parameters
    ----------
    dataset : DataFrame, str or Path
        A table from :func:`earmark.sources.load_dataset`, or a source it accepts (folder,
        manifest, catalog name).
    label_column, group_column, pattern : str, optional
        Passed to :func:`earmark.sources.load_dataset`.

    Returns
    -------
    DataFrame

    Examples
    --------
    >>> load_table(pd.DataFrame({"path": ["a.wav"], "label": ["x"]})).shape
    (1, 2)
    """
    if isinstance(dataset, pd.DataFrame):
        return dataset
    from earmark.sources import load_dataset

    return load_dataset(dataset, label_column=label_column, group_column=group_column,
                        pattern=pattern)


def _target_of(trained: Any, target: str | None) -> str:
    if target is not None:
        return target
    for source in (trained, getattr(trained, "config", None)):
        value = getattr(source, "target", None)
        if isinstance(value, str):
            return value
        if isinstance(source, Mapping) and isinstance(source.get("target"), str):
            return source["target"]
    return "label"


def predict_table(
    trained: Any,
    table: pd.DataFrame,
    *,
    workers: int | None = None,
    cache: str | Path | None = None,
) -> dict[str, Any]:
    """Predict every row of a table, keeping apart the rows whose audio cannot be decoded.

    Parameters
    ----------
    trained : TrainedModel
        From :func:`earmark.train` or :func:`earmark.load_model`.
    table : DataFrame
        Rows with a ``path`` column.
    workers : int, optional
        Processes extracting features (default: all cores).
    cache : str or Path, optional
        Feature store folder (:func:`earmark.features.extract`).

    Returns
    -------
    dict
        ``positions`` (int array of the predicted rows), ``predicted`` (labels or values),
        ``proba`` (array or ``None``), ``errors`` (list of ``{"path", "reason"}``), ``X``
        (the feature matrix or embeddings of the predicted rows, for plots, or ``None``) and
        ``seconds`` (wall time of feature extraction plus prediction).

    Examples
    --------
    >>> out = predict_table(trained, table)  # doctest: +SKIP
    >>> out["predicted"][:3]  # doctest: +SKIP
    array(['0', '0', '1'], dtype=object)
    """
    from earmark.features import extract

    start = time.perf_counter()
    feats = extract(table, trained.preset, workers=workers, cache=cache)
    positions = np.asarray(feats.rows, dtype=np.int64)
    X = feats.X
    proba = None
    if trained.task == "classification" and len(positions):
        classes = [str(c) for c in trained.classes]
        proba = _proba(trained, X, classes)
        predicted = np.asarray(classes, dtype=object)[proba.argmax(axis=1)]
    elif len(positions):
        predict = getattr(trained, "predict_features", None) or trained.estimator.predict
        predicted = np.asarray(predict(X), dtype=np.float64)
    else:
        predicted = np.asarray([], dtype=object)
    seconds = time.perf_counter() - start
    errors = [_error_dict(e) for e in feats.errors]
    return {"positions": positions, "predicted": predicted, "proba": proba, "errors": errors,
            "X": X, "seconds": seconds}


def _proba(trained: Any, X: Any, classes: list[str]) -> np.ndarray:
    """Class probabilities in the model's class order."""
    own = getattr(trained, "predict_proba_features", None)
    if own is not None:
        return np.asarray(own(X), dtype=np.float64)
    estimator = trained.estimator
    proba = np.asarray(estimator.predict_proba(X), dtype=np.float64)
    names = [str(c) for c in getattr(estimator, "classes_", classes)]
    if names != classes and sorted(names) == sorted(classes):
        proba = proba[:, [names.index(c) for c in classes]]
    return proba


def _error_dict(error: Any) -> dict[str, str]:
    if isinstance(error, Mapping):
        return {"path": str(error.get("path", "")), "reason": str(error.get("reason", error))}
    return {"path": str(getattr(error, "path", "")), "reason": str(getattr(error, "reason", error))}


def evaluate(
    trained: Any,
    dataset: Any,
    *,
    target: str | None = None,
    label_column: str | None = None,
    group_column: str | None = None,
    workers: int | None = None,
    cache: str | Path | None = None,
    unknown_labels: str = "error",
) -> EvaluationResult:
    """Score a trained model on a dataset; unreadable files are listed and left out.

    Parameters
    ----------
    trained : TrainedModel
        From :func:`earmark.train` or :func:`earmark.load_model`.
    dataset : DataFrame, str or Path
        A table from :func:`earmark.sources.load_dataset` or a source it reads.
    target : str, optional
        Column holding the truth (default: the model's target, else ``label``).
    label_column, group_column : str, optional
        Passed to :func:`earmark.sources.load_dataset` when ``dataset`` is a source.
    workers : int, optional
        Processes extracting features (default: all cores).
    cache : str or Path, optional
        Feature store folder, shared with training to avoid recomputing features.
    unknown_labels : {"error", "wrong"}
        Clips whose label the model never learnt: refuse the dataset (a
        :class:`~earmark.errors.DatasetError` naming them), or score them as errors (the class
        is added to the metrics, with probability 0; cross-validation does this for a test
        fold holding a class its training folds lack).

    Returns
    -------
    EvaluationResult
        Metrics, per-row predictions, skipped files; ``info`` holds ``predict_seconds`` and
        ``ms_per_clip``.

    Raises
    ------
    DatasetError
        Not one file of the dataset could be scored.

    Examples
    --------
    >>> import earmark
    >>> model = earmark.load_model("models/digits")  # doctest: +SKIP
    >>> evaluate(model, "../shared/data/fsdd/manifest.csv").metrics["accuracy"]  # doctest: +SKIP
    0.97
    """
    if isinstance(trained, (str, os.PathLike)):  # a bundle's path, as explain and embed take it
        from earmark.bundle import load_model

        trained = load_model(trained)
    if not hasattr(trained, "task") or not hasattr(trained, "preset"):
        raise ParameterError(f"evaluate takes a trained model (earmark.train, earmark.load_model) or a bundle path, "
                             f"not a {type(trained).__name__}.")
    table = load_table(dataset, label_column=label_column, group_column=group_column)
    target = _target_of(trained, target)
    if target not in table.columns:
        raise DatasetError(
            f"The dataset has no {target!r} column to score the model against (columns: "
            f"{list(table.columns)}). Pass --label-column/--target naming the truth column."
        )
    skipped = list(table.attrs.get("skipped", []))
    labelled = table[target].notna().to_numpy()
    if not labelled.all():
        missing = table.loc[~labelled, "path"].tolist()
        # readable files that cannot be scored: listed with the skipped, marked apart from unreadable ones
        skipped += [{"path": str(p), "reason": f"no {target!r} value", "kind": "no_value"} for p in missing]
        table = table[labelled]
    if unknown_labels not in ("error", "wrong"):
        raise ParameterError(f"The 'unknown_labels' parameter of evaluate must be 'error' or 'wrong'. "
                             f"Got {unknown_labels!r} instead.")
    if len(table) == 0:
        raise DatasetError(f"No clip of the dataset has a {target!r} value to score the model against; fill "
                           "that column in (or name the truth column with --target / --label-column).")
    if trained.task == "regression":
        values = pd.to_numeric(table[target], errors="coerce")
        bad = values.isna().to_numpy()
        if bad.all():
            raise ParameterError(f"The model is a regressor; column {target!r} holds no numbers (e.g. "
                                 f"{table[target].iloc[0]!r}), so there is nothing to measure its errors against. "
                                 "Pass the numeric column it predicts (--target pitch).")
        if bad.any():
            raise DatasetError(f"Column {target!r} holds {int(bad.sum())} value(s) that are not numbers (e.g. "
                               f"{table.loc[bad, target].iloc[0]!r} for {table.loc[bad, 'path'].iloc[0]}); fix or "
                               "drop those rows.")
    classes = list(trained.classes) if trained.task == "classification" else None
    unknown: list[str] = []
    if trained.task == "classification":
        known = {str(c) for c in trained.classes}
        unknown = sorted(set(table[target].astype(str)) - known)
        if unknown and unknown_labels == "wrong":
            classes = [*classes, *unknown]
        elif unknown:
            raise DatasetError(
                f"The dataset has labels the model never learnt: {unknown[:10]}. The model "
                f"knows {sorted(known)[:20]}. Evaluate on data with the model's classes, or score those clips "
                "as mistakes (unknown_labels='wrong', earmark evaluate --unknown-labels wrong)."
            )
    out = predict_table(trained, table, workers=workers, cache=cache)
    skipped += out["errors"]
    if len(out["positions"]) == 0:
        raise DatasetError(
            f"None of the {len(table)} files could be scored (first errors: "
            f"{skipped[:3]}). Check the files decode with `earmark info SOURCE`."
        )
    scored = table.iloc[out["positions"]]
    n = len(scored)
    config = getattr(trained, "config", None)
    info = {
        "model": config.get("model") if isinstance(config, Mapping) else None,
        "source": table.attrs.get("source"),
        "target": target,
        "predict_seconds": out["seconds"],
        "ms_per_clip": 1000.0 * out["seconds"] / n,
        "training_files": _training_overlap(trained, [str(p) for p in scored["path"]]),
        "training_groups": _group_overlap(trained, scored),
    }
    proba = out["proba"]
    if proba is not None and unknown and classes is not None and len(classes) > np.shape(proba)[1]:
        proba = np.hstack([np.asarray(proba), np.zeros((len(proba), len(classes) - np.shape(proba)[1]))])
    result = evaluate_predictions(
        scored,
        out["predicted"],
        proba=proba,
        classes=classes,
        task=trained.task,
        target=target,
        skipped=skipped,
        info={k: v for k, v in info.items() if v is not None},
    )
    result.features = _as_matrix(out["X"])
    return result


def _training_overlap(trained: Any, paths: list[str]) -> int | None:
    """How many of ``paths`` are files the model was trained on (same bytes), warned when any;
    ``None`` for a model that keeps no fingerprints of its training files."""
    known = (getattr(trained, "reference", None) or {}).get("train_files")
    if known is None or not len(paths):
        return None
    from earmark.audio import file_digests

    digests = file_digests(paths)
    hit = np.isin(digests, np.asarray(known, dtype=np.uint64)) & (digests != 0)
    k = int(hit.sum())
    if k:
        import warnings

        from earmark.errors import TrainingDataWarning

        example = paths[int(np.flatnonzero(hit)[0])]
        warnings.warn(
            f"{k} of the {len(paths)} clips scored are files the model was trained on (e.g. {example}): "
            "on them it is tested on what it learnt, so these scores overstate what it does on new "
            "recordings. Score it on data it never saw (earmark split writes a train and a test part).",
            TrainingDataWarning, stacklevel=3)
    return k


def _group_overlap(trained: Any, scored: pd.DataFrame) -> int | None:
    """How many scored clips are of groups (speakers…) the model trained on, warned when any;
    ``None`` when the model keeps no group digests or the table has no groups."""
    known = (getattr(trained, "reference", None) or {}).get("train_groups")
    if known is None or "group" not in scored.columns or not len(scored):
        return None
    from earmark.sources._splits import group_digests

    digests = group_digests(scored["group"])
    hit = np.isin(digests, np.asarray(known, dtype=np.uint64)) & (digests != 0)
    k = int(hit.sum())
    if k:
        import warnings

        from earmark.errors import TrainingDataWarning

        names = sorted(set(scored["group"][hit].astype(str)))
        warnings.warn(
            f"{k} of the {len(scored)} clips scored are of groups (speakers…) named as groups the model was trained on "
            f"({', '.join(names[:5])}{' …' if len(names) > 5 else ''}): these scores say how it does on "
            "speakers/recordings it has heard, not on new ones. Score it on groups it never heard "
            "(earmark split keeps groups apart).", TrainingDataWarning, stacklevel=3)
    return k


def _as_matrix(X: Any) -> np.ndarray | None:
    """Feature arrays as (n, d) for plots: time-frequency inputs become mean and std per band."""
    if X is None:
        return None
    if isinstance(X, list):  # variable number of frames per clip
        if not X:
            return None
        try:
            rows = [np.asarray(x, dtype=np.float64) for x in X]
            if len({r.ndim for r in rows}) != 1 or rows[0].ndim == 0:
                return None
            if rows[0].ndim == 1:
                return np.stack(rows) if len({r.shape for r in rows}) == 1 else None
            return np.stack([np.concatenate([r.reshape(-1, r.shape[-1]).mean(axis=-1),
                                             r.reshape(-1, r.shape[-1]).std(axis=-1)])
                             for r in rows])
        except ValueError:
            return None
    try:
        X = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if X.ndim == 1:
        return X[:, None]
    if X.ndim == 2:
        return X
    flat = X.reshape(X.shape[0], -1, X.shape[-1])
    return np.concatenate([flat.mean(axis=-1), flat.std(axis=-1)], axis=1)


def _fold_title(name: Any) -> str:
    """'Fold 3' for a fold named 3, 'Fold 3' (not 'Fold fold 3') for one named 'fold 3'."""
    text = str(name)
    return text[0].upper() + text[1:] if re.match(r"fold\s*\d", text, re.IGNORECASE) else f"Fold {text}"


def _check_no_straddle(table: pd.DataFrame, train: np.ndarray, test: np.ndarray, name: str) -> list[str]:
    if "group" not in table.columns:
        return []
    from earmark.sources._splits import _group_array

    groups = _group_array(table, warn=False)  # as iter_folds sees them: a blank row is its own group
    shared = set(groups[train]) & set(groups[test])
    named = sorted(set(table["group"].dropna().astype(str)) - {""})
    if shared and len(named) <= 1:
        unnamed = int(table["group"].isna().sum())
        raise DatasetError(
            f"Every clip {'with a group ' if unnamed else ''}belongs to one group ({named[0] if named else ''!r})"
            f"{f' and {unnamed} have none' if unnamed else ''}: any fold would test on the group it trained "
            "on, which says nothing about other speakers/recordings. Cross-validation needs clips from at "
            "least 2 groups; check the group column (--group-column) or add data from more groups."
        )
    if shared:  # never score a leaky fold
        raise DatasetError(
            f"{_fold_title(name)} puts groups on both sides of the split: {sorted(shared)[:5]}. Clips "
            "of one speaker/recording in training and test inflate the scores. With predefined "
            "folds, fix the 'fold' column so each group sits in one fold, or use folds='group' "
            "or an integer K (group-aware)."
        )
    return sorted(set(groups[test]))


def cross_validate(
    dataset: Any,
    *,
    model: str | None = None,
    features: str | None = None,
    folds: str | int = "auto",
    seed: int = 0,
    target: str | None = None,
    label_column: str | None = None,
    group_column: str | None = None,
    workers: int | None = None,
    on_fold: Callable[[FoldResult], None] | None = None,
    **train_kwargs: Any,
) -> CVResult:
    """Cross-validate a model: train on all folds but one, score the held-out one, repeat.

    No group (speaker, source recording, GM program…) is ever on both sides of a split.

    Parameters
    ----------
    dataset : DataFrame, str or Path
        A table from :func:`earmark.sources.load_dataset` or a source it reads.
    model : str, optional
        Registry name (:func:`earmark.list_models`); default: training's default model.
    features : str, optional
        Feature preset; default: the model's own.
    folds : {"auto", "fold", "group"} or int, default "auto"
        Predefined ``fold`` column, leave-one-group-out, or K stratified group folds
        (:func:`earmark.sources.iter_folds`).
    seed : int, default 0
        Seed of the fold shuffle and of training.
    target : str, optional
        Column to predict (e.g. ``"pitch"`` for a regressor); default ``label``.
    label_column, group_column : str, optional
        Passed to :func:`earmark.sources.load_dataset` when ``dataset`` is a source.
    workers : int, optional
        Processes extracting the features of each fold, training and test clips (default: all cores).
    on_fold : callable, optional
        Called with each :class:`FoldResult` as it completes (progress reporting).
    **train_kwargs
        Further keyword arguments of :func:`earmark.train` (e.g. ``epochs``). Without a
        ``cache`` folder, a temporary feature store shared by the folds' training is used, so a
        clip is featurized once for training; each test fold is featurized afresh when it is
        scored, so that inference times include feature extraction alike. A neural model's ``checkpoint_dir`` gets one sub-folder per fold
        (``fold-<name>``), so ``resume=True`` continues each fold from its own checkpoint.

    Returns
    -------
    CVResult
        Per-fold results, ``summary`` (mean ± std), ``worst_fold`` and pooled out-of-fold
        scores.

    Examples
    --------
    >>> cv = cross_validate("../shared/data/fsdd/manifest.csv", model="logreg",
    ...                     folds="group")  # doctest: +SKIP
    >>> cv.summary["accuracy"]["mean"], cv.worst_fold["fold"]  # doctest: +SKIP
    (0.87, 'theo')
    """
    from earmark.training._train import check_seed

    check_seed(seed, "cross_validate")
    table = load_table(dataset, label_column=label_column, group_column=group_column)
    if train_kwargs.get("cache") is None:
        # one throw-away feature store for all folds: each clip is featurized once, not K times
        with tempfile.TemporaryDirectory(prefix="earmark-cv-") as tmp:
            return _cross_validate(table, model=model, features=features, folds=folds,
                                   seed=seed, target=target, workers=workers, on_fold=on_fold,
                                   train_kwargs={**train_kwargs, "cache": tmp})
    return _cross_validate(table, model=model, features=features, folds=folds, seed=seed,
                           target=target, workers=workers, on_fold=on_fold,
                           train_kwargs=train_kwargs)


def _checkpoint_subdir(checkpoint_dir: str | Path, name: str, taken: set[str] | None = None) -> str:
    """Sub-folder of ``checkpoint_dir`` for the run called ``name`` (a fold, a model).

    ``name`` is reduced to letters, digits, ``.``, ``_`` and ``-``; a name already in ``taken``
    (which is updated) gets a numeric suffix, so two runs never share a checkpoint.

    Examples
    --------
    >>> _checkpoint_subdir("ck", "fold 1"), _checkpoint_subdir("ck", "george")
    ('ck/fold-1', 'ck/fold-george')
    """
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", str(name)).strip("-.") or "run"
    folder = slug if re.match(r"fold-\d", slug) else f"fold-{slug}"
    if taken is not None:
        base, i = folder, 2
        while folder in taken:
            folder, i = f"{base}-{i}", i + 1
        taken.add(folder)
    return str(Path(checkpoint_dir) / folder)


def _cross_validate(
    table: pd.DataFrame,
    *,
    model: str | None,
    features: Any,
    folds: str | int,
    seed: int,
    target: str | None,
    workers: int | None,
    on_fold: Callable[[FoldResult], None] | None,
    train_kwargs: Mapping[str, Any],
) -> CVResult:
    from earmark.sources import iter_folds
    from earmark.training import train

    skipped = list(table.attrs.get("skipped", []))
    results: list[FoldResult] = []
    pooled_parts: list[tuple[pd.DataFrame, EvaluationResult]] = []
    checkpoint_dir = train_kwargs.get("checkpoint_dir")
    fold_dirs: set[str] = set()
    from earmark.sources._splits import _has

    grouped = _has(table, "group")  # as iter_folds decides: 2+ groups (a blank row is a group of its own)
    predefined = folds == "fold" or (folds == "auto" and _has(table, "fold"))
    if not grouped and not predefined and folds != "group":  # (folds='group' without groups: refused below)
        warnings.warn(
            "The table has no group column (or one with a single value), so the folds are drawn at "
            "random: clips of one speaker, recording "
            "or instrument can be on both sides of a split, which inflates the scores. Name the column of who "
            "or what made each clip (--group-column, group_column=) or give predefined folds.",
            EarmarkWarning, stacklevel=3)
    extra = train_kwargs.get("extra_train")
    classes = False
    if extra is not None:
        _check_extra_not_scored(table, extra)
        from earmark.models import get_spec

        # as train() decides: a classifier learns classes, and the label column is always one
        classes = (model is not None and get_spec(model).task == "classification") or (target or "label") == "label"
        kind = "fold" if predefined else "group" if grouped else None
        if kind is not None and kind not in extra.columns:
            warnings.warn(
                f"The extra training rows have no {kind!r} column, so cv cannot keep a fold's test {kind}s out of its "
                "training: if they hold clips of the same speakers or recordings, the scores are inflated. Give the "
                f"extra table its {kind} column.", EarmarkWarning, stacklevel=3)
    # each fold's test table lists no files: those the source left out are the whole run's, listed once
    own = {k: v for k, v in table.attrs.items() if k != "skipped"}
    for name, train_pos, test_pos in iter_folds(table, folds=folds, seed=seed):
        test_groups = _check_no_straddle(table, train_pos, test_pos, name)
        fold_kwargs = dict(train_kwargs)
        if extra is not None:
            fold_kwargs["extra_train"] = _extra_for_fold(table, extra, train_pos, test_pos, name, target, classes)
        if checkpoint_dir:  # each fold its own checkpoints: a fold must never resume another's
            fold_kwargs["checkpoint_dir"] = _checkpoint_subdir(checkpoint_dir, str(name), fold_dirs)
        start = time.perf_counter()
        fold_kwargs.setdefault("workers", workers)  # feature extraction of the fold's training clips too
        from earmark.training import ChanceLevelWarning

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ChanceLevelWarning)
            trained = train(table.iloc[train_pos], model=model, features=features, target=target,
                            seed=seed, **fold_kwargs)
        for w in caught:  # a fold's own validation part, not its test scores: say which is which
            if issubclass(w.category, ChanceLevelWarning):
                warnings.warn(f"{_fold_title(name)} (on the validation part carved from its training folds, not its "
                              f"test fold): {w.message}", ChanceLevelWarning, stacklevel=2)
            else:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        feature_seconds = float((getattr(trained, "config", None) or {}).get("feature_seconds", 0.0))
        train_seconds = max(time.perf_counter() - start - feature_seconds, 0.0)
        # scored without the store: every fold's (and every model's) inference time then includes
        # extracting its clips' features, not only the first to meet them
        unknown_labels = "error"
        truth_col = _target_of(trained, target)
        if getattr(trained, "task", None) == "classification" and truth_col in table.columns:
            truth = table.iloc[test_pos][truth_col].dropna().astype(str)
            unlearnt = sorted(set(truth) - {str(c) for c in trained.classes})
            if unlearnt:
                unknown_labels = "wrong"
                warnings.warn(
                    f"{_fold_title(name)} tests on class(es) its training folds do not hold: {unlearnt[:10]} "
                    f"({int(truth.isin(unlearnt).sum())} clips); they count as errors. Record those classes "
                    "in more groups (or use fewer folds) so that every fold can learn them.",
                    UnlearntClassWarning, stacklevel=2)
        test_table = table.iloc[test_pos]
        test_table.attrs = dict(own)
        res = evaluate(trained, test_table, target=target, workers=workers, unknown_labels=unknown_labels)
        fold = FoldResult(
            name=str(name), n_train=len(train_pos), n_test=len(test_pos),
            test_groups=test_groups, result=res, train_seconds=train_seconds, feature_seconds=feature_seconds,
            predict_seconds=float(res.info.get("predict_seconds", 0.0)),
            history=list(getattr(trained, "history", None) or []),
            n_extra_train=int(((getattr(trained, "data", None) or {}).get("extra_train") or {}).get("n", 0)),
        )
        results.append(fold)
        pooled_parts.append((table.iloc[test_pos], res))
        if on_fold is not None:
            on_fold(fold)
        model_name = res.info.get("model") or model
    if not results:
        raise DatasetError("The splitter produced no folds; the dataset is too small.")
    pooled = _pool(results)
    fold_skips = [s for f in results for s in f.result.skipped if s not in skipped]
    info = {"source": table.attrs.get("source"), "seed": seed,
            # the preset the folds' models used (the model's own when none was named), with its clip length
            "features": trained.preset.name if getattr(trained, "preset", None) is not None
            else getattr(features, "name", features),
            "feature_settings": trained.preset.to_dict() if getattr(trained, "preset", None) is not None else None,
            "mean_train_seconds": float(np.mean([f.train_seconds for f in results])),
            "feature_seconds": float(sum(f.feature_seconds for f in results)),
            # how the folds keep speakers/recordings apart: by the group column, by the predefined
            # folds (not checked without groups), or not at all (random folds)
            "grouping": "group" if grouped else "predefined folds" if predefined else "none"}
    return CVResult(results, str(model_name or "default"), str(folds), pooled,
                    skipped + fold_skips, {k: v for k, v in info.items() if v is not None},
                    last_model=trained)


def _pool(folds: Sequence[FoldResult]) -> EvaluationResult:
    """Score all out-of-fold predictions together."""
    frames = []
    for f in folds:
        part = f.result.predictions.copy()
        part.insert(0, "cv_fold", f.name)
        frames.append(part)
    preds = pd.concat(frames, ignore_index=True)
    first = folds[0].result
    if first.task == "regression":
        res = evaluate_predictions(preds.rename(columns={"true": "_truth"}), preds["predicted"],
                                   task="regression", target="_truth",
                                   info={"target": first.info.get("target")})
        res.predictions.insert(0, "cv_fold", preds["cv_fold"].to_numpy())
        return res
    # every fold's classes (a fold may add one its model never learnt; see cross_validate)
    classes = list(first.classes or [])
    for f in folds[1:]:
        classes += [c for c in (f.result.classes or []) if c not in classes]
    proba = None
    cols = [f"proba:{c}" for c in classes]
    if cols and all(c in preds.columns for c in cols):
        proba = preds[cols].fillna(0.0).to_numpy(dtype=np.float64)
    res = evaluate_predictions(preds.rename(columns={"true": "_truth"}), preds["predicted"],
                               proba=proba, classes=classes or None, target="_truth")
    res.predictions.insert(0, "cv_fold", preds["cv_fold"].to_numpy())
    feats = [f.result.features for f in folds]
    if all(x is not None for x in feats) and len({x.shape[1] for x in feats}) == 1:
        res.features = np.concatenate(feats, axis=0)
    return res


def _bundle_bytes(trained: Any) -> int | None:
    if trained is None:
        return None
    try:
        from earmark.bundle import save_model
    except ImportError:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "model"
        save_model(trained, target)
        return sum(p.stat().st_size for p in Path(tmp).rglob("*") if p.is_file())


def compare(
    dataset: Any,
    *,
    models: Sequence[str],
    features: str | None = None,
    folds: str | int = "auto",
    seed: int = 0,
    target: str | None = None,
    label_column: str | None = None,
    group_column: str | None = None,
    workers: int | None = None,
    on_fold: Callable[[str, FoldResult], None] | None = None,
    **train_kwargs: Any,
) -> Leaderboard:
    """Cross-validate several models on the same folds and rank them.

    Parameters
    ----------
    dataset : DataFrame, str or Path
        A table from :func:`earmark.sources.load_dataset` or a source it reads (read once).
    models : sequence of str
        Registry names, e.g. ``["logreg", "rf", "cnn"]``.
    features : str, optional
        One feature preset for every model; default: each model's own.
    folds : {"auto", "fold", "group"} or int, default "auto"
        The same folds are used for every model.
    seed : int, default 0
        Seed of the folds and of training.
    target : str, optional
        Column to predict; default ``label``.
    label_column, group_column : str, optional
        Passed to :func:`earmark.sources.load_dataset` when ``dataset`` is a source.
    workers : int, optional
        Processes extracting the features of each test fold (default: all cores).
    on_fold : callable, optional
        Called as ``on_fold(model_name, fold_result)`` after each fold.
    **train_kwargs
        Further keyword arguments of :func:`earmark.train`. ``epochs`` applies to the neural
        models and ``duration`` to the models whose preset has a fixed clip length (``cnn``,
        ``lstm``…); the others (``logreg`` on ``mfcc-mean``…) are trained without them.

    Returns
    -------
    Leaderboard
        ``table`` sorted best first with columns ``model``, ``<metric>_mean``,
        ``<metric>_std``, ``worst_fold`` (its name) and ``worst_fold_value`` (its main metric),
        ``train_seconds``, ``model_bytes``, ``ms_per_clip``.

    Examples
    --------
    >>> board = compare("../shared/data/fsdd/manifest.csv",
    ...                 models=["logreg", "rf"], folds=3)  # doctest: +SKIP
    >>> board.table[["model", "accuracy_mean"]]  # doctest: +SKIP
    """
    if isinstance(models, str):  # "logreg,svm", as the command line spells it
        models = models.split(",")
    models = [m.strip() for m in models if m and m.strip()]
    if not models:
        raise ParameterError("The 'models' parameter of compare needs at least one model name.")
    if len(set(models)) != len(models):
        raise ParameterError(f"The 'models' parameter of compare repeats a model: {models}.")
    from earmark.models import get_model, get_spec

    for name in models:  # fail before hours of training, not after
        get_model(name)
    tasks = {name: get_spec(name).task for name in models}
    if len(set(tasks.values())) > 1:
        raise ParameterError(
            "compare ranks models on one metric, so they must do one task; "
            + ", ".join(f"{m} is a {'regressor' if t == 'regression' else 'classifier'}" for m, t in tasks.items())
            + ". Compare the classifiers and the regressors apart.")
    table = load_table(dataset, label_column=label_column, group_column=group_column)
    column = target or "label"
    if "regression" in tasks.values() and column in table.columns and not pd.api.types.is_numeric_dtype(table[column]):
        raise ParameterError(f"The models are regressors but column {column!r} is not numeric; pass a numeric "
                             "target (--target pitch) or compare classifiers.")
    if train_kwargs.get("cache") is None:
        with tempfile.TemporaryDirectory(prefix="earmark-compare-") as tmp:
            return _compare(table, models, features, folds, seed, target, workers, on_fold,
                            {**train_kwargs, "cache": tmp})
    return _compare(table, models, features, folds, seed, target, workers, on_fold, train_kwargs)


def _fixed_length(model: str, features: Any) -> bool:
    """Whether ``model`` trained on ``features`` (default: its own preset) pads/crops clips."""
    from earmark.features import Preset, get_preset
    from earmark.models import get_spec

    preset = features if isinstance(features, Preset) else get_preset(features or get_spec(model).preset)
    return preset.params.get("duration") is not None


def _check_extra_not_scored(table: pd.DataFrame, extra: pd.DataFrame) -> None:
    """Extra training rows must not be files of the table: every one of those is scored in some
    fold (refused before any fold trains)."""
    own = {os.path.realpath(str(p)) for p in table["path"]}
    both = [str(p) for p in extra["path"] if os.path.realpath(str(p)) in own]
    if both:
        raise DatasetError(
            f"extra_train lists {len(both)} file(s) of the dataset itself (e.g. {both[0]}); each would be trained "
            "on in the folds that score it. Leave them out of the extra table (--extra-train).")


def _extra_for_fold(table: pd.DataFrame, extra: pd.DataFrame, train_pos: np.ndarray, test_pos: np.ndarray,
                    name: Any, target: str | None, classes: bool) -> pd.DataFrame | None:
    """The extra rows a fold may train on: none of its test groups or folds (they would be heard
    in training), and, for labels, only classes its training side holds (a class the training
    folds lack stays unlearnt, as it does without extra rows). Says what it left out."""
    keep = np.ones(len(extra), bool)
    said = []
    for col in ("group", "fold"):
        if col in table.columns and col in extra.columns:
            held = set(table[col].iloc[test_pos].dropna().astype(str))
            clash = extra[col].astype(str).isin(held).to_numpy() & extra[col].notna().to_numpy()
            if clash.any():
                said.append(f"{int(clash.sum())} of its test {col}{'s' if len(held) > 1 else ''}")
            keep &= ~clash
    column = target or "label"
    if classes and column in extra.columns and column in table.columns:
        learnt = set(table[column].iloc[train_pos].dropna().astype(str))
        foreign = ~extra[column].astype(str).isin(learnt).to_numpy()
        if (foreign & keep).any():
            said.append(f"{int((foreign & keep).sum())} of classes its training folds lack")
        keep &= ~foreign
    if said:
        warnings.warn(f"{_fold_title(name)}: extra training rows left out ({'; '.join(said)}).",
                      EarmarkWarning, stacklevel=3)
    return extra[keep].reset_index(drop=True) if keep.any() else None


def _compare(table: pd.DataFrame, models: list[str], features: Any, folds: str | int, seed: int,
             target: str | None, workers: int | None,
             on_fold: Callable[[str, FoldResult], None] | None,
             train_kwargs: Mapping[str, Any]) -> Leaderboard:
    from earmark.models import get_spec

    rows = []
    results: dict[str, CVResult] = {}
    for name in models:
        callback = (lambda f, _n=name: on_fold(_n, f)) if on_fold is not None else None
        kwargs = dict(train_kwargs)
        if kwargs.get("duration") is not None and not _fixed_length(name, features):
            del kwargs["duration"]
        if kwargs.get("epochs") is not None and get_spec(name).kind != "torch":
            del kwargs["epochs"]
        if kwargs.get("checkpoint_dir"):  # each model its own checkpoints (then one per fold)
            kwargs["checkpoint_dir"] = str(Path(kwargs["checkpoint_dir"]) / re.sub(r"[^A-Za-z0-9_.-]+", "-", name))
        cv = cross_validate(table, model=name, features=features, folds=folds, seed=seed,
                            target=target, workers=workers, on_fold=callback, **kwargs)
        results[name] = cv
        row: dict[str, Any] = {"model": name}
        for metric, stats in cv.summary.items():
            row[f"{metric}_mean"] = stats["mean"]
            row[f"{metric}_std"] = stats["std"]
        worst = cv.worst_fold
        row["worst_fold"] = str(worst["fold"])
        row["worst_fold_value"] = float(worst["value"])
        row["train_seconds"] = float(np.mean([f.train_seconds for f in cv.folds]))
        n_test = sum(f.n_test for f in cv.folds)
        row["ms_per_clip"] = 1000.0 * sum(f.predict_seconds for f in cv.folds) / max(n_test, 1)
        row["model_bytes"] = _bundle_bytes(cv.last_model)
        rows.append(row)
    board = pd.DataFrame(rows)
    key = "rmse_mean" if "rmse_mean" in board.columns else "accuracy_mean"
    board = board.sort_values(key, ascending=key.split("_mean")[0] in LOWER_IS_BETTER,
                              kind="stable").reset_index(drop=True)
    return Leaderboard(board, results)

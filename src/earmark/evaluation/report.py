"""The HTML report of an evaluation, a cross-validation or a comparison.

:func:`build_report` draws every plot that the result supports and returns one self-contained
HTML page (images and audio inlined); :func:`write_report` saves it.

Example
-------
>>> from earmark.evaluation import build_report, evaluate  # doctest: +SKIP
>>> html = build_report(evaluate(model, "../shared/data/fsdd/manifest.csv"))  # doctest: +SKIP
"""

from __future__ import annotations

import datetime as _dt
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from earmark.errors import EarmarkError, ParameterError
from earmark.evaluation import plots
from earmark.evaluation._html import audio_to_data_uri, render_report
from earmark.evaluation._results import CVResult, EvaluationResult, Leaderboard

__all__ = ["build_report", "write_report"]


def _clip_audio(path: str, max_seconds: float) -> str | None:
    from earmark.audio import load_audio

    try:
        y, sr = load_audio(path, max_seconds=max_seconds)
    except EarmarkError:
        return None
    return audio_to_data_uri(y, int(sr), max_seconds=max_seconds)


def _class_examples(predictions: pd.DataFrame, classes: list[str], max_seconds: float) -> dict:
    from earmark.audio import load_audio

    examples: dict[str, tuple[np.ndarray, int]] = {}
    for c in classes:
        rows = predictions[predictions["true"] == c]
        rows = rows[rows["correct"]] if rows["correct"].any() else rows
        for path in rows["path"].head(3):
            try:
                y, sr = load_audio(path, max_seconds=max_seconds)
            except EarmarkError:
                continue
            if y.size:
                examples[c] = (y, int(sr))
                break
    return examples


def _try(figures: dict[str, Figure], caption: str, make: Any) -> None:
    """Add a figure; a plot that cannot be drawn from this result is left out, not fatal."""
    try:
        figures[caption] = make()
    except (ParameterError, ValueError) as exc:
        warnings.warn(f"report: {caption!r} left out ({exc})", stacklevel=3)


def _evaluation_figures(
    res: EvaluationResult, history: list[dict[str, Any]] | None, embedding: str, seed: int,
    max_seconds: float, feature_names: list[str] | None,
) -> dict[str, Figure]:
    figures: dict[str, Figure] = {}
    if history:
        _try(figures, "Training curves (last training run)",
             lambda: plots.plot_training_curves(history))
    m = res.metrics
    if res.task == "regression":
        _try(figures, "Predicted vs true",
             lambda: plots.plot_predicted_vs_true(res.predictions["true"],
                                                  res.predictions["predicted"],
                                                  target=str(res.info.get("target") or "target")))
        return figures
    classes = res.classes or []
    _try(figures, "Confusion matrix", lambda: plots.plot_confusion_matrix(m["confusion"], classes))
    _try(figures, "Precision, recall and F1 per class",
         lambda: plots.plot_per_class_scores(m["per_class"]))
    curve = res.calibration()  # the bins of the ECE in its title
    if curve is not None:
        _try(figures, "Reliability diagram (confidence vs accuracy)",
             lambda: plots.plot_reliability(curve, ece=m.get("ece")))
    examples = _class_examples(res.predictions, classes, max_seconds)
    if examples:
        _try(figures, "One clip per class: waveform and log-mel spectrogram",
             lambda: plots.plot_class_examples(examples))
    X = res.features
    if X is not None and len(X) == len(res.predictions) and len(X) >= 3:
        y = res.predictions["true"].to_numpy()
        names = feature_names if feature_names and len(feature_names) == X.shape[1] else None
        _try(figures, "Feature distributions per class",
             lambda: plots.plot_feature_distributions(X, y, feature_names=names, classes=classes))
        _try(figures, f"2-D map of the model's inputs ({embedding.upper()}), coloured by class",
             lambda: plots.plot_embedding(X, y, method=embedding, classes=classes, seed=seed))
    return figures


def _worst_rows(res: EvaluationResult, n: int) -> pd.DataFrame:
    """Misclassified clips (most confident first), or a regressor's largest errors."""
    if res.task == "regression":
        order = res.predictions["error"].abs().sort_values(ascending=False, kind="stable").index
        return res.predictions.loc[order].head(n)
    return res.misclassified.head(n)


def _clips(res: EvaluationResult, max_clips: int, max_seconds: float) -> list[dict[str, Any]]:
    """Misclassified clips (most confident first), or a regressor's largest errors, with their audio."""
    clips = []
    for _, row in _worst_rows(res, max_clips).iterrows():
        conf = row.get("confidence")
        where = row.get("cv_fold", row.get("group"))
        clips.append({
            "path": row["path"],
            "true": f"{row['true']:.2f}" if res.task == "regression" else row["true"],
            "predicted": (f"{row['predicted']:.2f}" if res.task == "regression"
                          else row["predicted"]),
            "confidence": None if conf is None or pd.isna(conf) else float(conf),
            "extra": None if where is None or pd.isna(where) else where,
            "audio": _clip_audio(row["path"], max_seconds),
        })
    return clips


def _explanations(res: EvaluationResult, model: Any, n: int) -> dict[str, Figure]:
    """Occlusion maps of the ``n`` most confident mistakes (largest errors for a regressor)."""
    from earmark.evaluation._explain import explain, plot_explanation

    if model is None or not hasattr(model, "preset") or not hasattr(model, "predict_features"):
        return {}
    figures: dict[str, Figure] = {}
    for _, row in _worst_rows(res, n).iterrows():
        name = Path(str(row["path"])).name
        if res.task == "regression":
            caption = (f"Why {name} was given {row['predicted']:.2f} (true {row['true']:.2f}): the regions "
                       "whose silencing moves the prediction most (red)")
            target = None
        else:
            caption = (f"Why {name} was called {row['predicted']} (true {row['true']}): the regions whose "
                       f"silencing lowers p({row['predicted']}) most (red)")
            target = str(row["predicted"])
        base, copy = caption, 1
        while caption in figures:  # the same file name, answer and truth twice (other folders)
            copy += 1
            caption = f"{base} [{copy}]"
        try:
            figures[caption] = plot_explanation(explain(model, str(row["path"]), target=target))
        except EarmarkError as exc:
            warnings.warn(f"report: explanation of {name} left out ({exc})", stacklevel=3)
    return figures


def _history_of(model: Any) -> list[dict[str, Any]] | None:
    history = getattr(model, "history", None)
    return list(history) if history else None


def _feature_names(model: Any) -> list[str] | None:
    for source in (getattr(model, "preset", None), model, getattr(model, "reference", None)):
        names = getattr(source, "feature_names", None)
        if names is None and isinstance(source, Mapping):
            names = source.get("feature_names")
        if names is not None:
            return [str(n) for n in names]
    return None


def build_report(
    result: EvaluationResult | CVResult | Leaderboard,
    *,
    model: Any = None,
    summary: Mapping[str, Any] | None = None,
    title: str | None = None,
    max_clips: int = 20,
    max_seconds: float = 10.0,
    embedding: str = "pca",
    seed: int = 0,
    config: Mapping[str, Any] | None = None,
    explain: int = 4,
) -> str:
    """Draw every plot the result supports and return one self-contained HTML page.

    Parameters
    ----------
    result : EvaluationResult, CVResult or Leaderboard
        What to report.
    model : TrainedModel, optional
        The evaluated model (its training history becomes the training curves); a
        ``CVResult`` brings its last fold's model itself.
    summary : mapping, optional
        Dataset summary from :func:`earmark.sources.summarize`.
    title : str, optional
        Page title (default from the result).
    max_clips : int, default 20
        Misclassified clips embedded with their audio, most confident mistakes first.
    max_seconds : float, default 10.0
        Longest audio embedded per clip (keeps the page small).
    embedding : {"pca", "tsne"}, default "pca"
        Projection of the 2-D feature map.
    seed : int, default 0
        Seed of the projection.
    config : mapping, optional
        Run configuration shown at the end of the page.
    explain : int, default 4
        For an evaluation with its ``model``: occlusion maps (:func:`earmark.evaluation.explain`)
        of this many of the most confident mistakes (a regressor's largest errors); 0 for none.

    Returns
    -------
    str
        The HTML document.

    Examples
    --------
    >>> import pandas as pd
    >>> from earmark.evaluation import evaluate_predictions
    >>> res = evaluate_predictions(pd.DataFrame({"path": ["a", "b"], "label": ["x", "y"]}),
    ...                            ["x", "x"])
    >>> "<img" in build_report(res)
    True
    """
    if not isinstance(max_clips, int) or max_clips < 0:
        raise ParameterError(f"The 'max_clips' parameter must be an int >= 0. Got {max_clips!r}.")
    if not isinstance(explain, int) or explain < 0:
        raise ParameterError(f"The 'explain' parameter must be an int >= 0. Got {explain!r}.")
    if embedding not in ("pca", "tsne"):
        raise ParameterError(f"The 'embedding' parameter must be 'pca' or 'tsne'. Got {embedding!r}.")
    if isinstance(model, (str, Path)):  # a bundle's path
        from earmark.bundle import load_model

        model = load_model(model)
    if model is not None and not any(hasattr(model, a) for a in ("history", "preset", "estimator")):
        raise ParameterError(f"The 'model' parameter takes a trained model (earmark.train, earmark.load_model) or "
                             f"a bundle path, not a {type(model).__name__}.")
    stamp = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    if isinstance(result, Leaderboard):
        return _leaderboard_report(result, summary=summary, title=title, stamp=stamp,
                                   config=config)
    if isinstance(result, CVResult):
        res = result.pooled
        model = model if model is not None else result.last_model
        spread = result.summary
        worst = result.worst_fold
        fold_rows = []
        for f in result.folds:
            fm = f.result.metrics
            fold_rows.append([f.name, f.n_train, f.n_test, fm.get("accuracy", fm.get("rmse")),
                              fm.get("macro_f1", fm.get("mae")), f.train_seconds,
                              len(f.result.skipped)])
        main = "accuracy" if result.task == "classification" else "rmse"
        second = "macro F1" if result.task == "classification" else "MAE"
        tables = {"Folds": (["fold", "train clips", "test clips", main, second,
                             "training time (s)", "skipped"], fold_rows)}
        apart = _apart(result)
        notes = [
            f"{len(result.folds)} folds ({result.folds_kind}); {apart}. "
            f"Worst fold: {worst['fold']} with {worst['metric']} {worst['value']:.4f}. "
            "Headline metrics are means over folds (± std); the plots"
            + (" and per-class table" if result.task == "classification" else "")
            + " pool all out-of-fold predictions."
        ]
        headline = {**res.metrics, **{k: v["mean"] for k, v in spread.items()}}
        heading = title or f"Cross-validation of {result.model}"
        extra_figs: dict[str, Figure] = {}
        _try(extra_figs, f"{main} per fold",
             lambda: plots.plot_cv_folds({f.name: f.result.metrics[main] for f in result.folds},
                                         metric=main))
        skipped = result.skipped
    else:
        res = result
        spread = None
        tables = {}
        notes = []
        headline = res.metrics
        heading = title or f"Evaluation of {res.info.get('model', 'a model')}"
        extra_figs = {}
        skipped = res.skipped
        heard = res.info.get("training_groups")
        if heard and not res.info.get("training_files"):
            notes.append(f"Warning: {heard} of the {res.metrics.get('n', 0)} clips scored are of groups (speakers, "
                         "recordings…) the model was trained on, so these scores say how it does on voices or "
                         "sources it has heard, not on new ones.")
        seen = res.info.get("training_files")
        if seen:
            notes.append(f"Warning: {seen} of the {res.metrics.get('n', 0)} clips scored are files the model was "
                         "trained on, so these scores overstate what it does on new recordings. Score it on "
                         "data it never saw (earmark split).")
    figures = {**extra_figs, **_evaluation_figures(res, _history_of(model), embedding, seed,
                                                   max_seconds, _feature_names(model))}
    clips = _clips(res, max_clips, max_seconds)
    if explain and isinstance(result, EvaluationResult):
        figures.update(_explanations(res, model, explain))
    if res.task == "classification" and not clips:
        notes.append("No clip was misclassified.")
    clips_title = ("Largest errors" if res.task == "regression"
                   else "Misclassified clips (most confident first)")
    subtitle = f"{res.metrics.get('n', 0)} clips scored · {len(skipped)} left out · {stamp}"
    page = render_report(
        title=heading, subtitle=subtitle, summary=summary, metrics=headline, spread=spread,
        tables=tables, figures=figures, clips=clips,
        clips_title=clips_title, clips_total=len(res.misclassified) if res.task == "classification" else None,
        skipped=skipped, notes=notes,
        config=config,
    )
    for fig in figures.values():
        fig.clear()
    return page


def _apart(result: CVResult) -> str:
    """What keeps a cross-validation's training and test clips apart, in words."""
    return {"group": "no group is on both sides of any split",
            "predefined folds": "the table's predefined folds (it has no group column to check them with)",
            "none": "the table has no group column, so the folds are random: one speaker or recording can "
                    "be on both sides of a split, which inflates these scores"}[result.info.get("grouping", "group")]


def _leaderboard_report(board: Leaderboard, *, summary: Mapping[str, Any] | None,
                        title: str | None, stamp: str, config: Mapping[str, Any] | None) -> str:
    table = board.table
    header, rows = board.display()
    figures: dict[str, Figure] = {}
    metric = "rmse" if "rmse_mean" in table.columns else "accuracy"
    for name, cv in board.results.items():
        _try(figures, f"{name}: {metric} per fold",
             lambda cv=cv: plots.plot_cv_folds(
                 {f.name: f.result.metrics[metric] for f in cv.folds}, metric=metric))
    page = render_report(
        title=title or "Model comparison", subtitle=f"{len(board.results)} models · {stamp}",
        summary=summary, tables={"Leaderboard (best first)": (header, rows)}, figures=figures,
        notes=["Every model is cross-validated on the same folds"
               + (f" ({next(iter(board.results.values())).folds_kind}); {_apart(next(iter(board.results.values())))}"
                  if board.results else "")
               + ". Training time is the mean per fold, inference time includes feature extraction, size is "
               "the saved bundle. Every column of every model is in the --json output."],
        config=config,
    )
    for fig in figures.values():
        fig.clear()
    return page


def write_report(html: str, path: str | Path) -> Path:
    """Write a report to ``path`` (parent folders created) and return the path.

    Parameters
    ----------
    html : str
        From :func:`build_report`.
    path : str or Path
        Destination, conventionally ``*.html``.

    Returns
    -------
    Path

    Examples
    --------
    >>> write_report("<!DOCTYPE html><html></html>", "/tmp/earmark-doc.html").name
    'earmark-doc.html'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html, encoding="utf-8")
    return path

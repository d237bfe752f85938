"""Hyper-parameter search with group-aware cross-validation.

Classical models: scikit-learn grid search (random search when the grid is larger than the
trial budget). Neural models: Optuna (TPE) over the model's search space.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from earmark.errors import DatasetError, EarmarkWarning, ParameterError

__all__ = ["TuneResult", "tune"]


@dataclass
class TuneResult:
    """Outcome of :func:`tune`.

    Attributes
    ----------
    model : str
        Registry name.
    best_params : dict
        Best parameters, named as :func:`~earmark.training.train` and ``earmark train --param``
        take them (``C`` for ``svm``, not ``calibratedclassifiercv__estimator__C``).
    best_score : float
        Mean cross-validated score, of ``metric``.
    trials : list of dict
        ``{"params", "score"}`` for every trial, in order (``score`` None: the trial failed).
    method : str
        ``"grid"``, ``"random"`` or ``"optuna"``.
    cv : str
        How the folds were made.
    metric : str
        What the scores are: ``"accuracy"`` (classification) or ``"neg_mean_absolute_error"``
        (regression; higher is better).
    skipped : list of dict
        ``{"path", "reason"}`` of every clip left out of the search (unreadable, or its features
        could not be computed).
    """

    model: str
    best_params: dict
    best_score: float
    trials: list[dict] = field(default_factory=list)
    method: str = "grid"
    cv: str = ""
    metric: str = "accuracy"
    skipped: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        """JSON-able form."""
        return {"model": self.model, "best_params": self.best_params, "best_score": self.best_score,
                "metric": self.metric, "trials": self.trials, "method": self.method, "cv": self.cv,
                "skipped": self.skipped}


def _groups_of(df: pd.DataFrame, column: str | None) -> np.ndarray | None:
    """The group of each row as cross-validation sees it (``None``: no groups, random folds): a
    blank cell is a group of its own; a table of one named group is refused."""
    if column is None or column not in df.columns:
        return None
    from earmark.sources._splits import _blank, _group_array

    named = sorted(set(df[column][~_blank(df[column])].astype(str)))
    if len(named) == 1:
        raise DatasetError(
            f"Every clip {'with a group ' if len(named) < len(df) else ''}belongs to one group ({named[0]!r}): any "
            "fold would test on the group it trained on, which says nothing about other speakers/recordings. "
            "Tuning needs clips from at least 2 groups; check the group column (--group) or add data from more "
            "groups."
        )
    if not named:
        return None
    if column == "group":
        return _group_array(df)
    return df[column].astype(str).to_numpy()


def _cv(y: np.ndarray, groups: np.ndarray | None, folds: int, seed: int, classification: bool):
    from sklearn.model_selection import GroupKFold, KFold, StratifiedGroupKFold, StratifiedKFold

    if groups is None:
        warnings.warn(
            "The table has no groups, so the search's folds are drawn at random: clips of one speaker, "
            "recording or instrument can be on both sides of a split, which inflates the scores and favours "
            "settings that learn them. Name the column of who or what made each clip (--group).",
            EarmarkWarning, stacklevel=3)
    if groups is not None and len(np.unique(groups)) >= 2:
        n_groups = len(np.unique(groups))
        k = min(folds, n_groups)
        if k < folds:
            warnings.warn(f"tune: {folds} folds asked for but the data has only {n_groups} groups, which no two "
                          f"folds may share; searching with {k} folds (leave one group out).", EarmarkWarning,
                          stacklevel=3)
        if classification:
            return StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed), groups, f"{k} group folds"
        return GroupKFold(n_splits=k), groups, f"{k} group folds"
    if classification:
        return StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed), None, f"{folds} stratified folds"
    return KFold(n_splits=folds, shuffle=True, random_state=seed), None, f"{folds} folds"


def _grid_size(space: dict) -> int:
    n = 1
    for v in space.values():
        if not isinstance(v, list):
            return 10**9
        n *= len(v)
    return n


def _jsonable(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    return v


def tune(
    dataset: pd.DataFrame,
    *,
    model: str,
    trials: int = 20,
    features: Any = None,
    target: str | None = None,
    group: str | None = None,
    folds: int = 3,
    epochs: int | None = None,
    seed: int = 0,
    cache: Any = None,
    search_space: dict | None = None,
) -> TuneResult:
    """Search hyper-parameters of a registered model with group-aware cross-validation.

    Parameters
    ----------
    dataset : DataFrame
        Table from :func:`earmark.sources.load_dataset`.
    model : str
        Registry name.
    trials : int
        Budget: grid points / random draws / Optuna trials.
    features : str or Preset, optional
        Feature preset (default: the model's).
    target : str, optional
        Column to learn (default ``label``).
    group : str, optional
        Column keeping groups together in the folds (default ``group``, else ``fold``).
    folds : int
        Number of cross-validation folds.
    epochs : int, optional
        Epochs of neural models in each trial (their default otherwise; when the search space
        has ``epochs`` and this is given, it is fixed).
    seed : int
        Seed of the folds, the sampler and the models.
    cache : path, optional
        Feature store directory.
    search_space : dict, optional
        Replaces the model's registered search space (see :class:`~earmark.models.ModelSpec`);
        names as :func:`~earmark.training.train` or ``get_params()`` spell them.

    Returns
    -------
    TuneResult
        Parameters named as :func:`~earmark.training.train` takes them.

    Examples
    --------
    >>> res = tune(df, model="knn", trials=5)  # doctest: +SKIP
    >>> sorted(res.best_params)  # doctest: +SKIP
    ['n_neighbors', 'weights']
    >>> model = train(df, model="knn", **res.best_params)  # doctest: +SKIP
    """
    from earmark.features import Preset, extract, get_preset
    from earmark.models import get_model, get_spec
    from earmark.training._train import check_seed

    check_seed(seed, "tune")
    if trials < 1:
        raise ParameterError(f"The 'trials' parameter must be an int >= 1. Got {trials!r} instead.")
    if folds < 2:
        raise ParameterError(f"The 'folds' parameter must be an int >= 2. Got {folds!r} instead.")
    spec = get_spec(model)
    if epochs is not None and spec.kind != "torch":
        raise ParameterError(f"Model {model!r} is not trained in epochs; drop --epochs.")
    space = dict(search_space if search_space is not None else spec.search_space)
    for key, entry in space.items():
        space[key] = _check_space_entry(key, entry)
    if epochs is not None:
        space.pop("epochs", None)
    if not space:
        if search_space is not None:
            raise ParameterError("The 'search_space' parameter is empty; give at least one parameter with the values "
                                 "to try, e.g. {'C': [0.1, 1, 10]} or {'lr': ('log', 1e-4, 1e-2)}.")
        raise ParameterError(f"Model {model!r} has no search space; pass search_space=.")
    # unknown names and impossible values the model checks when built fail here, not after the
    # features are extracted: every listed value and both ends of every range, one at a time
    first = {k: v[0] if isinstance(v, list) else v[1] for k, v in space.items()}
    get_model(model, **first)
    for k, v in space.items():
        for value in (v[1:] if isinstance(v, list) else v[1:3]):
            get_model(model, **{**first, k: value})
    target_col = target or "label"
    if target_col not in dataset.columns:
        from earmark.training._train import source_columns

        raise ParameterError(f"The dataset has no column {target_col!r} (columns: {source_columns(dataset)}); name "
                             "the column to learn (--target COLUMN; target= in Python).")
    preset = features if isinstance(features, Preset) else get_preset(features or spec.preset)
    # the same clip length train() would choose, so the search tunes the model it will train
    from earmark.training._train import _set_duration, check_targets, names_duration

    preset, _ = _set_duration(preset, dataset, duration=None, chosen=names_duration(features))
    group_col = group or next((c for c in ("group", "fold") if c in dataset.columns), None)
    df = dataset.reset_index(drop=True)
    check_targets(df, target_col, spec.task)  # before any audio is read
    all_groups = _groups_of(df, group_col)  # refused before any audio is read, as cv does
    fs = extract(df, preset, cache=cache)
    skipped = [*dataset.attrs.get("skipped", []), *({"path": str(e["path"]), "reason": str(e["reason"])}
                                                   for e in fs.errors)]
    if len(fs.rows) < 2 * folds:
        raise DatasetError(f"Only {len(fs.rows)} clips could be featurized; tuning needs more.")
    rows = np.asarray(fs.rows)
    X = fs.X
    classification = spec.task == "classification"
    y = df[target_col].to_numpy()[rows]
    y = y.astype(str) if classification else y.astype(np.float64)
    groups = all_groups[rows] if all_groups is not None else None
    cv, cv_groups, cv_desc = _cv(y, groups, folds, seed, classification)
    scoring = "accuracy" if classification else "neg_mean_absolute_error"

    if spec.kind == "sklearn":
        from scipy.stats import loguniform, randint
        from sklearn.model_selection import GridSearchCV, RandomizedSearchCV

        est = spec.builder()
        seed_keys = [k for k in est.get_params() if k == "random_state" or k.endswith("__random_state")]
        if seed_keys:  # as train() seeds it, so the tuned model is the one train() will fit
            est.set_params(**{k: seed for k in seed_keys})
        if np.ndim(X[0]) != 1:
            raise ParameterError(f"Model {model!r} needs a pooled preset; {preset.name!r} gives sequences.")
        size = _grid_size(space)
        if size <= trials:
            grid = spec.nested_names({k: list(v) for k, v in space.items()})
            search = GridSearchCV(est, grid, cv=cv, scoring=scoring, n_jobs=1)
            method = "grid"
        else:
            dist = {}
            for k, v in space.items():
                if isinstance(v, list):
                    dist[k] = v
                elif v[0] == "log":
                    dist[k] = loguniform(v[1], v[2])
                else:
                    dist[k] = randint(v[1], v[2] + 1)
            search = RandomizedSearchCV(est, spec.nested_names(dist), n_iter=trials, cv=cv, scoring=scoring, n_jobs=1,
                                        random_state=seed)
            method = "random"
        from sklearn.exceptions import FitFailedWarning

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", FitFailedWarning)
            try:
                search.fit(X, y, groups=cv_groups)
            except ValueError as exc:  # scikit-learn's "All the N fits failed" (with the tracebacks)
                if "fits failed" not in str(exc):
                    raise
                cause = next((line.strip() for line in str(exc).splitlines()
                              if re.match(r"^\w*(Error|Exception)\b", line.strip())), "")
                raise ParameterError(f"tune: every trial of {model!r} failed{': ' + cause if cause else ''}. "
                                     "Check the search space against the data.") from None
        res = search.cv_results_
        # scikit-learn's own reports of failed fits and scores (tracebacks, one per fold) are
        # summed up in one warning naming the trial and the error; others pass on as they came
        search_notes = [w for w in caught if issubclass(w.category, FitFailedWarning)
                        or ("model_selection" in str(w.filename)
                            and re.search(r"Scoring failed|non-finite|fits failed", str(w.message)))]
        for w in caught:
            if w not in search_notes:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        failed = [p for p, s_ in zip(res["params"], res["mean_test_score"]) if not np.isfinite(s_)]
        errors = [line.strip() for w in search_notes for line in str(w.message).splitlines()
                  if re.match(r"^\w*(Error|Exception)\b", line.strip())]
        if len(failed) == len(res["params"]):
            raise ParameterError(f"tune: every trial of {model!r} failed"
                                 f"{': ' + errors[0] if errors else ''}. Check the search space against the data.")
        if failed:  # scored NaN by scikit-learn: say which and why, not a silent 'nan' row
            warnings.warn(
                f"tune: {len(failed)} of {len(res['params'])} trials failed and score nothing (nan), e.g. "
                f"{spec.short_names({k: _jsonable(v) for k, v in failed[0].items()})}"
                f"{': ' + errors[0] if errors else ''}. Leave such values out of the search space.",
                EarmarkWarning, stacklevel=2)
        trial_list = [
            {"params": spec.short_names({k: _jsonable(v) for k, v in p.items()}),
             "score": float(s) if np.isfinite(s) else None}  # None: the trial failed (JSON has no NaN)
            for p, s in zip(res["params"], res["mean_test_score"])
        ]
        return TuneResult(model, spec.short_names({k: _jsonable(v) for k, v in search.best_params_.items()}),
                          float(search.best_score_), trial_list, method, cv_desc, scoring, skipped)

    import optuna

    # earmark reports failed trials itself (one warning), not Optuna's log line and traceback each
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    splits = list(cv.split(np.zeros(len(y)), y, cv_groups))
    errors: dict[int, str] = {}

    def objective(trial: Any) -> float:
        params: dict[str, Any] = {}
        for k, v in space.items():
            if isinstance(v, list):
                params[k] = trial.suggest_categorical(k, v)
            elif v[0] == "log":
                params[k] = trial.suggest_float(k, v[1], v[2], log=True)
            else:
                params[k] = trial.suggest_int(k, v[1], v[2])
        if epochs is not None:
            params["epochs"] = int(epochs)
        scores = []
        for step, (tr, te) in enumerate(splits):
            try:
                est = get_model(model, **{**params, "random_state": seed})
                take = (lambda idx: X[idx]) if isinstance(X, np.ndarray) else (lambda idx: [X[i] for i in idx])
                est.fit(take(tr), y[tr], groups=None if groups is None else groups[tr])
                pred = est.predict(take(te))
            except Exception as exc:  # a value the network cannot take (dropout 1.5): this trial fails, not the search
                errors[trial.number] = f"{type(exc).__name__}: {exc}"
                return float("nan")  # Optuna's FAIL state: the sampler steers away from it (a pruned one it redraws)
            score = float(np.mean(pred == y[te])) if classification else -float(np.mean(np.abs(pred - y[te])))
            scores.append(score)
            trial.report(float(np.mean(scores)), step)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return float(np.mean(scores))

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed),
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=3))
    with warnings.catch_warnings():  # (values such as net_options dicts: Optuna's storage note, not the user's)
        warnings.filterwarnings("ignore", message="Choices for a categorical distribution", category=UserWarning)
        study.optimize(objective, n_trials=trials)
    complete = optuna.trial.TrialState.COMPLETE
    # a pruned trial's value is the mean of the folds it ran, not comparable with the finished ones:
    # listed with its state and no score, as a failed one is
    trial_list = [{"params": spec.short_names(t.params),
                   "score": t.value if t.state == complete else None,
                   "state": "failed" if t.number in errors else ("complete" if t.state == complete else "pruned"),
                   **({"error": errors[t.number]} if t.number in errors else {})}
                  for t in study.trials]
    if not any(t.state == complete for t in study.trials):
        first = next(iter(errors.values()), "")
        raise ParameterError(f"tune: no trial of {model!r} finished{': ' + first if first else ''}. "
                             "Check the search space against the data.")
    if errors:
        number, message = next(iter(errors.items()))
        warnings.warn(f"tune: {len(errors)} of {len(study.trials)} trials failed and score nothing, e.g. "
                      f"{spec.short_names(study.trials[number].params)}: {message}. Leave such values out of the "
                      "search space.", EarmarkWarning, stacklevel=2)
    best = spec.short_names(dict(study.best_params))
    if epochs is not None:
        best["epochs"] = int(epochs)
    return TuneResult(model, best, float(study.best_value), trial_list, "optuna", cv_desc, scoring, skipped)


def _check_space_entry(key: str, entry: Any) -> Any:
    """A search-space entry as tune reads it: a non-empty list of values (a tuple of values is
    one too), or ``("log" | "int", low, high)`` with low < high (and low > 0 on a log scale)."""
    forms = "a list of values ([0.1, 1, 10]), ('log', low, high) or ('int', low, high)"
    if isinstance(entry, list):
        if not entry:
            raise ParameterError(f"search_space[{key!r}] is an empty list; give {forms}.")
        return entry
    if isinstance(entry, tuple) and len(entry) == 3 and entry[0] in ("log", "int"):
        kind, low, high = entry
        numbers = all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
                      for v in (low, high))
        if not numbers or not low < high or (kind == "log" and low <= 0) or (
                kind == "int" and not all(float(v).is_integer() for v in (low, high))):
            raise ParameterError(f"search_space[{key!r}] = {entry!r}: a range needs numbers low < high (whole "
                                 "numbers for 'int', low > 0 for 'log').")
        return entry
    if isinstance(entry, tuple) and entry and entry[0] not in ("log", "int"):
        return list(entry)  # a tuple of values: the values to try
    raise ParameterError(f"search_space[{key!r}] = {entry!r} is not a search-space entry; give {forms}.")

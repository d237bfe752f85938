"""The model registry: every model earmark offers, by name.

Adding a model means one :func:`register_model` call; nothing else branches on model names.
"""

from __future__ import annotations

import difflib
import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from earmark.errors import ParameterError

__all__ = ["ModelSpec", "get_model", "get_spec", "list_models", "register_model"]

Task = Literal["classification", "regression"]


@dataclass(frozen=True)
class ModelSpec:
    """What the registry knows about one model.

    Attributes
    ----------
    name : str
        Registry name, e.g. ``"cnn"``.
    task : {"classification", "regression"}
        What the model predicts.
    preset : str
        Name of the feature preset the model is trained on by default.
    description : str
        One line for ``earmark models list``.
    kind : {"sklearn", "torch"}
        Family of the estimator (decides persistence and tuning strategy).
    builder : callable
        ``builder(**params) -> estimator``; not part of :meth:`to_dict`. Its keywords are
        parameters of the final estimator (the last step of a pipeline, or the estimator a
        meta-estimator such as ``CalibratedClassifierCV`` wraps), e.g. ``C`` for ``svm``.
    search_space : dict
        Hyper-parameter search space for ``earmark tune``: parameter name (as ``get_params``
        spells it, or as the builder takes it) -> list of candidate values, or ``("log", low, high)`` / ``("int", low, high)``
        ranges for random/Optuna search.
    """

    name: str
    task: Task
    preset: str
    description: str
    kind: Literal["sklearn", "torch"]
    builder: Callable[..., Any]
    search_space: dict = field(default_factory=dict)

    def to_dict(self) -> dict[str, str]:
        """JSON-able description (without the builder).

        Examples
        --------
        >>> get_spec("logreg").to_dict()["task"]
        'classification'
        """
        return {
            "name": self.name,
            "task": self.task,
            "preset": self.preset,
            "description": self.description,
            "kind": self.kind,
        }

    def param_names(self) -> list[str]:
        """Parameter names the builder takes (those of the final estimator).

        Examples
        --------
        >>> "C" in get_spec("svm").param_names()
        True
        """
        _, final = _final_estimator(self.builder())
        names = set(final.get_params(deep=False)) if hasattr(final, "get_params") else set()
        try:
            sig = inspect.signature(self.builder).parameters.values()
        except (TypeError, ValueError):
            sig = []
        names |= {p.name for p in sig if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        return sorted(names)

    def defaults(self) -> dict[str, Any]:
        """Each parameter :meth:`param_names` lists, with the value ``train`` uses when it is not given.

        Examples
        --------
        >>> get_spec("cnn").defaults()["epochs"]
        20
        """
        _, final = _final_estimator(self.builder())
        own = final.get_params(deep=False) if hasattr(final, "get_params") else {}
        try:
            sig = inspect.signature(self.builder).parameters
        except (TypeError, ValueError):
            sig = {}  # type: ignore[assignment]
        out: dict[str, Any] = {}
        for name in self.param_names():
            if name in own:
                out[name] = own[name]
            elif name in sig and sig[name].default is not inspect.Parameter.empty:
                out[name] = sig[name].default
            else:
                out[name] = None
        return out

    def short_names(self, params: dict[str, Any]) -> dict[str, Any]:
        """``params`` under the names the builder takes where it takes them (``C`` for
        ``calibratedclassifiercv__estimator__C``); other names unchanged.

        Examples
        --------
        >>> get_spec("svm").short_names({"calibratedclassifiercv__estimator__C": 10.0})
        {'C': 10.0}
        """
        prefix, _ = _final_estimator(self.builder())
        out = {}
        for key, value in params.items():
            rest = key[len(prefix):]
            out[rest if prefix and key.startswith(prefix) and "__" not in rest else key] = value
        return out

    def nested_names(self, params: dict[str, Any]) -> dict[str, Any]:
        """``params`` as ``get_params()`` of the built estimator spells them (the inverse of
        :meth:`short_names`), for ``set_params`` and grid search.

        Examples
        --------
        >>> get_spec("svm").nested_names({"C": 10.0})
        {'calibratedclassifiercv__estimator__C': 10.0}
        """
        prefix, _ = _final_estimator(self.builder())
        own = set(self.param_names()) if prefix else set()
        return {(prefix + k if k in own else k): v for k, v in params.items()}


def _final_estimator(est: Any) -> tuple[str, Any]:
    """The estimator a builder's keywords configure, and the prefix ``get_params`` gives its
    parameters inside ``est`` (``""`` when it is ``est`` itself)."""
    prefix = ""
    while True:
        steps = getattr(est, "steps", None)
        if isinstance(steps, list) and steps:
            name, est = steps[-1]
            prefix += f"{name}__"
            continue
        inner = getattr(est, "estimator", None)
        if hasattr(est, "get_params") and hasattr(inner, "get_params") and "estimator" in est.get_params(deep=False):
            est = inner
            prefix += "estimator__"
            continue
        return prefix, est


def _split_params(name: str, spec: ModelSpec, params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``params`` as builder keywords and as nested ``set_params`` names; unknown names refused."""
    if not params:
        return {}, {}
    default = spec.builder()
    prefix, _ = _final_estimator(default)
    own = spec.param_names()
    nested_names = [k for k in default.get_params(deep=True) if "__" in k] if hasattr(default, "get_params") else []
    builder_kw: dict[str, Any] = {}
    nested: dict[str, Any] = {}
    for key, value in params.items():
        if key in own:
            builder_kw[key] = value
        elif prefix and key.startswith(prefix) and key[len(prefix):] in own:
            builder_kw[key[len(prefix):]] = value
        elif key in nested_names:
            nested[key] = value
        else:
            by_lower = {n.lower(): n for n in [*own, *nested_names]}
            close = difflib.get_close_matches(key.lower(), list(by_lower), n=1)
            hint = f" Did you mean {by_lower[close[0]]!r}?" if close else ""
            pipeline = f" (or as get_params() spells them, e.g. {prefix + own[0]!r})" if prefix and own else ""
            raise ParameterError(
                f"Model {name!r} has no parameter {key!r}.{hint} Its parameters: "
                f"{', '.join(own)}{pipeline}."
            )
    return builder_kw, nested


def _check_values(name: str, est: Any) -> None:
    """Refuse parameter values now, before features are extracted, not in ``fit``."""
    parts = [est]
    if hasattr(est, "get_params"):
        parts += [v for v in est.get_params(deep=True).values() if hasattr(v, "get_params")]
    cores = os.cpu_count() or 1
    for part in parts:
        jobs = part.get_params(deep=False).get("n_jobs") if hasattr(part, "get_params") else None
        if jobs is not None and (isinstance(jobs, bool) or not isinstance(jobs, (int, np.integer)) or jobs == 0
                                 or not -cores <= jobs <= 4 * cores):
            raise ParameterError(
                f"Model {name!r}: n_jobs must be a whole number of parallel jobs from 1 to {4 * cores} (this machine "
                f"has {cores} cores), -1 for one per core (-2 for all but one…), or null; got {jobs!r}."
            )
        try:
            if hasattr(type(part), "_parameter_constraints"):
                part._validate_params()  # scikit-learn's own check of its constraint table
            if callable(getattr(part, "_check_params", None)):
                part._check_params()  # earmark's torch estimators
        except ParameterError as exc:
            raise ParameterError(f"Model {name!r}: {exc}") from None
        except (ValueError, TypeError) as exc:  # sklearn's InvalidParameterError is both
            raise ParameterError(f"Model {name!r}: {exc}") from None


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(
    name: str,
    builder: Callable[..., Any],
    *,
    task: Task,
    preset: str,
    description: str,
    kind: Literal["sklearn", "torch"] = "sklearn",
    search_space: dict | None = None,
    overwrite: bool = False,
) -> ModelSpec:
    """Add a model to the registry.

    Parameters
    ----------
    name : str
        Registry name (lower case, ``-`` separated).
    builder : callable
        ``builder(**params)`` returning an unfitted scikit-learn estimator.
    task : {"classification", "regression"}
        What the estimator predicts.
    preset : str
        Default feature preset name.
    description : str
        One-line description.
    kind : {"sklearn", "torch"}
        Estimator family.
    search_space : dict, optional
        Search space for tuning (see :class:`ModelSpec`).
    overwrite : bool
        Replace an existing entry of the same name instead of raising.

    Returns
    -------
    ModelSpec

    Examples
    --------
    >>> from sklearn.dummy import DummyClassifier
    >>> spec = register_model("dummy", DummyClassifier, task="classification",
    ...                       preset="mfcc-mean", description="baseline", overwrite=True)
    >>> spec.name
    'dummy'
    """
    if task not in ("classification", "regression"):
        raise ParameterError(
            f"The 'task' parameter of register_model must be 'classification' or 'regression'. "
            f"Got {task!r} instead."
        )
    if name in _REGISTRY and not overwrite:
        raise ParameterError(
            f"A model named {name!r} is already registered; pass overwrite=True to replace it."
        )
    spec = ModelSpec(name, task, preset, description, kind, builder, dict(search_space or {}))
    _REGISTRY[name] = spec
    return spec


def get_spec(name: str) -> ModelSpec:
    """Registry entry of a model.

    Examples
    --------
    >>> get_spec("cnn").preset
    'logmel'
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(str(name), list(_REGISTRY), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ParameterError(
            f"Unknown model {name!r}.{hint} Choose one of {sorted(_REGISTRY)} "
            "(see `earmark models list`)."
        ) from None


def get_model(name: str, **params: Any) -> Any:
    """Build an unfitted estimator by registry name.

    Parameters
    ----------
    name : str
        Registry name (see :func:`list_models`).
    **params
        Estimator parameters, e.g. ``arch="reference-173"`` for ``mlp`` or ``C=10`` for ``svm``:
        the final estimator's names (:meth:`ModelSpec.param_names`) or the nested names of
        ``get_params()`` (``calibratedclassifiercv__estimator__C``, as ``earmark tune``'s
        search spaces spell them).

    Returns
    -------
    estimator
        A scikit-learn estimator (fit / predict / score; classifiers also predict_proba).

    Raises
    ------
    ParameterError
        An unknown model or parameter name (with the valid names), or a value the estimator
        refuses.

    Examples
    --------
    >>> est = get_model("knn", n_neighbors=3)
    >>> est.get_params()["kneighborsclassifier__n_neighbors"]
    3
    >>> get_model("svm", calibratedclassifiercv__estimator__C=1.0).get_params()["calibratedclassifiercv__estimator__C"]
    1.0
    """
    spec = get_spec(name)
    builder_kw, nested = _split_params(name, spec, params)
    if "epochs" in builder_kw and "min_steps" not in builder_kw and "min_steps" in spec.param_names():
        builder_kw["min_steps"] = 0  # an epoch count given is the one trained (min_steps would raise it)
    try:
        est = spec.builder(**builder_kw)
    except TypeError as exc:
        raise ParameterError(f"Model {name!r} does not accept these parameters: {exc}") from exc
    if nested:
        est.set_params(**nested)
    _check_values(name, est)
    return est


def list_models(task: Task | None = None) -> list[ModelSpec]:
    """All registered models, optionally of one task, sorted by name.

    Examples
    --------
    >>> "cnn" in [m.name for m in list_models("classification")]
    True
    """
    return [s for _, s in sorted(_REGISTRY.items()) if task is None or s.task == task]

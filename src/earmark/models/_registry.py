"""The model registry: every model earmark offers, by name.

Adding a model means one :func:`register_model` call; nothing else branches on model names.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

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
        ``builder(**params) -> estimator``; not part of :meth:`to_dict`.
    search_space : dict
        Hyper-parameter search space for ``earmark tune``: parameter name (as ``get_params``
        spells it) -> list of candidate values, or ``("log", low, high)`` / ``("int", low, high)``
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
        Estimator parameters, e.g. ``arch="reference-173"`` for ``mlp`` or ``C=10`` for ``svm``.

    Returns
    -------
    estimator
        A scikit-learn estimator (fit / predict / score; classifiers also predict_proba).

    Examples
    --------
    >>> est = get_model("knn", n_neighbors=3)
    >>> est.get_params()["kneighborsclassifier__n_neighbors"]
    3
    """
    spec = get_spec(name)
    try:
        return spec.builder(**params)
    except TypeError as exc:
        raise ParameterError(f"Model {name!r} does not accept these parameters: {exc}") from exc


def list_models(task: Task | None = None) -> list[ModelSpec]:
    """All registered models, optionally of one task, sorted by name.

    Examples
    --------
    >>> "cnn" in [m.name for m in list_models("classification")]
    True
    """
    return [s for _, s in sorted(_REGISTRY.items()) if task is None or s.task == task]

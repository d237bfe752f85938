"""Models: the registry, scikit-learn builders, torch networks and the sklearn-compatible torch estimators.

Every model is a scikit-learn estimator; neural ones are :class:`TorchClassifier` /
:class:`TorchRegressor` wrapping a network from :mod:`earmark.models._nets`.

Example
-------
>>> from earmark.models import get_model, list_models
>>> clf = get_model("mlp", arch="reference-173", epochs=5)
>>> [m.name for m in list_models("regression")][:2]
['cnn-reg', 'gbdt-reg']
"""

from earmark.models import _catalog  # noqa: F401  (registers the built-in models)
from earmark.models._augment import AugmentConfig, augment_batch, mixup
from earmark.models._nets import SeedEnsemble, UtteranceNorm, build_network, list_archs
from earmark.models._persist import dump_estimator, load_estimator
from earmark.models._registry import ModelSpec, get_model, get_spec, list_models, register_model
from earmark.models._torch import TorchClassifier, TorchRegressor, fix_length

__all__ = [
    "AugmentConfig",
    "ModelSpec",
    "SeedEnsemble",
    "TorchClassifier",
    "TorchRegressor",
    "UtteranceNorm",
    "augment_batch",
    "build_network",
    "dump_estimator",
    "fix_length",
    "get_model",
    "get_spec",
    "list_archs",
    "list_models",
    "load_estimator",
    "mixup",
    "register_model",
]

"""The built-in models: one :func:`register_model` call each."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.naive_bayes import GaussianNB
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, MinMaxScaler, StandardScaler
from sklearn.svm import SVC, SVR

from earmark.models._registry import register_model
from earmark.models._torch import TorchClassifier, TorchRegressor

#: Standardised features are clipped to this many standard deviations of the training data.
Z_LIMIT = 10.0


def _scaled(est: Any) -> Pipeline:
    """``keep to the training range -> StandardScaler -> clip to ±Z_LIMIT -> est``.

    Features far outside anything trained on (a dimension that hardly varied in training, audio
    unlike the training audio) must not take over every distance: unclipped, one z-score in the
    thousands drives all RBF kernel values to zero and the svm answers its intercept, one class
    for every clip. The first step clamps each feature to its training range (scaling is affine,
    so in-range values keep their z-scores); the clip bounds training outliers' heavy tails.
    """
    clip = FunctionTransformer(np.clip, kw_args={"a_min": -Z_LIMIT, "a_max": Z_LIMIT},
                               feature_names_out="one-to-one")
    return Pipeline([("training_range", MinMaxScaler(clip=True)), ("standardscaler", StandardScaler()),
                     ("clip", clip), (type(est).__name__.lower(), est)])


def _pipeline(cls: type, scale: bool = True, **defaults: Any) -> Callable[..., Pipeline]:
    """Builder of ``cls`` behind :func:`_scaled` (or alone); keyword params go to ``cls``."""

    def build(**params: Any) -> Pipeline:
        est = cls(**{**defaults, **params})
        return _scaled(est) if scale else make_pipeline(est)

    build.__name__ = f"build_{cls.__name__}"
    return build


def _torch(cls: type, network: str, **defaults: Any) -> Callable[..., Any]:
    """A builder of ``cls`` with this model's defaults. Option dicts the user gives are merged into
    the model's own (``-p 'augment_options={"noise": 0}'`` on hcnn-reg keeps its ``freq_warp: 0``);
    the model's ``net_options`` are those of its default architecture and go with it only."""

    def build(**params: Any) -> Any:
        merged = {"network": network, **defaults, **params}
        for key in ("net_options", "augment_options"):
            own, given = defaults.get(key), params.get(key)
            if key == "net_options" and merged.get("arch", "default") != "default" and key not in params:
                merged[key] = None  # another architecture: the default one's options do not apply
            elif isinstance(own, dict) and isinstance(given, dict):
                merged[key] = {**own, **given}
        return cls(**merged)

    build.__name__ = f"build_{network}"
    return build


_TORCH_SPACE = {
    "lr": ("log", 3e-4, 1e-2),
    "weight_decay": ("log", 1e-4, 1e-1),
    "batch_size": [32, 64, 128],
}

register_model(
    "logreg", _pipeline(LogisticRegression, max_iter=2000), task="classification",
    preset="classic173", description="Logistic regression on standardised pooled features.",
    search_space={"logisticregression__C": [0.01, 0.1, 1.0, 10.0, 100.0]},
)
register_model(
    "knn", _pipeline(KNeighborsClassifier, n_neighbors=5), task="classification",
    preset="classic173", description="k-nearest neighbours on standardised pooled features.",
    search_space={"kneighborsclassifier__n_neighbors": [1, 3, 5, 9, 15],
                  "kneighborsclassifier__weights": ["uniform", "distance"]},
)
register_model(
    "gnb", _pipeline(GaussianNB, scale=False), task="classification", preset="classic173",
    description="Gaussian naive Bayes on pooled features.",
    search_space={"gaussiannb__var_smoothing": [1e-9, 1e-7, 1e-5, 1e-3]},
)


def _svm(**params: Any) -> Pipeline:
    svc = SVC(**{"C": 10.0, "gamma": "scale", "random_state": 0, **params})
    return _scaled(CalibratedClassifierCV(svc, ensemble=False))


register_model(
    "svm", _svm,
    task="classification", preset="classic173",
    description="RBF support-vector machine (Platt probabilities) on standardised pooled features.",
    search_space={"calibratedclassifiercv__estimator__C": [0.1, 1.0, 10.0, 100.0],
                  "calibratedclassifiercv__estimator__gamma": ["scale", 1e-3, 1e-2]},
)
register_model(
    "rf", _pipeline(RandomForestClassifier, scale=False, n_estimators=300, random_state=0),
    task="classification", preset="classic173", description="Random forest on pooled features.",
    search_space={"randomforestclassifier__n_estimators": [100, 300, 500],
                  "randomforestclassifier__max_features": ["sqrt", 0.3],
                  "randomforestclassifier__min_samples_leaf": [1, 2, 4]},
)
register_model(
    "gbdt", _pipeline(HistGradientBoostingClassifier, scale=False, random_state=0),
    task="classification", preset="classic173",
    description="Histogram gradient-boosted trees (scikit-learn) on pooled features.",
    search_space={"histgradientboostingclassifier__learning_rate": [0.03, 0.1, 0.3],
                  "histgradientboostingclassifier__max_leaf_nodes": [15, 31, 63]},
)
register_model(
    "mlp", _torch(TorchClassifier, "mlp", epochs=60), task="classification", preset="classic173",
    kind="torch",
    description="Batch-normalised MLP on pooled features (arch='reference-173' / 'reference-40' "
    "for the reference recipes).",
    search_space={**_TORCH_SPACE, "epochs": ("int", 30, 120)},
)
register_model(
    "cnn", _torch(TorchClassifier, "cnn", epochs=20, batch_size=32, lr=1e-2, min_steps=1000), task="classification",
    preset="logmel", kind="torch",
    description="Default: compact residual depthwise-separable log-mel CNN with per-utterance "
    "normalisation and augmentation (arch='reference' for the six-layer reference CNN).",
    search_space={**_TORCH_SPACE, "epochs": ("int", 15, 40)},
)
register_model(
    "lstm", _torch(TorchClassifier, "lstm"), task="classification", preset="mfcc-seq", kind="torch",
    description="Bidirectional LSTM on MFCC sequences (arch='reference' for the stacked LSTM).",
    search_space={**_TORCH_SPACE, "epochs": ("int", 15, 40)},
)
register_model(
    "cnn1d", _torch(TorchClassifier, "cnn1d"), task="classification", preset="raw", kind="torch",
    description="1-D CNN on raw waveforms (arch='reference' for the reference recipe).",
    search_space={**_TORCH_SPACE, "epochs": ("int", 15, 40)},
)
register_model(
    "ridge", _pipeline(Ridge, alpha=1.0), task="regression", preset="classic173",
    description="Ridge regression on standardised pooled features.",
    search_space={"ridge__alpha": [0.01, 0.1, 1.0, 10.0, 100.0]},
)
register_model(
    "svr", _pipeline(SVR, C=10.0, gamma="scale"), task="regression", preset="classic173",
    description="RBF support-vector regression on standardised pooled features.",
    search_space={"svr__C": [1.0, 10.0, 100.0], "svr__epsilon": [0.01, 0.1, 0.5]},
)
register_model(
    "rf-reg", _pipeline(RandomForestRegressor, scale=False, n_estimators=300, random_state=0),
    task="regression", preset="classic173", description="Random-forest regressor on pooled features.",
    search_space={"randomforestregressor__n_estimators": [100, 300],
                  "randomforestregressor__max_features": [1.0, "sqrt", 0.3]},
)
register_model(
    "gbdt-reg", _pipeline(HistGradientBoostingRegressor, scale=False, random_state=0),
    task="regression", preset="classic173",
    description="Histogram gradient-boosted regression trees on pooled features.",
    search_space={"histgradientboostingregressor__learning_rate": [0.03, 0.1, 0.3],
                  "histgradientboostingregressor__max_leaf_nodes": [15, 31, 63]},
)
register_model(
    "cnn-reg", _torch(TorchRegressor, "cnn", epochs=20, batch_size=32, lr=1e-2,
                      net_options={"pool": "time"}, augment_options={"freq_warp": 0.0, "mixup": 0.0}),
    task="regression", preset="logmel", kind="torch",
    description="The default CNN as a regressor, pooling over time only (keeps frequency "
    "position, e.g. for pitch); frequency warping off.",
    search_space={**_TORCH_SPACE, "epochs": ("int", 15, 40)},
)
register_model(
    "hcnn-reg", _torch(TorchRegressor, "hcnn", epochs=40, batch_size=32, lr=3e-3,
                       augment_options={"freq_warp": 0.0, "mixup": 0.0}),
    task="regression", preset="cqt", kind="torch",
    description="Harmonic CNN on constant-Q spectra, equivariant to pitch shifts: regression of "
    "pitch-like targets (a note's MIDI pitch).",
    search_space={**_TORCH_SPACE, "epochs": ("int", 20, 80)},
)
register_model(
    "mlp-reg", _torch(TorchRegressor, "mlp", epochs=60), task="regression", preset="classic173",
    kind="torch", description="Batch-normalised MLP regressor on pooled features.",
    search_space={**_TORCH_SPACE, "epochs": ("int", 30, 120)},
)

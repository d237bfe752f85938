"""Training: from a dataset table to a :class:`TrainedModel` (group-aware validation, features,
fit, metrics, data fingerprint), and hyper-parameter search.

Example
-------
>>> from earmark.sources import load_dataset
>>> from earmark.training import train
>>> model = train(load_dataset("../shared/data/fsdd/manifest.csv"), model="logreg",
...               features="mfcc-mean")  # doctest: +SKIP
"""

from earmark.training._train import (
    DEFAULT_CLASSIFIER,
    DEFAULT_REGRESSOR,
    PARALLEL_MIN_STEPS,
    PARALLEL_MIN_WORK,
    ChanceLevelWarning,
    ValidationCoverageWarning,
    auto_duration,
    train,
)
from earmark.training._trained import TrainedModel, summary_vectors
from earmark.training._tune import TuneResult, tune

__all__ = [
    "DEFAULT_CLASSIFIER",
    "DEFAULT_REGRESSOR",
    "PARALLEL_MIN_STEPS",
    "PARALLEL_MIN_WORK",
    "ChanceLevelWarning",
    "TrainedModel",
    "TuneResult",
    "ValidationCoverageWarning",
    "auto_duration",
    "summary_vectors",
    "train",
    "tune",
]

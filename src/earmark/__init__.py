"""earmark: from a folder of labelled recordings to a trained, evaluated and served audio classifier.

The public API is re-exported here; heavy submodules load on first use.

Example
-------
>>> import earmark
>>> y, sr = earmark.load_audio("../shared/data/fsdd/recordings/7_jackson_32.wav")  # doctest: +SKIP
>>> table = earmark.load_dataset("../shared/data/fsdd/manifest.csv")  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import Any

from earmark.audio import audio_info, content_hash, load_audio
from earmark.errors import (
    AudioDecodeError,
    AudioRangeWarning,
    BundleError,
    DatasetError,
    EarmarkError,
    EarmarkWarning,
    ParameterError,
)

__version__ = "0.1.0"

# name -> module that defines it; imported lazily so `import earmark` stays fast.
_LAZY = {
    "load_dataset": "earmark.sources",
    "summarize": "earmark.sources",
    "train_test_split": "earmark.sources",
    "iter_folds": "earmark.sources",
    "check_leakage": "earmark.sources",
    "extract": "earmark.features",
    "featurize": "earmark.features",
    "get_preset": "earmark.features",
    "list_presets": "earmark.features",
    "register_preset": "earmark.features",
    "Preset": "earmark.features",
    "FeatureSet": "earmark.features",
    "get_model": "earmark.models",
    "list_models": "earmark.models",
    "train": "earmark.training",
    "tune": "earmark.training",
    "evaluate": "earmark.evaluation",
    "cross_validate": "earmark.evaluation",
    "compare": "earmark.evaluation",
    "compute_metrics": "earmark.evaluation",
    "build_report": "earmark.evaluation",
    "explain": "earmark.evaluation",
    "write_report": "earmark.evaluation",
    "embed": "earmark.transfer",
    "finetune": "earmark.transfer",
    "synthesize": "earmark.synth",
    "create_app": "earmark.serving",
    "load_model": "earmark.bundle",
    "save_model": "earmark.bundle",
}

__all__ = [
    "AudioDecodeError",
    "AudioRangeWarning",
    "BundleError",
    "DatasetError",
    "EarmarkError",
    "EarmarkWarning",
    "ParameterError",
    "__version__",
    "audio_info",
    "content_hash",
    "load_audio",
    *sorted(_LAZY),
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'earmark' has no attribute {name!r}")
    if module.startswith(("earmark.training", "earmark.evaluation", "earmark.models")):
        importlib.import_module("earmark.transfer")  # registers 'finetune' and 'mobilenet_v2' by name
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value

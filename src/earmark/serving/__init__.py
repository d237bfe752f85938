"""Serving a trained model: prediction, the HTTP service and its web page, ONNX export, drift.

Example
-------
>>> from earmark.serving import Predictor, create_app
>>> app = create_app("models/digits")  # doctest: +SKIP
>>> Predictor.load("models/digits").predict_file("7_jackson_32.wav").label  # doctest: +SKIP
'7'
"""

from __future__ import annotations

import importlib
from typing import Any

# name -> submodule; loaded on first use so `import earmark.serving` stays light.
_LAZY = {
    "create_app": "earmark.serving.app",
    "ServeSettings": "earmark.serving.settings",
    "ServiceMetrics": "earmark.serving.metrics",
    "Prediction": "earmark.serving.predictor",
    "Predictor": "earmark.serving.predictor",
    "UploadRejected": "earmark.serving.predictor",
    "RequestLog": "earmark.serving.requestlog",
    "DriftReport": "earmark.serving.drift",
    "DriftTest": "earmark.serving.drift",
    "detect_drift": "earmark.serving.drift",
    "psi": "earmark.serving.drift",
    "benjamini_hochberg": "earmark.serving.drift",
    "predict_paths": "earmark.serving.batch",
    "monitor": "earmark.serving.monitor",
    "export_onnx": "earmark.serving.export",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'earmark.serving' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value

"""ONNX export of neural models: the network and, where expressible, the feature frontend.

The exported graph outputs class probabilities (softmax of the network's logits) for a
classifier, or predictions in target units for a regressor. With ``frontend=True`` and a preset
whose features have a torch twin (``earmark.features.logmel_module``), the graph takes the
waveform (``(batch, samples)`` at the preset's rate) and computes the features itself;
otherwise it takes the features (``(batch, *input_shape)``).

Example
-------
>>> info = export_onnx("models/cnn", "cnn.onnx")  # doctest: +SKIP
>>> info["max_abs_diff"] < 1e-4  # doctest: +SKIP
True
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from earmark.errors import ParameterError

__all__ = ["export_onnx"]

_OPSET = 17


def _wrap(module: Any, frontend: Any, classifier: bool, y_mean: float, y_scale: float) -> Any:
    import torch

    class _Exported(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.frontend = frontend
            self.net = module

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if self.frontend is not None:
                x = self.frontend(x)
            out = self.net(x)
            if classifier:
                return torch.softmax(out, dim=-1)
            return out * y_scale + y_mean

    return _Exported().eval()


def _frontend_for(preset: Any) -> Any:
    """A torch module computing ``preset`` from waveforms, or ``None`` when there is none."""
    try:
        from earmark.features import logmel_module
    except (ImportError, AttributeError):
        return None
    try:
        return logmel_module(preset)
    except Exception:  # preset without a torch twin (MFCC, chroma, …): features stay outside
        return None


def export_onnx(
    model: Any,
    path: str | os.PathLike[str],
    *,
    frontend: bool = True,
    check: bool = True,
    seconds: float = 1.0,
    seed: int = 0,
) -> dict[str, Any]:
    """Write a neural model as one ONNX graph and check it against PyTorch.

    Parameters
    ----------
    model : TrainedModel or bundle path
    path : str or path-like
        The ``.onnx`` file to write.
    frontend : bool
        Put the feature frontend in the graph when the preset has a torch twin.
    check : bool
        Run ONNX Runtime and PyTorch on the same random input and report the largest difference.
    seconds : float
        Length of the example waveform used for tracing a frontend.
    seed : int
        Seed of the check's random input.

    Returns
    -------
    dict
        ``path``, ``input_name``, ``input_shape``, ``output_name``, ``frontend`` (bool),
        ``max_abs_diff`` (or ``None`` without ``check``).

    Raises
    ------
    ParameterError
        The model is not a neural network (scikit-learn models export with skops, not ONNX).

    Example
    -------
    >>> export_onnx(trained, "model.onnx")["frontend"]  # doctest: +SKIP
    True
    """
    import torch

    if isinstance(model, (str, os.PathLike)):
        from earmark.bundle import load_model

        model = load_model(model)
    est = model.estimator
    module = getattr(est, "module_", None)
    if module is None:
        raise ParameterError(
            f"{type(est).__name__} is not a neural network; only torch models (cnn, mlp, lstm, cnn1d…) "
            "export to ONNX. scikit-learn models are served from their bundle."
        )
    classifier = hasattr(est, "classes_")
    front = _frontend_for(model.preset) if frontend else None
    wrapped = _wrap(module.cpu().eval(), front, classifier, float(getattr(est, "y_mean_", 0.0)),
                    float(getattr(est, "y_scale_", 1.0)))
    rng = np.random.default_rng(seed)
    if front is not None:
        n = max(1, int(round(seconds * model.preset.sample_rate)))
        example = torch.from_numpy(rng.uniform(-0.5, 0.5, size=(2, n)).astype(np.float32))
        input_name, axes = "waveform", {0: "batch", 1: "samples"}
    else:
        shape = tuple(int(s) for s in est.input_shape_)
        example = torch.from_numpy(rng.normal(size=(2, *shape)).astype(np.float32))
        input_name, axes = "features", {0: "batch"}
    output_name = "probabilities" if classifier else "prediction"
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        torch.onnx.export(
            wrapped, (example,), str(target), input_names=[input_name], output_names=[output_name],
            dynamic_axes={input_name: axes, output_name: {0: "batch"}}, opset_version=_OPSET, dynamo=False,
        )
        expected = wrapped(example).numpy()
    diff = None
    if check:
        import onnxruntime as ort

        sess = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"])
        got = sess.run(None, {input_name: example.numpy()})[0]
        diff = float(np.max(np.abs(got - expected)))
    return {
        "path": str(target),
        "input_name": input_name,
        "input_shape": ["batch", *(["samples"] if front is not None else list(est.input_shape_))],
        "output_name": output_name,
        "frontend": front is not None,
        "max_abs_diff": diff,
        "classes": [str(c) for c in model.classes] if classifier and model.classes is not None else None,
    }

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

__all__ = ["OnnxNetwork", "export_onnx", "onnx_network"]

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
    if isinstance(model, (str, os.PathLike)):
        from earmark.bundle import load_model

        model = load_model(model)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    info, example, expected = _export(model, str(target), frontend=frontend, seconds=seconds, seed=seed)
    diff = None
    if check:
        import onnxruntime as ort

        sess = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"])
        got = sess.run(None, {info["input_name"]: example})[0]
        diff = float(np.max(np.abs(got - expected)))
    return {"path": str(target), **info, "max_abs_diff": diff}


def _export(model: Any, target: Any, *, frontend: bool, seconds: float, seed: int
            ) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """Trace ``model`` into ``target`` (a path or a binary file object); also its example input and output."""
    import torch

    est = model.estimator
    module = getattr(est, "module_", None)
    if module is None:
        raise ParameterError(
            f"{type(est).__name__} is not a neural network; only torch models (cnn, mlp, lstm, cnn1d…) "
            "export to ONNX. scikit-learn models are served from their bundle."
        )
    if getattr(est, "tta", False):
        raise ParameterError(
            "This model averages test-time augmented views (tta=True), which the ONNX graph would not "
            "do; it runs in PyTorch. Set the estimator's tta to False to export the plain network."
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
    with torch.no_grad():
        torch.onnx.export(
            wrapped, (example,), target, input_names=[input_name], output_names=[output_name],
            dynamic_axes={input_name: axes, output_name: {0: "batch"}}, opset_version=_OPSET, dynamo=False,
        )
        expected = wrapped(example).numpy()
    info = {
        "input_name": input_name,
        "input_shape": ["batch", *(["samples"] if front is not None else list(est.input_shape_))],
        "output_name": output_name,
        "frontend": front is not None,
        "classes": [str(c) for c in model.classes] if classifier and model.classes is not None else None,
    }
    return info, example.numpy(), expected


class OnnxNetwork:
    """A torch classifier's network run by ONNX Runtime: features ``(batch, *input_shape)`` in,
    probabilities in the estimator's ``classes_`` order out.

    Built by :func:`onnx_network`; calling it is thread-safe.

    Attributes
    ----------
    input_shape : tuple of int
        Shape of one example.
    max_abs_diff : float
        Largest difference from the estimator's ``predict_proba`` on the check input.
    """

    def __init__(self, session: Any, input_name: str, input_shape: tuple[int, ...], max_abs_diff: float) -> None:
        self._session = session
        self._input = input_name
        self.input_shape = input_shape
        self.max_abs_diff = max_abs_diff

    def __call__(self, X: np.ndarray) -> np.ndarray:
        """Probabilities ``(n, n_classes)``, float64, for features ``X`` of shape ``(n, *input_shape)``."""
        x = np.ascontiguousarray(X, dtype=np.float32)
        return np.asarray(self._session.run(None, {self._input: x})[0], dtype=np.float64)


def onnx_network(model: Any, *, threads: int = 1, tolerance: float = 1e-4, seed: int = 0) -> OnnxNetwork:
    """The network of a torch classifier as an ONNX Runtime session, exported in memory and checked.

    Much cheaper per call than PyTorch for the small networks earmark trains (no Python per layer),
    which is what a service answering one clip at a time needs.

    Parameters
    ----------
    model : TrainedModel
        A classifier whose estimator is a torch network (inputs of its ``input_shape_``).
    threads : int
        ONNX Runtime intra-op threads (1: the caller runs requests in parallel).
    tolerance : float
        Largest accepted difference from ``estimator.predict_proba`` on a random check input.
    seed : int
        Seed of the check input.

    Returns
    -------
    OnnxNetwork

    Raises
    ------
    ParameterError
        Not a torch classifier, onnxruntime missing, or outputs that differ
        from PyTorch by more than ``tolerance``.

    Example
    -------
    >>> net = onnx_network(trained)  # doctest: +SKIP
    >>> net(features).shape  # doctest: +SKIP
    (16, 10)
    """
    import io

    est = model.estimator
    if not hasattr(est, "classes_") or getattr(est, "module_", None) is None:
        raise ParameterError(f"{type(est).__name__} is not a torch classifier; it runs as it is.")
    try:
        import onnxruntime as ort
    except ImportError:
        raise ParameterError("onnxruntime is not installed (pip install onnxruntime).") from None
    buf = io.BytesIO()
    info, example, _ = _export(model, buf, frontend=False, seconds=1.0, seed=seed)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(buf.getvalue(), opts, providers=["CPUExecutionProvider"])
    net = OnnxNetwork(sess, info["input_name"], tuple(int(s) for s in est.input_shape_), float("nan"))
    diff = float(np.max(np.abs(net(example) - est.predict_proba(example))))
    if not diff <= tolerance:
        raise ParameterError(f"ONNX Runtime differs from PyTorch by {diff:.2e} (> {tolerance:g}); it runs in PyTorch.")
    net.max_abs_diff = diff
    return net

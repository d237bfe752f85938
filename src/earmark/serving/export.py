"""ONNX export of neural models: the network and, where expressible, the feature frontend.

The exported graph outputs class probabilities (softmax of the network's logits) for a
classifier, or predictions in target units for a regressor. With ``frontend=True`` and a preset
whose features have a torch twin (``logmel``: :func:`earmark.features.logmel_module`; ``raw``:
the waveform itself), the graph takes the waveform (``(batch, samples)``, mono float32 at the
preset's rate, any number of samples) and brings it to the preset's fixed length exactly as
earmark's own feature code does (cropped from the start or the centre, per the preset's
``align``, and zero-padded at the end) before computing the features; so ONNX Runtime gives
what ``earmark predict`` gives for clips of any length. Clips of different lengths share one
batch only zero-padded to a common length, which is exact for ``align="start"`` (the default);
with ``align="center"`` the padding would move the crop, so send such clips one per call.
Otherwise the graph takes the features (``(batch, *input_shape)``).

The file written by :func:`export_onnx` carries what a consumer needs to feed it, as ONNX
``metadata_props``: ``earmark.sample_rate``, ``earmark.duration`` and ``earmark.samples`` (the
fixed clip length, when the preset has one), ``earmark.align``, ``earmark.classes`` (JSON list,
in the order of the output columns), ``earmark.preset`` (JSON of the preset record),
``earmark.input``, ``earmark.output``, ``earmark.task`` and ``earmark.version``.

Example
-------
>>> info = export_onnx("models/cnn", "cnn.onnx")  # doctest: +SKIP
>>> info["max_abs_diff"] < 1e-4  # doctest: +SKIP
True
>>> info["metadata"]["earmark.sample_rate"]  # doctest: +SKIP
'16000'
"""

from __future__ import annotations

import io
import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from earmark.errors import ParameterError

__all__ = ["OnnxNetwork", "export_onnx", "onnx_metadata", "onnx_network"]

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


def _target_samples(preset: Any) -> int | None:
    """The preset's fixed clip length in samples (by its feature code's own rule), or ``None``."""
    from earmark.features._presets import _target_samples as samples

    return samples(preset.sample_rate, preset.params)


def _fix_length_module(n: int, align: str, peak_normalize: bool = False) -> Any:
    """A torch module bringing ``(batch, samples)`` waveforms of any length to ``n`` samples the way
    the presets do (``earmark.features._presets._fix_length`` then zero padding at the end):
    longer clips are cropped to their first ``n`` samples (``align="start"``) or to the ``n`` from
    ``(len - n) // 2`` (``"center"``); shorter ones are followed by zeros. ``peak_normalize``
    divides each clip by its largest absolute sample (the ``raw`` preset's option)."""
    import torch
    from torch.onnx.operators import shape_as_tensor

    if align not in ("start", "center"):
        raise ParameterError(f"The 'align' of the preset must be 'start' or 'center'. Got {align!r} instead.")

    class _FixLength(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.n, self.align, self.peak_normalize = int(n), align, bool(peak_normalize)

        def forward(self, y: torch.Tensor) -> torch.Tensor:
            # zeros after every clip, then a window of n samples: no branch on the length, so the
            # traced graph is right for clips shorter and longer than n alike
            padded = torch.nn.functional.pad(y, (0, self.n))
            if self.align == "start":
                x = padded[:, : self.n]
            else:
                length = shape_as_tensor(y)[1]  # traced: the graph reads each input's length
                start = torch.clamp(torch.div(length - self.n, 2, rounding_mode="floor"), min=0)
                x = torch.index_select(padded, 1, start + torch.arange(self.n))
            if self.peak_normalize:
                peak = torch.amax(torch.abs(x), dim=1, keepdim=True)
                x = x / torch.where(peak > 0, peak, torch.ones_like(peak))
            return x

    return _FixLength().eval()


def _frontend_for(preset: Any) -> Any:
    """A torch module computing ``preset`` from waveforms of any length, or ``None`` when there is none."""
    n = _target_samples(preset)
    if n is None or preset.kind not in ("logmel", "raw"):
        return None  # MFCC, chroma, sequences of any length…: features stay outside
    import torch

    fix = _fix_length_module(n, str(preset.params.get("align", "start")),
                             bool(preset.params.get("peak_normalize", False)))
    if preset.kind == "raw":
        return fix
    try:
        from earmark.features import logmel_module

        return torch.nn.Sequential(fix, logmel_module(preset))
    except (ImportError, AttributeError, ParameterError):
        return None


def onnx_metadata(model: Any, info: dict[str, Any]) -> dict[str, str]:
    """The ``metadata_props`` :func:`export_onnx` writes: how to feed the graph and read its output.

    Parameters
    ----------
    model : TrainedModel
    info : dict
        ``input_name``, ``input_shape``, ``output_name``, ``frontend`` and ``classes`` of the export.

    Returns
    -------
    dict of str to str
        ``earmark.version``, ``earmark.task``, ``earmark.target``, ``earmark.input``,
        ``earmark.input_shape`` (JSON), ``earmark.output``, ``earmark.sample_rate``,
        ``earmark.duration`` and ``earmark.samples`` (with a fixed clip length), ``earmark.align``
        (where the preset has one), ``earmark.classes`` (JSON list, classifiers) and
        ``earmark.preset`` (JSON of the preset record).

    Example
    -------
    >>> meta = onnx_metadata(trained, info)  # doctest: +SKIP
    >>> json.loads(meta["earmark.classes"])[:3]  # doctest: +SKIP
    ['0', '1', '2']
    """
    import earmark

    preset = model.preset
    meta = {
        "earmark.version": str(earmark.__version__),
        "earmark.task": str(getattr(model, "task", "classification" if info.get("classes") else "regression")),
        "earmark.target": str(getattr(model, "target", "")),
        "earmark.input": str(info["input_name"]),
        "earmark.input_shape": json.dumps(info["input_shape"]),
        "earmark.output": str(info["output_name"]),
        "earmark.sample_rate": str(int(preset.sample_rate)),
    }
    duration = preset.params.get("duration")
    if duration is not None:
        meta["earmark.duration"] = repr(float(duration))
        meta["earmark.samples"] = str(_target_samples(preset))
    if "align" in preset.params:
        meta["earmark.align"] = str(preset.params["align"])
    if info.get("classes") is not None:
        meta["earmark.classes"] = json.dumps(list(info["classes"]), ensure_ascii=False)
    meta["earmark.preset"] = json.dumps(preset.to_dict(), sort_keys=True, ensure_ascii=False)
    return meta


def _doc_string(model: Any, info: dict[str, Any]) -> str:
    """One paragraph on the graph's input and output (the ONNX model's ``doc_string``)."""
    preset = model.preset
    if info["frontend"]:
        n = _target_samples(preset)
        how = "from the start" if preset.params.get("align", "start") == "start" else "around the centre"
        head = (f"Input {info['input_name']}: mono float32 waveforms (batch, samples) at "
                f"{preset.sample_rate} Hz, any length; the graph crops longer clips {how} and zero-pads "
                f"shorter ones at the end to {n} samples ({float(preset.params['duration']):g} s), "
                f"then computes the {preset.name!r} features.")
    else:
        head = (f"Input {info['input_name']}: {preset.name!r} features {info['input_shape']} of clips at "
                f"{preset.sample_rate} Hz.")
    tail = ("class probabilities, columns in the order of metadata earmark.classes."
            if info["output_name"] == "probabilities" else "predictions in target units.")
    return f"earmark {_model_name(model)}. {head} Output {info['output_name']}: {tail}"


def _model_name(model: Any) -> str:
    """The estimator's class and network name (``TorchClassifier(cnn)``), for the doc string."""
    est = model.estimator
    net = getattr(est, "network", None)
    return f"{type(est).__name__}({net})" if isinstance(net, str) else type(est).__name__


def _check_lengths(preset: Any, example_samples: int) -> list[int]:
    """Waveform lengths the self-check runs: the example's, shorter and longer than the clip length."""
    n = _target_samples(preset) or example_samples
    return list(dict.fromkeys([example_samples, max(1, (2 * n) // 5 + 1), 2 * n + 37]))


def export_onnx(
    model: Any,
    path: str | os.PathLike[str],
    *,
    frontend: bool = True,
    check: bool = True,
    seconds: float = 1.0,
    seed: int = 0,
) -> dict[str, Any]:
    """Write a neural model as one ONNX graph, with its metadata, and check it against PyTorch.

    With the feature frontend in the graph, the input is the waveform, of any length: the graph
    crops and zero-pads it to the preset's clip length as earmark's feature code does, so ONNX
    Runtime answers like ``earmark predict`` for short and long clips alike.

    Parameters
    ----------
    model : TrainedModel or bundle path
    path : str or path-like
        The ``.onnx`` file to write.
    frontend : bool
        Put the feature frontend in the graph when the preset has a torch twin (``logmel``,
        ``raw``); otherwise the graph takes the features.
    check : bool
        Run ONNX Runtime and PyTorch on the same random inputs and report the largest difference;
        with a frontend, on waveforms of ``seconds``, of less than half the clip length and of
        more than twice it.
    seconds : float
        Length of the example waveform used for tracing a frontend (and checking it).
    seed : int
        Seed of the check's random input.

    Returns
    -------
    dict
        ``path``, ``input_name``, ``input_shape``, ``output_name``, ``frontend`` (bool),
        ``classes`` (output column order, or ``None`` for a regressor), ``sample_rate``,
        ``duration`` (clip length in seconds, or ``None``), ``metadata`` (the ``metadata_props``
        written), ``max_abs_diff`` (ONNX Runtime against the PyTorch graph, over all checked
        inputs), ``pipeline_max_abs_diff`` (ONNX Runtime against earmark's own feature code and
        estimator, for a classifier with a frontend) and ``checked_samples`` (the waveform
        lengths checked); the last three are ``None`` without ``check``.

    Raises
    ------
    ParameterError
        The model is not a neural network (scikit-learn models export with skops, not ONNX).

    Example
    -------
    >>> info = export_onnx(trained, "model.onnx")  # doctest: +SKIP
    >>> info["frontend"], info["input_shape"]  # doctest: +SKIP
    (True, ['batch', 'samples'])
    >>> import onnx
    >>> {p.key: p.value for p in onnx.load("model.onnx").metadata_props}["earmark.duration"]  # doctest: +SKIP
    '1.0'
    """
    if isinstance(model, (str, os.PathLike)):
        from earmark.bundle import load_model

        model = load_model(model)
    import onnx

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    info, example, wrapped = _export(model, buf, frontend=frontend, seconds=seconds, seed=seed)
    proto = onnx.load_model_from_string(buf.getvalue())
    meta = onnx_metadata(model, info)
    onnx.helper.set_model_props(proto, meta)
    proto.doc_string = _doc_string(model, info)
    # written beside the target and put in place once checked: a failed check leaves no broken file
    partial = target.with_name(f".{target.name}.partial")
    try:
        onnx.save_model(proto, str(partial))
        diff = pipeline = checked = None
        if check:
            diff, pipeline, checked = _self_check(model, str(partial), info, example, wrapped, seed=seed)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return {"path": str(target), **info, "sample_rate": int(model.preset.sample_rate),
            "duration": model.preset.params.get("duration"), "metadata": meta, "max_abs_diff": diff,
            "pipeline_max_abs_diff": pipeline, "checked_samples": checked}


def _self_check(model: Any, path: str, info: dict[str, Any], example: np.ndarray, wrapped: Any, *, seed: int
                ) -> tuple[float, float | None, list[int] | None]:
    """Largest difference of ONNX Runtime from the PyTorch graph (and, for a classifier taking
    waveforms, from earmark's feature code and estimator) on random inputs; also the lengths run."""
    import onnxruntime as ort
    import torch

    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    if not info["frontend"]:
        inputs, checked = [example], None
    else:
        rng = np.random.default_rng(seed + 1)
        checked = _check_lengths(model.preset, example.shape[1])
        inputs = [example] + [rng.uniform(-0.5, 0.5, size=(2, n)).astype(np.float32) for n in checked[1:]]
    diff = 0.0
    pipeline: float | None = None
    est = model.estimator
    for x in inputs:
        got = sess.run(None, {info["input_name"]: x})[0]
        with torch.no_grad():
            expected = wrapped(torch.from_numpy(x)).numpy()
        diff = max(diff, float(np.max(np.abs(got - expected))))
        if info["frontend"] and info["classes"] is not None:
            ours = np.asarray(est.predict_proba(model.preset.transform_batch(list(x))), dtype=np.float64)
            pipeline = max(pipeline or 0.0, float(np.max(np.abs(got - ours))))
    return diff, pipeline, checked


def _export(model: Any, target: Any, *, frontend: bool, seconds: float, seed: int
            ) -> tuple[dict[str, Any], np.ndarray, Any]:
    """Trace ``model`` into ``target`` (a path or a binary file object); also its example input
    and the traced torch module."""
    import torch

    est = model.estimator
    module = getattr(est, "module_", None)
    if module is None:
        raise ParameterError(
            f"Model {(getattr(model, 'config', None) or {}).get('model') or type(est).__name__!r} is not a neural "
            "network; only torch models (cnn, mlp, lstm, cnn1d…) export to ONNX. scikit-learn models are served "
            "from their bundle (earmark serve MODEL)."
        )
    if getattr(est, "network", None) == "hf" and not getattr(module, "_torch_norm", True):
        extractor = type(getattr(module, "extractor", None)).__name__
        raise ParameterError(
            f"This Hugging Face network's feature extractor ({extractor}) runs in NumPy, outside the network, so "
            "it cannot be traced into ONNX (only wav2vec2-style extractors can). Serve the bundle itself "
            "(earmark serve MODEL), which runs it as trained.")
    if getattr(est, "tta", False):
        raise ParameterError(
            "This model averages test-time augmented views (tta=True), which the ONNX graph would not "
            "do; it is served in PyTorch (earmark serve MODEL). To export its plain network, turn the views off "
            "first: model.estimator.set_params(tta=False) in Python, then export_onnx(model, ...); or train "
            "it without -p tta=true."
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
    with torch.no_grad(), warnings.catch_warnings():
        # the exporter's notes on its own constant folding are not the user's concern
        warnings.filterwarnings("ignore", message=r".*[Cc]onstant folding.*", category=UserWarning)
        # tracing notes on Python values read during the trace (the harmonic CNN's bin tables):
        # the exported graph is checked against torch and earmark's own features right after
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        torch.onnx.export(
            wrapped, (example,), target, input_names=[input_name], output_names=[output_name],
            dynamic_axes={input_name: axes, output_name: {0: "batch"}}, opset_version=_OPSET, dynamo=False,
        )
    if classifier:
        names = getattr(est, "classes_", None)
        classes = [str(c) for c in (names if names is not None else model.classes)]
    else:
        classes = None
    info = {
        "input_name": input_name,
        "input_shape": ["batch", *(["samples"] if front is not None else [int(d) for d in est.input_shape_])],
        "output_name": output_name,
        "frontend": front is not None,
        "classes": classes,
    }
    return info, example.numpy(), wrapped


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
    est = model.estimator
    if not hasattr(est, "classes_") or getattr(est, "module_", None) is None:
        raise ParameterError(f"{type(est).__name__} is not a torch classifier, so it has no ONNX network.")
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

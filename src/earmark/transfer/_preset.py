"""The ``embed`` feature kind: presets named ``embed:MODEL`` whose features are embeddings.

They let a classical model (logistic regression, kNN, SVM) train on the vectors of a pretrained
network: ``train(df, model="logreg", features=embed_preset("birdnet"))``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from earmark.errors import ParameterError
from earmark.features import Preset, register_preset
from earmark.features._presets import _KINDS, _Kind
from earmark.transfer._embed import get_backbone, window_clip

__all__ = ["embed_preset"]


def _embed_batch(clips: Sequence[np.ndarray], sr: int, p: Mapping[str, Any]) -> np.ndarray:
    bb = get_backbone(p["model"])
    if p["window"] is None:
        return bb.embed_clips(list(clips))
    w = max(1, int(round(float(p["window"]) * sr)))
    h = max(1, int(round(float(p["hop"] or p["window"]) * sr)))
    return np.stack([bb.embed_clips(window_clip(c, w, h)).mean(axis=0) for c in clips]).astype(np.float32)


if "embed" not in _KINDS:
    _KINDS["embed"] = _Kind(
        name="embed",
        defaults={"model": "", "window": None, "hop": None},
        batch=_embed_batch,
        pooled=True,
        shape=lambda sr, p: (get_backbone(p["model"]).dim,),
        description="embedding of a pretrained network (a bundle, birdnet, torchvision:…, hf:…), "
                    "averaged over windows when a window is set",
    )


def _canonical_model(model: Any) -> str:
    spec = os.fspath(model)
    kind, sep, target = spec.partition(":")
    if sep and kind in ("torchvision", "hf"):
        return spec
    if spec == "birdnet":
        return spec
    path = Path(target if (sep and kind == "bundle") else spec)
    if not path.exists():
        raise ParameterError(
            f"embed:{spec}: no model bundle at {path}; give a bundle path, 'birdnet', "
            "'torchvision:mobilenet_v2' or 'hf:MODEL_ID_OR_DIR'."
        )
    return str(path.resolve())


def embed_preset(model: str | os.PathLike[str], *, window: float | None = None, hop: float | None = None) -> Preset:
    """Register and return the feature preset ``embed:MODEL``.

    Parameters
    ----------
    model : str or path
        A bundle path (stored absolute), ``"birdnet"`` (CC BY-NC-SA 4.0: non-commercial),
        ``"torchvision:mobilenet_v2"`` or ``"hf:MODEL_ID_OR_DIR"``.
    window, hop : float, optional
        Embed windows of ``window`` seconds every ``hop`` seconds and average them.

    Returns
    -------
    Preset
        Named ``embed:MODEL``; its sample rate is the backbone's.

    Examples
    --------
    >>> p = embed_preset("models/instruments")  # doctest: +SKIP
    >>> get_preset(p.name).output_shape  # doctest: +SKIP
    (128,)
    """
    spec = _canonical_model(model)
    bb = get_backbone(spec)
    preset = Preset(f"embed:{os.fspath(model)}", "embed", bb.sample_rate,
                    {"model": spec, "window": window, "hop": hop})
    return register_preset(preset, overwrite=True)

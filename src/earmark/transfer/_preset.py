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
from earmark.transfer._embed import file_stamp, get_backbone, window_clip

__all__ = ["embed_preset"]


_CHECKED: dict[tuple[str, tuple, str], None] = {}


def _base_manifest(path: str) -> dict[str, Any] | None:
    """The verified manifest of a base bundle on disk, or None for a model that is not one
    (birdnet, torchvision:…, hf:…)."""
    if path in ("birdnet",) or path.partition(":")[0] in ("torchvision", "hf") or not Path(path).exists():
        return None
    from earmark.bundle import read_manifest

    return read_manifest(path)


def _bundle_digest(path: str) -> str | None:
    """The sha256 of a bundle's manifest (which holds the hash of every file), or None for a
    model that is not a bundle on disk."""
    manifest = _base_manifest(path)
    return None if manifest is None else manifest.get("manifest_sha256")


def _hf_folder(spec: str) -> Path | None:
    """The local folder of an ``hf:`` spec (a checkpoint written by ``save_pretrained``), or None
    for a Hub id or another kind of model."""
    kind, sep, target = spec.partition(":")
    if kind != "hf" or not sep or not os.path.isabs(target):
        return None
    return Path(target)


def _hf_digest(folder: Path) -> str:
    """The sha256 of a local Hugging Face checkpoint's configs and weights: the embeddings change
    with any of them."""
    import hashlib

    files = sorted(f for f in folder.iterdir()
                   if f.is_file() and f.suffix in (".json", ".safetensors", ".bin", ".pt", ".pth", ".msgpack"))
    h = hashlib.sha256()
    for f in files:
        part = hashlib.sha256()
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                part.update(block)
        h.update(f"{f.name}\0{part.hexdigest()}\n".encode())
    return "hf-" + h.hexdigest()


def _embed_digest(path: str) -> str:
    """What an embed preset records of its base bundle: the manifest's sha256, and ``+rN`` when
    the base's own features have a recipe revision (``_RECIPE_REVISION``: their numbers changed,
    so the embeddings' store key changes too); '' for a model that is not a bundle on disk."""
    from earmark.features._presets import _RECIPE_REVISION

    folder = _hf_folder(path)
    if folder is not None:
        return _hf_digest(folder)
    manifest = _base_manifest(path)  # read (and every file hashed) once
    if manifest is None or not manifest.get("manifest_sha256"):
        return ""
    kind = ((manifest.get("features") or {}).get("settings") or {}).get("kind")
    revision = _RECIPE_REVISION.get(str(kind))
    return manifest["manifest_sha256"] + (f"+r{revision}" if revision else "")


def _check_digest(p: Mapping[str, Any]) -> None:
    """Refuse embeddings from a base bundle that is no longer the one the features were made with:
    a model trained on them would answer confidently and wrongly."""
    want = p.get("digest")
    if not want:
        return
    path = str(p["model"])
    stamp = file_stamp(_hf_folder(path) or Path(path))
    if (path, stamp, want) in _CHECKED:
        return
    folder = _hf_folder(path)
    if folder is not None:
        if not folder.is_dir():
            raise ParameterError(
                f"These features are embeddings by the Hugging Face checkpoint folder {folder}, which is not there "
                "(moved, or not copied to this machine). Put that folder back at that path; a model trained on "
                "embed:hf:FOLDER needs it.")
        if _hf_digest(folder) != want:
            raise ParameterError(
                f"These features are embeddings by the Hugging Face checkpoint in {folder}, which has changed "
                "since they were first made (its configs or weights differ): a model trained on them would answer "
                f"wrongly. Put the original checkpoint back, or retrain (earmark train … --features embed:hf:{folder}).")
        _CHECKED[(path, stamp, want)] = None
        return
    if not Path(path).exists():
        raise ParameterError(
            f"These features are embeddings by the bundle at {path}, which is not there (moved, or not copied to "
            "this machine). Put that bundle back at that path; a model trained on embed:BUNDLE needs it beside it.")
    now = _bundle_digest(path)
    if now != want.split("+r")[0]:  # (a '+rN' suffix is the base's feature recipe revision)
        raise ParameterError(
            f"These features are embeddings by the bundle at {path}, which has changed since they were "
            f"first made (manifest sha256 {want[:12]}… then, {(now or 'none')[:12]}… now): a model trained on "
            "them would answer wrongly. Put the original bundle back, or retrain on the new one's embeddings "
            f"(earmark train … --features embed:{path}).")
    _CHECKED[(path, stamp, want)] = None


def _embed_batch(clips: Sequence[np.ndarray], sr: int, p: Mapping[str, Any]) -> np.ndarray:
    _check_digest(p)
    bb = get_backbone(p["model"])
    if p["window"] is None:
        return bb.embed_clips(list(clips))
    w = max(1, int(round(float(p["window"]) * sr)))
    h = max(1, int(round(float(p["hop"] or p["window"]) * sr)))
    return np.stack([bb.embed_clips(window_clip(c, w, h)).mean(axis=0) for c in clips]).astype(np.float32)


if "embed" not in _KINDS:
    _KINDS["embed"] = _Kind(
        name="embed",
        defaults={"model": "", "window": None, "hop": None, "digest": ""},
        batch=_embed_batch,
        pooled=True,
        shape=lambda sr, p: (get_backbone(p["model"]).dim,),
        description="embedding of a pretrained network (a bundle, birdnet, torchvision:…, hf:…), "
                    "averaged over windows when a window is set",
        ready=lambda p: _check_digest(p),
    )


def _canonical_model(model: Any) -> str:
    spec = os.fspath(model)
    kind, sep, target = spec.partition(":")
    if sep and kind == "hf" and Path(target).is_dir():
        # a local checkpoint folder: stored absolute (a relative one is another folder, or none, in
        # another working directory) and fingerprinted (see _embed_digest)
        return f"hf:{Path(target).resolve()}"
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
        A bundle path (stored absolute, with the sha256 of its manifest: features from a bundle
        that has changed since are refused), ``"birdnet"`` (CC BY-NC-SA 4.0: non-commercial),
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
    # the base bundle's content, not only its path: a bundle retrained in place (or another one
    # moved there) is refused, and its features never come from the store under the old key
    digest = _embed_digest(spec)
    preset = Preset(f"embed:{os.fspath(model)}", "embed", bb.sample_rate,
                    {"model": spec, "window": window, "hop": hop, "digest": digest})
    return register_preset(preset, overwrite=True)

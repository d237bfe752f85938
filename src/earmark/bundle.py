"""Model bundles: one self-describing, tamper-evident package per trained model.

A bundle is a directory (or the same packed as one ``.earmark`` zip file) holding::

    manifest.json            format version, earmark and library versions, task, ordered classes,
                             feature preset and model config, metrics, history, data fingerprint,
                             the SHA-256 of every other file, and a checksum of itself
    estimator/...            the weights, written by earmark.models.dump_estimator in safe formats
                             (safetensors for PyTorch, skops for scikit-learn)
    reference.safetensors    reference statistics of the training clips (for drift monitoring)

Loading never unpickles anything: it checks the format version, the manifest checksum and every
file's hash before reading a byte of weights, and raises :class:`~earmark.errors.BundleError` saying
which check failed.

Example
-------
>>> from earmark.bundle import load_model, save_model
>>> path = save_model(trained, "digits.earmark")  # doctest: +SKIP
>>> model = load_model(path)  # doctest: +SKIP
>>> model.classes  # doctest: +SKIP
['0', '1', '2', '3', '4', '5', '6', '7', '8', '9']
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import hashlib
import importlib
import json
import math
import os
import platform
import shutil
import tempfile
import warnings
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from earmark.errors import BundleError, EarmarkWarning, ParameterError

__all__ = [
    "BUNDLE_FORMAT",
    "BUNDLE_FORMAT_VERSION",
    "BUNDLE_SUFFIX",
    "load_bundle",
    "load_model",
    "read_manifest",
    "save_model",
]

#: Value of the manifest's ``format`` field.
BUNDLE_FORMAT = "earmark-bundle"
#: The bundle format version this earmark writes, and the newest it reads.
BUNDLE_FORMAT_VERSION = 1
#: File-name suffix of packed bundles.
BUNDLE_SUFFIX = ".earmark"
MANIFEST = "manifest.json"
REFERENCE = "reference.safetensors"
ESTIMATOR_DIR = "estimator"
#: Libraries whose versions are recorded; a different major.minor at load time warns.
_LIBRARIES = ("numpy", "scipy", "scikit-learn", "torch", "librosa", "soundfile", "soxr", "safetensors",
              "skops", "onnx", "onnxruntime")
_CHECKED_LIBRARIES = ("scikit-learn", "torch")
_CHUNK = 1 << 20
_MAX_MEMBERS = 10_000


class BundleVersionWarning(EarmarkWarning):
    """A bundle was saved with another major.minor version of a library it depends on."""


# ----------------------------------------------------------------------------- helpers


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _canonical(manifest: Mapping[str, Any]) -> bytes:
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def _jsonable(obj: Any) -> Any:
    """Turn configs, numpy values, paths and dataclasses into plain JSON values (NaN → None)."""
    if obj is None or isinstance(obj, (bool, str, int)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, np.generic):
        return _jsonable(obj.item())
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if hasattr(obj, "to_dict") and callable(obj.to_dict):
        return _jsonable(obj.to_dict())
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _jsonable(dataclasses.asdict(obj))
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):  # torch scalars
        return _jsonable(obj.item())
    return str(obj)


def _library_versions() -> dict[str, str]:
    from importlib import metadata

    out = {"python": platform.python_version()}
    for name in _LIBRARIES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[name] = metadata.version(name)
    return out


def _type_name(obj: Any) -> str:
    t = type(obj)
    return f"{t.__module__}:{t.__qualname__}"


def _earmark_class(name: str | None) -> Any:
    """Resolve ``module:qualname`` to a class, only inside earmark (never arbitrary imports)."""
    if not name or ":" not in name:
        return None
    module, _, qual = name.partition(":")
    if module != "earmark" and not module.startswith("earmark."):
        return None
    try:
        obj: Any = importlib.import_module(module)
        for part in qual.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError):
        return None
    return obj


# ----------------------------------------------------------------------------- save


def save_model(
    trained: Any,
    path: str | os.PathLike[str],
    *,
    pack: bool = False,
    overwrite: bool = True,
    reference: Mapping[str, Any] | None = None,
) -> Path:
    """Save a trained model as a bundle.

    Parameters
    ----------
    trained : earmark.training.TrainedModel
        What :func:`earmark.train` returned (or :func:`load_model` loaded).
    path : str or path-like
        Target directory, or a ``.earmark`` file (packed).
    pack : bool
        Write one ``.earmark`` zip file instead of a directory (implied by a ``.earmark`` suffix).
    overwrite : bool
        Replace an existing bundle at ``path``; ``False`` raises instead.
    reference : mapping, optional
        Extra reference statistics merged into ``trained.reference`` (e.g. the drift reference
        of :func:`earmark.serving.monitor.build_reference`).

    Returns
    -------
    Path
        The bundle written (directory or file).

    Raises
    ------
    ParameterError
        ``path`` exists and ``overwrite`` is false, or is an existing non-bundle directory.

    Example
    -------
    >>> save_model(trained, "models/digits")  # doctest: +SKIP
    PosixPath('models/digits')
    >>> save_model(trained, "digits.earmark")  # doctest: +SKIP
    PosixPath('digits.earmark')
    """
    from earmark.models import dump_estimator

    if not all(hasattr(trained, a) for a in ("estimator", "preset")):
        raise ParameterError(
            f"save_model takes a trained model (earmark.train, earmark.load_model), which carries its feature "
            f"settings; got a {type(trained).__name__}. An estimator fitted by hand has no features to save with it: "
            "train it with earmark.train(dataset, model=...)."
        )
    target = Path(path)
    pack = pack or target.suffix == BUNDLE_SUFFIX
    if pack and target.suffix != BUNDLE_SUFFIX:
        target = target.with_name(target.name + BUNDLE_SUFFIX)
    if target.exists() or target.is_symlink():
        if not overwrite:
            raise ParameterError(f"{target} exists; pass overwrite=True or choose another path.")
        if target.is_dir() and any(target.iterdir()) and not (target / MANIFEST).is_file():
            raise ParameterError(
                f"{target} is a non-empty directory that is not a model bundle; refusing to replace it. "
                "Choose another path."
            )
        if not target.is_dir() and not _is_packed_bundle(target):
            raise ParameterError(
                f"{target} is a file that is not a model bundle; refusing to replace it. Choose another path."
            )
    target.parent.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory(prefix=".earmark-", dir=target.parent) as tmp:
        work = Path(tmp) / "bundle"
        (work / ESTIMATOR_DIR).mkdir(parents=True)
        description = dump_estimator(trained.estimator, work / ESTIMATOR_DIR)
        merged = {**(getattr(trained, "reference", None) or {}), **(reference or {})}
        reference_info = _save_reference(merged, work / REFERENCE)
        preset = trained.preset
        config = getattr(trained, "config", None)
        manifest: dict[str, Any] = {
            "format": BUNDLE_FORMAT,
            "format_version": BUNDLE_FORMAT_VERSION,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "earmark_version": _earmark_version(),
            "libraries": _library_versions(),
            "task": _jsonable(getattr(trained, "task", "classification")),
            "target": _jsonable(getattr(trained, "target", None)),
            "classes": _jsonable(list(trained.classes) if trained.classes is not None else None),
            "features": {"type": _type_name(preset), "settings": _jsonable(preset.to_dict())},
            "model": {"estimator": _jsonable(description), "type": _type_name(trained.estimator)},
            "config": {"type": _type_name(config), "settings": _jsonable(config)},
            "history": _jsonable(getattr(trained, "history", None)),
            "metrics": _jsonable(getattr(trained, "metrics", None)),
            "data": _jsonable(getattr(trained, "data", None)),
            "reference": reference_info,
        }
        manifest["files"] = {
            p.relative_to(work).as_posix(): _sha256(p)
            for p in sorted(work.rglob("*"))
            if p.is_file()
        }
        manifest["manifest_sha256"] = hashlib.sha256(_canonical(manifest)).hexdigest()
        (work / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False, allow_nan=False) + "\n",
                                     encoding="utf-8")
        _usual_modes(work)
        if pack:
            staged = Path(tmp) / ("packed" + BUNDLE_SUFFIX)
            with zipfile.ZipFile(staged, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
                for p in sorted(work.rglob("*")):
                    if p.is_file():
                        zf.write(p, p.relative_to(work).as_posix())
            if target.is_dir():
                shutil.rmtree(target)
            os.replace(staged, target)
        else:
            if target.exists():
                old = Path(tmp) / "old"
                os.replace(target, old)
            os.replace(work, target)
    return target


def _is_packed_bundle(path: Path) -> bool:
    """A ``.earmark`` archive with a manifest (a file ``save_model`` may replace)."""
    try:
        with zipfile.ZipFile(path) as zf:
            return MANIFEST in zf.namelist()
    except (zipfile.BadZipFile, OSError):
        return False


def _usual_modes(root: Path) -> None:
    """Give the bundle's files and folders the modes this user's umask gives new files (safetensors
    writes its files 0600, which other users of a shared model folder could not read)."""
    mask = os.umask(0)
    os.umask(mask)
    for p in [root, *root.rglob("*")]:
        if not p.is_symlink():
            p.chmod((0o777 if p.is_dir() else 0o666) & ~mask)


def _earmark_version() -> str:
    from earmark import __version__

    return __version__


def _save_reference(reference: Mapping[str, Any], file: Path) -> dict[str, Any]:
    """Numeric arrays go to safetensors; other values (group names…) stay in the manifest."""
    from safetensors.numpy import save_file

    arrays: dict[str, np.ndarray] = {}
    other: dict[str, Any] = {}
    for name, value in reference.items():
        arr = np.asarray(value)
        if arr.dtype.kind in "biuf" and arr.size:
            arrays[str(name)] = np.ascontiguousarray(arr)
        else:
            other[str(name)] = _jsonable(value)
    if arrays:
        save_file(arrays, str(file))
    return {
        "file": REFERENCE if arrays else None,
        "arrays": {k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in arrays.items()},
        "values": other,
    }


# ----------------------------------------------------------------------------- read / verify


def _check_manifest(manifest: Any, where: str) -> dict[str, Any]:
    if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"{where}: not an earmark model bundle (manifest has no format '{BUNDLE_FORMAT}').")
    version = manifest.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise BundleError(f"{where}: unknown bundle format version {version!r}; the manifest is damaged.")
    if version > BUNDLE_FORMAT_VERSION:
        raise BundleError(
            f"{where}: unknown bundle format version {version} (made by earmark "
            f"{manifest.get('earmark_version', '?')}); this earmark reads versions up to "
            f"{BUNDLE_FORMAT_VERSION}. Upgrade earmark to load it."
        )
    expected = manifest.get("manifest_sha256")
    try:
        actual = hashlib.sha256(_canonical(manifest)).hexdigest()
    except ValueError as exc:
        raise BundleError(f"{where}: manifest holds values that cannot be checked ({exc}).") from None
    if expected != actual:
        raise BundleError(
            f"{where}: hash mismatch in {MANIFEST}: it was modified after saving (tampered or corrupt). "
            "Re-export the model from its source."
        )
    if not isinstance(manifest.get("files"), dict):
        raise BundleError(f"{where}: manifest lists no files; the bundle is damaged.")
    return manifest


def _parse_manifest(raw: bytes, where: str) -> dict[str, Any]:
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{where}: {MANIFEST} is corrupt (not valid JSON: {exc}).") from None
    return _check_manifest(manifest, where)


def _safe_member(name: str) -> bool:
    p = Path(name)
    return not (p.is_absolute() or ".." in p.parts or name.startswith(("/", "\\")))


def _verify_directory(root: Path, manifest: Mapping[str, Any], where: str) -> None:
    for rel, digest in manifest["files"].items():
        if not _safe_member(rel):
            raise BundleError(f"{where}: manifest names an unsafe file path {rel!r}; refusing to load.")
        file = root / rel
        if not file.is_file():
            raise BundleError(f"{where}: file {rel} listed in the manifest is missing (corrupt bundle).")
        try:
            actual = _sha256(file)
        except OSError as exc:
            raise BundleError(f"{where}: cannot read {rel} ({exc.strerror or exc}); check the file's "
                              "permissions (the bundle's files must be readable by this user).") from None
        if actual != digest:
            raise BundleError(
                f"{where}: hash mismatch for {rel}: the file was modified after saving (tampered or corrupt)."
            )


@contextlib.contextmanager
def _opened(path: str | os.PathLike[str]) -> Iterator[tuple[Path, dict[str, Any]]]:
    """Yield ``(directory, verified manifest)`` of a bundle directory or ``.earmark`` file."""
    src = Path(path)
    where = str(src)
    if src.is_dir():
        mf = src / MANIFEST
        if not mf.is_file():
            raise BundleError(f"{where}: not a model bundle (no {MANIFEST}); pass a bundle directory or .earmark file.")
        try:
            raw = mf.read_bytes()
        except OSError as exc:
            raise BundleError(f"{where}: cannot read {MANIFEST} ({exc.strerror or exc}); check its permissions.") from None
        manifest = _parse_manifest(raw, where)
        _verify_directory(src, manifest, where)
        yield src, manifest
        return
    if not src.exists():
        raise BundleError(f"{where}: no such model bundle; check the path.")
    try:
        zf = zipfile.ZipFile(src)
    except (zipfile.BadZipFile, OSError) as exc:
        try:
            with open(src, "rb") as f:
                zipped = f.read(4) == b"PK\x03\x04"
        except OSError:
            zipped = True
        if not zipped:  # an audio file, a CSV… given where a model goes
            raise BundleError(f"{where}: not a model bundle (neither a bundle folder nor an .earmark archive); "
                              "pass the folder or .earmark file earmark train --out wrote.") from None
        raise BundleError(f"{where}: corrupt bundle file (not a valid .earmark archive: {exc}).") from None
    with zf, tempfile.TemporaryDirectory(prefix="earmark-bundle-") as tmp:
        try:
            names = zf.namelist()
            if len(names) > _MAX_MEMBERS:
                raise BundleError(f"{where}: archive holds {len(names)} members; not an earmark bundle.")
            if MANIFEST not in names:
                raise BundleError(f"{where}: not a model bundle (no {MANIFEST} inside the archive).")
            manifest = _parse_manifest(zf.read(MANIFEST), where)
            root = Path(tmp)
            for rel in manifest["files"]:
                if not _safe_member(rel):
                    raise BundleError(f"{where}: manifest names an unsafe file path {rel!r}; refusing to load.")
                if rel not in names:
                    raise BundleError(f"{where}: file {rel} listed in the manifest is missing (corrupt bundle).")
                dest = root / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(rel) as fin, open(dest, "wb") as fout:
                    shutil.copyfileobj(fin, fout, _CHUNK)
        except (zipfile.BadZipFile, OSError, EOFError) as exc:  # CRC errors, truncation
            raise BundleError(f"{where}: corrupt bundle file ({exc}).") from None
        _verify_directory(root, manifest, where)
        yield root, manifest


def read_manifest(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and verify a bundle's manifest (hashes of every file included) without loading weights.

    Raises
    ------
    BundleError
        Corrupt, tampered or unknown-version bundle; the message says which.

    Example
    -------
    >>> read_manifest("models/digits")["classes"]  # doctest: +SKIP
    ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9']
    """
    with _opened(path) as (_, manifest):
        return manifest


def _check_libraries(manifest: Mapping[str, Any], where: str) -> None:
    saved = manifest.get("libraries") or {}
    now = _library_versions()
    for name in _CHECKED_LIBRARIES:
        a, b = saved.get(name), now.get(name)
        if a and b and a.split(".")[:2] != b.split(".")[:2]:
            warnings.warn(
                f"{where} was saved with {name} {a}; this environment has {b}. Predictions may differ; "
                "re-train or install the saved version if they do.",
                BundleVersionWarning,
                stacklevel=3,
            )


def load_model(path: str | os.PathLike[str]) -> Any:
    """Load a bundle written by :func:`save_model`, after checking it.

    Parameters
    ----------
    path : str or path-like
        A bundle directory or ``.earmark`` file.

    Returns
    -------
    earmark.training.TrainedModel

    Raises
    ------
    BundleError
        The bundle is corrupt (unreadable archive or manifest, missing file), tampered (a hash
        does not match) or of an unknown format version; the message says which.

    Example
    -------
    >>> model = load_model("digits.earmark")  # doctest: +SKIP
    >>> model.predict(["../shared/data/fsdd/recordings/7_jackson_32.wav"])["label"].tolist()  # doctest: +SKIP
    ['7']
    """
    return load_bundle(path)[0]


def load_bundle(path: str | os.PathLike[str]) -> tuple[Any, dict[str, Any]]:
    """Like :func:`load_model`, also returning the verified manifest (versions, metrics, files).

    Example
    -------
    >>> model, manifest = load_bundle("digits.earmark")  # doctest: +SKIP
    >>> manifest["format_version"]  # doctest: +SKIP
    1
    """
    import earmark.transfer  # noqa: F401  (registers fine-tuned networks and classes a bundle may hold)
    from earmark.features import Preset
    from earmark.models import load_estimator
    from earmark.training import TrainedModel

    where = str(path)
    with _opened(path) as (root, manifest):
        _check_libraries(manifest, where)
        try:
            estimator = load_estimator(root / ESTIMATOR_DIR, manifest["model"]["estimator"])
            preset = Preset.from_dict(manifest["features"]["settings"])
            reference = _load_reference(root, manifest.get("reference") or {})
        except BundleError:
            raise
        except Exception as exc:  # a verified bundle that still fails to load: say so, with the cause
            raise BundleError(f"{where}: the bundle's contents cannot be loaded ({type(exc).__name__}: {exc}).") from exc
    cfg = manifest.get("config") or {}
    config = cfg.get("settings")
    cls = _earmark_class(cfg.get("type"))
    if config is not None and cls is not None and hasattr(cls, "from_dict"):
        with contextlib.suppress(Exception):
            config = cls.from_dict(config)
    values = {
        "estimator": estimator,
        "preset": preset,
        "task": manifest.get("task"),
        "classes": manifest.get("classes"),
        "target": manifest.get("target"),
        "config": config,
        "history": manifest.get("history"),
        "metrics": manifest.get("metrics"),
        "data": manifest.get("data"),
        "reference": reference,
    }
    names = {f.name for f in dataclasses.fields(TrainedModel)} if dataclasses.is_dataclass(TrainedModel) else set(values)
    return TrainedModel(**{k: v for k, v in values.items() if k in names}), manifest


def _load_reference(root: Path, info: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if info.get("file"):
        from safetensors.numpy import load_file

        out.update(load_file(str(root / info["file"])))
    for k, v in (info.get("values") or {}).items():
        out[k] = np.asarray(v) if isinstance(v, list) else v
    return out

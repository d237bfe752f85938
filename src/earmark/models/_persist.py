"""Safe persistence of fitted estimators: nothing is ever unpickled.

- torch estimators: weights in ``safetensors`` + a JSON description (parameters, shapes, classes);
- scikit-learn estimators: ``skops`` files, loaded with an explicit allow-list of types
  (scikit-learn, NumPy and SciPy types only).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from earmark.errors import BundleError, ParameterError
from earmark.models._torch import TorchClassifier, TorchRegressor, _TorchEstimator

__all__ = ["dump_estimator", "load_estimator"]

_TORCH_CLASSES = {"TorchClassifier": TorchClassifier, "TorchRegressor": TorchRegressor}
_TRUSTED_PREFIXES = ("sklearn.", "numpy.", "scipy.", "builtins.")
WEIGHTS_FILE = "weights.safetensors"
SKOPS_FILE = "estimator.skops"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _jsonable_classes(classes: np.ndarray) -> dict:
    kind = classes.dtype.kind
    if kind in "iu":
        return {"values": [int(c) for c in classes], "dtype": "int"}
    if kind == "f":
        return {"values": [float(c) for c in classes], "dtype": "float"}
    if kind == "b":
        return {"values": [bool(c) for c in classes], "dtype": "bool"}
    return {"values": [str(c) for c in classes], "dtype": "str"}


def _classes_from_json(d: dict) -> np.ndarray:
    dtype = {"int": np.int64, "float": np.float64, "bool": bool, "str": object}[d["dtype"]]
    arr = np.array(d["values"], dtype=dtype)
    return arr.astype(str) if d["dtype"] == "str" else arr


def dump_estimator(est: Any, directory: str | Path) -> dict:
    """Write a fitted estimator into ``directory`` in a safe format.

    Parameters
    ----------
    est : estimator
        A fitted earmark model (torch-backed or scikit-learn).
    directory : str or Path
        Existing or new directory; files written are listed in the returned description.

    Returns
    -------
    dict
        JSON-able description to pass back to :func:`load_estimator` (format, class, parameters,
        shapes, file names and their SHA-256).

    Examples
    --------
    >>> from earmark.models import get_model
    >>> import numpy as np, tempfile
    >>> X, y = np.random.default_rng(0).normal(size=(20, 3)), np.arange(20) % 2
    >>> d = tempfile.mkdtemp()
    >>> desc = dump_estimator(get_model("logreg").fit(X, y), d)
    >>> desc["format"]
    'skops'
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if isinstance(est, _TorchEstimator):
        if not hasattr(est, "module_"):
            raise ParameterError(f"{type(est).__name__} is not fitted; call fit before dump_estimator.")
        from safetensors.torch import save_file

        state = {k: v.detach().cpu().contiguous() for k, v in est.module_.state_dict().items()}
        path = directory / WEIGHTS_FILE
        save_file(state, str(path))
        params = est.get_params(deep=False)
        params["callbacks"] = None
        params["checkpoint_dir"] = None
        params["resume"] = False
        desc: dict[str, Any] = {
            "format": "torch-safetensors",
            "class": type(est).__name__,
            "params": params,
            "input_shape": list(est.input_shape_),
            "n_frames": est.n_frames_,
            "n_features_in": int(est.n_features_in_),
            "history": est.history_,
            # every member's history (an ensemble); absent for one network
            **({"histories": est.histories_} if len(getattr(est, "histories_", ())) > 1 else {}),
            "best_epoch": int(est.best_epoch_),
            "files": {WEIGHTS_FILE: _sha256(path)},
        }
        if isinstance(est, TorchClassifier):
            desc["classes"] = _jsonable_classes(est.classes_)
        else:
            desc["y_mean"] = est.y_mean_
            desc["y_scale"] = est.y_scale_
        json.dumps(desc)  # fail here, not in the bundle writer, if something is not JSON-able
        return desc
    import skops.io as sio

    path = directory / SKOPS_FILE
    sio.dump(est, path)
    untrusted = sio.get_untrusted_types(file=path)
    bad = [t for t in untrusted if not t.startswith(_TRUSTED_PREFIXES)]
    if bad:
        raise ParameterError(
            f"{type(est).__name__} contains types earmark cannot persist safely: {bad}. "
            "Use a model from `earmark models list`."
        )
    return {
        "format": "skops",
        "class": type(est).__name__,
        "file": SKOPS_FILE,
        "trusted_types": sorted(untrusted),
        "files": {SKOPS_FILE: _sha256(path)},
    }


def _check_hash(directory: Path, desc: dict) -> None:
    for name, digest in desc.get("files", {}).items():
        path = directory / name
        if not path.is_file():
            raise BundleError(f"{path}: file missing from the model directory; re-save the model.")
        if _sha256(path) != digest:
            raise BundleError(
                f"{path}: SHA-256 does not match the description (file changed or corrupt); "
                "re-save the model."
            )


def load_estimator(directory: str | Path, description: dict) -> Any:
    """Rebuild an estimator written by :func:`dump_estimator` (no unpickling).

    Parameters
    ----------
    directory : str or Path
        The directory passed to :func:`dump_estimator`.
    description : dict
        The description it returned.

    Returns
    -------
    estimator
        Fitted, ready to predict.

    Examples
    --------
    >>> from earmark.models import get_model
    >>> import numpy as np, tempfile
    >>> X, y = np.random.default_rng(0).normal(size=(20, 3)), np.arange(20) % 2
    >>> d = tempfile.mkdtemp()
    >>> est = get_model("logreg").fit(X, y)
    >>> bool((load_estimator(d, dump_estimator(est, d)).predict(X) == est.predict(X)).all())
    True
    """
    directory = Path(directory)
    fmt = description.get("format")
    _check_hash(directory, description)
    if fmt == "torch-safetensors":
        from safetensors.torch import load_file

        from earmark.models._nets import SeedEnsemble, build_network

        cls = _TORCH_CLASSES.get(description.get("class", ""))
        if cls is None:
            raise BundleError(f"{directory}: unknown estimator class {description.get('class')!r}.")
        est = cls(**description["params"])
        est.input_shape_ = tuple(description["input_shape"])
        est.n_frames_ = description["n_frames"]
        est.n_features_in_ = description["n_features_in"]
        est.history_ = description.get("history", [])
        est.histories_ = description.get("histories", [est.history_])
        est.best_epoch_ = description.get("best_epoch", 0)
        est.n_epochs_ = len(est.history_)
        if issubclass(cls, TorchClassifier):
            est.classes_ = _classes_from_json(description["classes"])
            n_out = len(est.classes_)
        else:
            est.y_mean_ = float(description["y_mean"])
            est.y_scale_ = float(description["y_scale"])
            n_out = 1
        n_members = int(getattr(est, "ensemble", 1))
        module = build_network(est.network, est.arch, est.input_shape_, n_out, est.net_options)
        if n_members > 1:
            module = SeedEnsemble(
                [module, *(build_network(est.network, est.arch, est.input_shape_, n_out, est.net_options)
                           for _ in range(n_members - 1))],
                "classification" if issubclass(cls, TorchClassifier) else "regression",
            )
        try:
            module.load_state_dict(load_file(str(directory / WEIGHTS_FILE)))
        except RuntimeError as exc:
            raise BundleError(f"{directory / WEIGHTS_FILE}: weights do not fit the network: {exc}") from exc
        est.module_ = module.eval()
        return est
    if fmt == "skops":
        import skops.io as sio

        trusted = list(description.get("trusted_types", []))
        bad = [t for t in trusted if not t.startswith(_TRUSTED_PREFIXES)]
        if bad:
            raise BundleError(f"{directory}: description asks to trust unsafe types {bad}; refusing.")
        path = directory / description.get("file", SKOPS_FILE)
        try:
            return sio.load(path, trusted=trusted)
        except Exception as exc:  # skops raises plain exceptions on untrusted/corrupt files
            raise BundleError(f"{path}: cannot load the scikit-learn model safely: {exc}") from exc
    raise BundleError(f"{directory}: unknown estimator format {fmt!r}; re-save the model.")

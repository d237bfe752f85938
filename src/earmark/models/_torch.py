"""scikit-learn estimators wrapping PyTorch networks: :class:`TorchClassifier`, :class:`TorchRegressor`.

The training loop lives here: AdamW, one-cycle learning rate, gradient clipping, early stopping on
a validation split (given explicitly, or carved by group / stratified), best-checkpoint restore,
class weighting, seeded determinism, on-the-fly augmentation, per-epoch history and resume from a
checkpoint. After ``fit``, ``module_`` is the trained ``nn.Module`` in eval mode on the CPU; it
takes float32 batches of shape ``(batch, *input_shape_)`` and returns logits (classifier) or
standardised predictions (regressor: multiply by ``y_scale_`` and add ``y_mean_``). That is all an
exporter (ONNX) needs to trace it.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import pickle
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.model_selection import GroupShuffleSplit, StratifiedShuffleSplit
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from earmark.errors import ParameterError
from earmark.models._augment import AugmentConfig, augment_batch, mixup, tta_views
from earmark.models._nets import (
    ARCHS,
    SeedEnsemble,
    _Standardize,
    average_outputs,
    build_network,
    use_channels_last,
)

__all__ = ["TorchClassifier", "TorchRegressor", "fix_length"]

_SEQUENCE_NETWORKS = {"cnn", "lstm", "cnn1d"}
CHECKPOINT_NAME = "checkpoint.pt"
#: Estimator parameters that do not change what training computes, left out of a checkpoint's
#: fingerprint (every other parameter, a subclass's included, is in it).
_NOT_FINGERPRINTED = frozenset({"checkpoint_dir", "resume", "callbacks", "device", "tta"})


def _data_digest(**arrays: np.ndarray) -> str:
    """Shapes and a BLAKE2b digest of the bytes of ``arrays`` (one pass over the data: cheap next to
    an epoch of training), e.g. ``"X (36, 40), y (36,), digest 2605be90cc4ffa79"``."""
    h = hashlib.blake2b(digest_size=16)
    for a in arrays.values():
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(memoryview(a).cast("B"))
    shapes = ", ".join(f"{name} {tuple(a.shape)}" for name, a in arrays.items())
    return f"{shapes}, digest {h.hexdigest()[:16]}"


def _as_text(value: Any) -> str:
    try:
        return json.dumps(value, sort_keys=True)
    except (TypeError, ValueError):
        return repr(value)


def fix_length(
    clips: Sequence[np.ndarray] | np.ndarray, n_frames: int, *, pad: str = "min", crop: str = "center"
) -> np.ndarray:
    """Pad or crop every example along its last axis to ``n_frames`` and stack them.

    Parameters
    ----------
    clips : sequence of ndarray
        Examples of shape ``(..., frames_i)``; all leading axes must agree.
    n_frames : int
        Target length.
    pad : {"min", "zeros", "edge"}
        Fill for short examples (at the end): the example's minimum (silence in a dB spectrogram),
        zeros (silence in a waveform) or the last frame repeated.
    crop : {"center", "start"}
        Which part of a long example to keep.

    Returns
    -------
    ndarray, shape (n_examples, ..., n_frames), float32

    Examples
    --------
    >>> fix_length([np.ones((2, 3)), np.ones((2, 7))], 5, pad="zeros").shape
    (2, 2, 5)
    """
    if pad not in ("min", "zeros", "edge"):
        raise ParameterError(f"The 'pad' parameter must be 'min', 'zeros' or 'edge'. Got {pad!r} instead.")
    if crop not in ("center", "start"):
        raise ParameterError(f"The 'crop' parameter must be 'center' or 'start'. Got {crop!r} instead.")
    out = []
    for c in clips:
        c = np.asarray(c, dtype=np.float32)
        t = c.shape[-1]
        if t > n_frames:
            start = (t - n_frames) // 2 if crop == "center" else 0
            c = c[..., start : start + n_frames]
        elif t < n_frames:
            width = [(0, 0)] * (c.ndim - 1) + [(0, n_frames - t)]
            if pad == "edge" and t > 0:
                c = np.pad(c, width, mode="edge")
            else:
                value = float(c.min()) if (pad == "min" and c.size) else 0.0
                c = np.pad(c, width, mode="constant", constant_values=value)
        out.append(c)
    return np.stack(out).astype(np.float32, copy=False)


def class_weights_by_label(class_weight: Mapping[Any, Any], classes: Sequence[str]) -> dict[str, float]:
    """A ``class_weight`` dict keyed by the labels as text ('7' and 7 name one class); a key that
    names no class of ``classes`` is refused.

    Example
    -------
    >>> class_weights_by_label({7: 2}, ["0", "7"])
    {'7': 2.0}
    """
    given = {str(k): float(v) for k, v in class_weight.items()}
    unknown = sorted(set(given) - set(classes))
    if unknown:
        raise ParameterError(f"class_weight names {unknown}, which are not classes of the training data; "
                             f"the classes are {sorted(classes)}.")
    return given


def _check_device(device: Any) -> None:
    """Refuse a device that is not one or that this machine does not have (PyTorch's own
    ``AssertionError: Torch not compiled with CUDA enabled`` came after feature extraction)."""
    if device == "auto":
        return
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ParameterError(f"The 'device' parameter must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'. "
                             f"Got {device!r} instead.") from None
    if dev.type == "cuda" and (not torch.cuda.is_available()
                               or (dev.index is not None and dev.index >= torch.cuda.device_count())):
        raise ParameterError(f"device={device!r}, but this machine has no such CUDA device "
                             f"({torch.cuda.device_count()} found); use device='auto' or 'cpu'.")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()):
        raise ParameterError(f"device={device!r}, but MPS is not available here; use device='auto' or 'cpu'.")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ParameterError(f"The 'device' parameter must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'. "
                             f"Got {device!r} instead.")


def _resolve_device(device: str) -> torch.device:
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(device)


class _TorchEstimator(BaseEstimator):
    """Shared machinery of the torch-backed estimators (not public)."""

    _task = "classification"

    def __init__(
        self,
        network: str = "cnn",
        arch: str = "default",
        *,
        net_options: dict | None = None,
        epochs: int = 30,
        batch_size: int = 64,
        lr: float = 3e-3,
        weight_decay: float = 1e-2,
        max_grad_norm: float = 5.0,
        patience: int = 10,
        validation_fraction: float = 0.15,
        augment: bool = True,
        augment_options: dict | None = None,
        max_frames: int | None = None,
        pad: str = "auto",
        crop: str = "center",
        random_state: int | None = 0,
        device: str = "auto",
        checkpoint_dir: str | None = None,
        resume: bool = False,
        callbacks: Sequence[Callable[[Any, dict], None]] | None = None,
        tta: bool = False,
        ensemble: int = 1,
        min_steps: int = 0,
    ) -> None:
        self.network = network
        self.arch = arch
        self.net_options = net_options
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.max_grad_norm = max_grad_norm
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.augment = augment
        self.augment_options = augment_options
        self.max_frames = max_frames
        self.pad = pad
        self.crop = crop
        self.random_state = random_state
        self.device = device
        self.checkpoint_dir = checkpoint_dir
        self.resume = resume
        self.callbacks = callbacks
        self.tta = tta
        self.ensemble = ensemble
        self.min_steps = min_steps

    # ------------------------------------------------------------------ validation helpers
    def _check_params(self) -> None:
        name = type(self).__name__
        if not any(n == self.network for n, _ in ARCHS):
            raise ParameterError(
                f"The 'network' parameter of {name} must be one of "
                f"{sorted({n for n, _ in ARCHS})}. Got {self.network!r} instead."
            )
        checks = [
            ("epochs", self.epochs, 1, 100_000),
            ("batch_size", self.batch_size, 1, 1_000_000),
            ("patience", self.patience, 0, 100_000),
            ("ensemble", getattr(self, "ensemble", 1), 1, 100),
            ("min_steps", getattr(self, "min_steps", 0), 0, 100_000_000),
        ]
        for pname, value, lo, hi in checks:
            if not isinstance(value, (int, np.integer)) or not lo <= value <= hi:
                raise ParameterError(
                    f"The '{pname}' parameter of {name} must be an int in [{lo}, {hi}]. Got {value!r} instead."
                )
        for pname, value in (("lr", self.lr), ("weight_decay", self.weight_decay), ("max_grad_norm", self.max_grad_norm)):
            if not isinstance(value, (int, float)) or value < 0 or not math.isfinite(value):
                raise ParameterError(
                    f"The '{pname}' parameter of {name} must be a float >= 0. Got {value!r} instead."
                )
        for pname in ("augment", "tta", "resume"):
            value = getattr(self, pname, False)
            if not isinstance(value, (bool, np.bool_)):
                raise ParameterError(f"The '{pname}' parameter of {name} must be true or false. Got {value!r} instead.")
        if self.resume and not self.checkpoint_dir:
            raise ParameterError(f"resume=True (-p resume=true) continues from the checkpoints in checkpoint_dir, "
                                 f"and {name} has none: pass checkpoint_dir too (-p checkpoint_dir=DIR).")
        if not isinstance(self.validation_fraction, (int, float)) or not 0 <= self.validation_fraction < 1:
            raise ParameterError(
                f"The 'validation_fraction' parameter of {name} must be a float in [0, 1). "
                f"Got {self.validation_fraction!r} instead."
            )
        if self.pad not in ("auto", "min", "zeros", "edge"):
            raise ParameterError(
                f"The 'pad' parameter of {name} must be 'auto', 'min', 'zeros' or 'edge'. Got {self.pad!r} instead."
            )
        # found now, before any feature is extracted, rather than when the network is built
        if (self.network, self.arch) not in ARCHS:
            known = sorted(a for n, a in ARCHS if n == self.network)
            raise ParameterError(f"The 'arch' parameter of the {self.network} network must be one of {known}. "
                                 f"Got {self.arch!r} instead.")
        if self.net_options is not None and not isinstance(self.net_options, dict):
            raise ParameterError(f"The 'net_options' parameter of {name} must be a dict (or None). "
                                 f"Got {self.net_options!r} instead.")
        AugmentConfig.from_options(self.augment_options)  # unknown keys and bad values
        _check_device(self.device)

    @property
    def _is_sequence(self) -> bool:
        return self.network in _SEQUENCE_NETWORKS

    def _steps_per_epoch(self, n_samples: int) -> int:
        # a last batch of one example is skipped (batch norm cannot train on it)
        bs = int(self.batch_size)
        return max(1, n_samples // bs + (1 if n_samples % bs > 1 else 0))

    def epoch_budget(self, n_samples: int) -> int:
        """Epochs that :meth:`fit` on ``n_samples`` training examples runs at most: ``epochs``,
        raised when needed so that training takes at least ``min_steps`` optimizer steps.

        Example
        -------
        >>> TorchClassifier("cnn", epochs=20, batch_size=32, min_steps=1000).epoch_budget(800)
        40
        >>> TorchClassifier("cnn", epochs=20, batch_size=32, min_steps=1000).epoch_budget(2000)
        20
        """
        min_steps = int(getattr(self, "min_steps", 0) or 0)
        return max(int(self.epochs), -(-min_steps // self._steps_per_epoch(int(n_samples))))

    def _pad_mode(self) -> str:
        if self.pad != "auto":
            return self.pad
        return "zeros" if self.network == "cnn1d" else "min"

    def _to_array(self, X: Any, *, fitting: bool) -> np.ndarray:
        """Turn X (array or ragged list of clips) into a float32 array of fixed shape."""
        ragged = isinstance(X, (list, tuple)) and len(X) > 0 and isinstance(X[0], np.ndarray) and (
            len({np.shape(c) for c in X}) > 1
        )
        ragged = ragged or (
            isinstance(X, np.ndarray) and X.dtype == object and X.ndim == 1 and len(X) > 0
            and isinstance(X[0], np.ndarray)
        )
        if ragged:
            if not self._is_sequence:
                raise ParameterError(
                    f"The {self.network} network needs examples of one shape; got clips of "
                    "different lengths. Use a pooled preset or a sequence network (cnn, lstm, cnn1d)."
                )
            clips = list(X)
            if fitting:
                lengths = np.array([np.shape(c)[-1] for c in clips])
                n_frames = self.max_frames or int(np.ceil(np.percentile(lengths, 95)))
            else:
                n_frames = self.n_frames_
            X = fix_length(clips, int(n_frames), pad=self._pad_mode(), crop=self.crop)
        elif self._is_sequence and not fitting and getattr(self, "n_frames_", None) is not None:
            X = np.asarray(X, dtype=np.float32)
            if X.ndim >= 2 and X.shape[-1] != self.n_frames_:
                X = fix_length(list(X), self.n_frames_, pad=self._pad_mode(), crop=self.crop)
        elif self._is_sequence and fitting and self.max_frames:
            X = np.asarray(X, dtype=np.float32)
            if X.ndim >= 2 and X.shape[-1] != self.max_frames:
                X = fix_length(list(X), self.max_frames, pad=self._pad_mode(), crop=self.crop)
        return X

    def _validate_X(self, X: Any, *, reset: bool) -> np.ndarray:
        X = self._to_array(X, fitting=reset)
        return validate_data(self, X, reset=reset, allow_nd=True, dtype=np.float32, ensure_min_samples=1)

    def _kind(self, ndim_per_example: int) -> str:
        if self.network == "cnn1d":
            return "waveform"
        if ndim_per_example >= 2:
            return "spectrogram"
        return "vector"

    # ------------------------------------------------------------------ targets (overridden)
    def _encode_targets(self, y: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _n_outputs(self) -> int:
        raise NotImplementedError

    def _loss(self, out: torch.Tensor, target: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _sample_class_weights(self, y_enc: np.ndarray) -> np.ndarray:
        return np.ones(len(y_enc), dtype=np.float32)

    def _split(self, y: np.ndarray, groups: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        n = len(y)
        idx = np.arange(n)
        frac = self.validation_fraction
        if frac <= 0:
            return idx, idx[:0]
        if groups is not None and len(np.unique(groups)) >= 3:
            splitter = GroupShuffleSplit(n_splits=1, test_size=frac, random_state=self.random_state)
            tr, va = next(splitter.split(idx, y, groups))
            return tr, va
        if self._task == "classification":
            _, counts = np.unique(y, return_counts=True)
            n_val = math.ceil(frac * n)
            if counts.min() < 2 or n_val < len(counts) or n - n_val < len(counts):
                return idx, idx[:0]
            splitter = StratifiedShuffleSplit(n_splits=1, test_size=frac, random_state=self.random_state)
            tr, va = next(splitter.split(idx, y))
            return tr, va
        if n < 10:
            return idx, idx[:0]
        rng = np.random.default_rng(self.random_state)
        perm = rng.permutation(n)
        n_val = max(1, round(frac * n))
        return np.sort(perm[n_val:]), np.sort(perm[:n_val])

    # ------------------------------------------------------------------ hooks (transfer learning)
    def _build_module(self, input_shape: tuple[int, ...], n_outputs: int) -> torch.nn.Module:
        """Fresh network for ``fit``; subclasses override it to start from pretrained weights."""
        return build_network(self.network, self.arch, input_shape, n_outputs, self.net_options)

    def _param_groups(self, module: torch.nn.Module) -> list[dict]:
        """Optimizer parameter groups, each with its own peak ``lr`` (one group by default)."""
        return [{"params": list(module.parameters()), "lr": self.lr}]

    def _on_epoch_start(self, module: torch.nn.Module, epoch: int) -> None:
        """Called after ``module.train()`` at the start of every epoch (1-based); no-op by default."""

    # ------------------------------------------------------------------ checkpoints
    def _checkpoint_fingerprint(
        self, Xt: np.ndarray, yt: np.ndarray, swt: np.ndarray, Xv: np.ndarray, yv: np.ndarray,
        seed: int, member: int | None,
    ) -> dict[str, str]:
        """What a checkpoint is tied to: the parameters that shape training (all but
        :data:`_NOT_FINGERPRINTED`), the ensemble member and its seed, and the shapes and digests
        of the training data (X, y, sample weights) and of the validation data (which also tells
        a validated run from a run on all data)."""
        params = self.get_params(deep=False)
        fp = {k: _as_text(v) for k, v in sorted(params.items()) if k not in _NOT_FINGERPRINTED}
        fp["estimator"] = type(self).__name__
        fp["member"] = _as_text(member)
        fp["seed"] = _as_text(seed)
        fp["outputs"] = _as_text(self._n_outputs())
        fp["training data"] = _data_digest(X=Xt, y=yt, sample_weight=swt)
        fp["validation data"] = _data_digest(X=Xv, y=yv) if len(Xv) else "none"
        return fp

    def _check_checkpoint(self, state: dict, fingerprint: dict[str, str], path: Path) -> None:
        """Refuse (:class:`ParameterError`) a checkpoint that another training run wrote."""
        how = (
            "Use a fresh checkpoint_dir for this run, or resume=False (-p resume=false) to start over "
            "(the checkpoint is then overwritten)."
        )
        saved = state.get("fingerprint")
        if not isinstance(saved, dict):
            raise ParameterError(
                f"Cannot resume from the checkpoint {str(path)!r}: it carries no fingerprint (an earlier "
                f"earmark wrote it), so it cannot be matched to this run. {how}"
            )
        differ = sorted(k for k in fingerprint.keys() | saved.keys() if saved.get(k) != fingerprint.get(k))
        if differ:
            shown = "; ".join(
                f"{k}: checkpoint {saved.get(k, 'absent')}, now {fingerprint.get(k, 'absent')}" for k in differ[:6]
            )
            more = f" (and {len(differ) - 6} more)" if len(differ) > 6 else ""
            raise ParameterError(
                f"Cannot resume from the checkpoint {str(path)!r}: a different training run wrote it "
                f"({shown}{more}). {how}"
            )

    # ------------------------------------------------------------------ fit
    def _fit(
        self,
        X: Any,
        y: Any,
        *,
        sample_weight: Any = None,
        groups: Any = None,
        X_val: Any = None,
        y_val: Any = None,
    ):
        self._check_params()
        if y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target y is None.")
        X = self._to_array(X, fitting=True)
        X, y = validate_data(
            self, X, y, reset=True, allow_nd=True, dtype=np.float32, ensure_min_samples=1,
            y_numeric=self._task == "regression",
        )
        if self._is_sequence and X.ndim >= 2:
            self.n_frames_ = int(X.shape[-1])
        else:
            self.n_frames_ = None
        if len(y) < 2:
            raise ParameterError(
                f"{type(self).__name__} needs at least 2 samples to train; got n_samples={len(y)}."
            )
        y_enc = self._encode_targets(y)
        sw = np.ones(len(y), np.float32) if sample_weight is None else np.asarray(sample_weight, np.float32)
        if sw.shape != (len(y),):
            raise ParameterError(
                f"sample_weight must have shape ({len(y)},) to match X; got {sw.shape}."
            )
        if not np.all(np.isfinite(sw)) or (sw < 0).any() or sw.sum() <= 0:
            raise ParameterError(
                "sample_weight must be finite, non-negative and not all zero; got "
                f"sum={float(sw.sum())}, min={float(sw.min())}."
            )
        groups_arr = None if groups is None else np.asarray(groups)

        if X_val is not None:
            if y_val is None:
                raise ParameterError("X_val was given without y_val; pass both or neither.")
            Xv = self._validate_X(X_val, reset=False)
            yv = self._encode_targets_val(np.asarray(y_val))
            Xt, yt, swt = X, y_enc, sw
        else:
            tr, va = self._split(y_enc if self._task == "classification" else np.asarray(y), groups_arr)
            Xt, yt, swt = X[tr], y_enc[tr], sw[tr]
            Xv, yv = X[va], y_enc[va]

        seed = 0 if self.random_state is None else int(self.random_state)
        device = _resolve_device(self.device)
        self.input_shape_ = tuple(int(s) for s in X.shape[1:])
        n_members = int(getattr(self, "ensemble", 1))
        ckpt_dir = Path(self.checkpoint_dir) if self.checkpoint_dir else None
        members, histories, best_epochs = [], [], []
        for i in range(n_members):
            # member 0 is what ensemble=1 trains; the others get seeds derived from (seed, i)
            member_seed = seed if i == 0 else int(np.random.SeedSequence([seed, i]).generate_state(1)[0] % 2**31)
            ckpt_path = None
            if ckpt_dir is not None:
                ckpt_path = (ckpt_dir if n_members == 1 else ckpt_dir / f"member-{i}") / CHECKPOINT_NAME
            module, history, best_epoch = self._train_member(
                Xt, yt, swt, Xv, yv, device, member_seed, ckpt_path, i if n_members > 1 else None
            )
            members.append(module)
            histories.append(history)
            best_epochs.append(best_epoch)
        self.module_ = members[0] if n_members == 1 else SeedEnsemble(members, self._task)
        self.history_ = histories[0]
        self.histories_ = histories
        self.best_epoch_ = best_epochs[0]
        self.n_epochs_ = len(histories[0])
        self.epoch_budget_ = self.epoch_budget(len(Xt))
        return self

    def _train_member(
        self,
        Xt: np.ndarray,
        yt: np.ndarray,
        swt: np.ndarray,
        Xv: np.ndarray,
        yv: np.ndarray,
        device: torch.device,
        seed: int,
        ckpt_path: Path | None,
        member: int | None,
    ) -> tuple[torch.nn.Module, list[dict], int]:
        """Train one network (one member of an ensemble) and return it with its history and best epoch."""
        fingerprint = None
        if ckpt_path is not None:
            fingerprint = self._checkpoint_fingerprint(Xt, yt, swt, Xv, yv, seed, member)
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        module = self._build_module(self.input_shape_, self._n_outputs())
        for m in module.modules():
            if isinstance(m, _Standardize):
                m.mean.copy_(torch.as_tensor(Xt.mean(axis=0)))
                m.scale.copy_(torch.as_tensor(Xt.std(axis=0) + 1e-6))
        if hasattr(module, "set_target_scaling") and self._task == "regression":
            # networks that predict in the target's own units (e.g. a pitch read off a frequency axis)
            module.set_target_scaling(self.y_mean_, self.y_scale_)
        aux_loss = getattr(module, "aux_loss", None)
        module.to(device)
        fast_layout = device.type == "cpu" and use_channels_last(module)

        w_all = torch.as_tensor(swt * self._sample_class_weights(yt), dtype=torch.float32)
        Xt_t = torch.as_tensor(Xt)
        yt_t = torch.as_tensor(yt)
        steps_per_epoch = self._steps_per_epoch(len(Xt))
        n_epochs = self.epoch_budget(len(Xt))
        # patience is counted on the scale of ``epochs``: a budget raised by min_steps raises it alike
        patience = math.ceil(self.patience * n_epochs / self.epochs) if self.patience else 0
        groups = self._param_groups(module)
        opt = torch.optim.AdamW(groups, lr=self.lr, weight_decay=self.weight_decay)
        sched = torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=[max(g.get("lr", self.lr), 1e-12) for g in groups],
            # at least 8 steps: OneCycleLR divides by the length of its warm-up phase
            total_steps=max(8, n_epochs * steps_per_epoch), pct_start=0.25,
        )
        aug_cfg = AugmentConfig.from_options(self.augment_options) if self.augment else None
        kind = self._kind(Xt.ndim - 1)

        history: list[dict] = []
        best_state = copy.deepcopy(module.state_dict())
        best_key: float = -math.inf
        best_epoch = 0
        bad_epochs = 0
        start_epoch = 1
        if self.resume and ckpt_path is not None and ckpt_path.exists():
            try:
                state = torch.load(ckpt_path, map_location=device, weights_only=True)
            except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError) as exc:
                why = (str(exc).strip().splitlines() or ["empty or cut short"])[0][:200]
                raise ParameterError(
                    f"The checkpoint {ckpt_path} cannot be read ({type(exc).__name__}: {why}); "
                    "it is damaged (a run killed while writing it by an earlier version?). Delete it to start over, "
                    "or train without resume (-p resume=false)."
                ) from None
            self._check_checkpoint(state, fingerprint, ckpt_path)
            module.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["scheduler"])
            gen.set_state(state["generator"])
            torch.set_rng_state(state["torch_rng"])
            best_state = state["best_state"]
            best_key = float(state["best_key"])
            best_epoch = int(state["best_epoch"])
            bad_epochs = int(state["bad_epochs"])
            history = [dict(h) for h in state["history"]]
            start_epoch = int(state["epoch"]) + 1

        use_amp = device.type == "cuda"
        stopped = start_epoch > n_epochs
        for epoch in range(start_epoch, n_epochs + 1):
            if stopped:
                break
            module.train()
            self._on_epoch_start(module, epoch)
            perm = torch.randperm(len(Xt_t), generator=gen)
            tot_loss = tot_aux = tot_w = correct = seen = 0.0
            for b in range(steps_per_epoch):
                idx = perm[b * self.batch_size : (b + 1) * self.batch_size]
                if len(idx) < 2 and len(Xt_t) > 1:
                    continue
                xb, yb, wb = Xt_t[idx], yt_t[idx], w_all[idx]
                if aug_cfg is not None:  # vectors (pooled features): only noise applies, mixup below
                    xb = augment_batch(xb, aug_cfg, gen, kind=kind)
                lam, yb2, wb2 = 1.0, yb, wb
                if aug_cfg is not None and aug_cfg.mixup > 0 and self._task == "classification":
                    xb, perm_b, lam = mixup(xb, aug_cfg.mixup, gen)
                    yb2, wb2 = yb[perm_b], wb[perm_b]
                xb, yb, yb2 = xb.to(device), yb.to(device), yb2.to(device)
                wb, wb2 = wb.to(device), wb2.to(device)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                    out = module(xb)
                out = out.float()
                loss = self._loss(out, yb, wb)
                if lam < 1:
                    loss = lam * loss + (1 - lam) * self._loss(out, yb2, wb2)
                main_loss = float(loss.detach())
                if aux_loss is not None:
                    extra = aux_loss(yb, wb)
                    tot_aux += float(extra.detach()) * len(idx)
                    loss = loss + extra
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if self.max_grad_norm > 0:
                    torch.nn.utils.clip_grad_norm_(module.parameters(), self.max_grad_norm)
                opt.step()
                sched.step()
                tot_loss += main_loss * len(idx)  # the loss val_loss is comparable with
                tot_w += len(idx)
                if self._task == "classification":
                    correct += float((out.argmax(1) == yb).sum())
                    seen += len(idx)
            record: dict[str, Any] = {
                "epoch": epoch,
                "loss": tot_loss / max(tot_w, 1),
                "lr": float(opt.param_groups[0]["lr"]),
            }
            if aux_loss is not None:  # a network's auxiliary term (hcnn's pitch-class loss), not in val_loss
                record["aux_loss"] = tot_aux / max(tot_w, 1)
            if self._task == "classification":
                record["accuracy"] = correct / max(seen, 1)
            if member is not None:
                record["member"] = member + 1
            if len(Xv):
                vl, vm = self._evaluate(module, Xv, yv, device)
                # select by class-weighted accuracy, so class weights also steer model selection
                key = vm.pop("_key") if "_key" in vm else -vl
                record["val_loss"] = vl
                record.update(vm)
            else:
                key = float(epoch)  # no validation data: keep the last epoch
            history.append(record)
            if key > best_key:
                best_key, best_epoch, bad_epochs = key, epoch, 0
                best_state = copy.deepcopy(module.state_dict())
            else:
                bad_epochs += 1
            if len(Xv) and patience and bad_epochs >= patience:
                stopped = True
            if ckpt_path is not None:
                ckpt_path.parent.mkdir(parents=True, exist_ok=True)
                partial = ckpt_path.with_name(ckpt_path.name + ".partial")
                torch.save(
                    {
                        "fingerprint": fingerprint,
                        "epoch": epoch if not stopped else n_epochs,
                        "model": module.state_dict(),
                        "optimizer": opt.state_dict(),
                        "scheduler": sched.state_dict(),
                        "generator": gen.get_state(),
                        "torch_rng": torch.get_rng_state(),
                        "best_state": best_state,
                        "best_key": best_key,
                        "best_epoch": best_epoch,
                        "bad_epochs": bad_epochs,
                        "history": history,
                    },
                    partial,
                )
                os.replace(partial, ckpt_path)  # atomic: a run killed mid-write keeps the last good epoch
            for cb in self.callbacks or ():
                cb(self, record)

        module.load_state_dict(best_state)
        if fast_layout:  # stored and exported in the ordinary layout (safetensors wants contiguous tensors)
            use_channels_last(module, False)
        module.to("cpu").eval()
        return module, history, best_epoch

    def _evaluate(self, module: torch.nn.Module, Xv: np.ndarray, yv: np.ndarray, device: torch.device) -> tuple[float, dict]:
        module.eval()
        outs = []
        with torch.inference_mode():
            for s in range(0, len(Xv), 256):
                outs.append(module(torch.as_tensor(Xv[s : s + 256]).to(device)).float().cpu())
        out = torch.cat(outs)
        target = torch.as_tensor(yv)
        w = torch.as_tensor(self._sample_class_weights(yv))
        loss = float(self._loss(out, target, w))
        metrics = self._val_metrics(out, target)
        if self._task == "classification":
            hit = (out.argmax(1) == target).float()
            metrics["_key"] = float((hit * w).sum() / w.sum().clamp_min(1e-12)) - 1e-6 * loss
        return loss, metrics

    def _val_metrics(self, out: torch.Tensor, target: torch.Tensor) -> dict:
        raise NotImplementedError

    def _forward(self, X: np.ndarray) -> np.ndarray:
        check_is_fitted(self, "module_")
        X = self._validate_X(X, reset=False)
        outs = []
        self.module_.eval()
        kind = self._kind(X.ndim - 1) if getattr(self, "tta", False) else None
        if kind is not None:  # only the warps the model was trained to be invariant to (none: augment off)
            cfg = AugmentConfig.from_options(self.augment_options)
            warps = {"time": bool(self.augment) and cfg.time_stretch > 0,
                     "frequency": bool(self.augment) and cfg.freq_warp > 0}
        with torch.inference_mode():
            for s in range(0, len(X), 256):
                xb = torch.as_tensor(X[s : s + 256])
                if kind is None:
                    outs.append(self.module_(xb).float().numpy())
                else:
                    views = [self.module_(v).float() for v in tta_views(xb, kind, **warps)]
                    outs.append(average_outputs(views, self._task).numpy())
        return np.concatenate(outs) if outs else np.zeros((0, self._n_outputs()), np.float32)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = False
        return tags


class TorchClassifier(ClassifierMixin, _TorchEstimator):
    """scikit-learn classifier backed by a PyTorch network.

    Parameters
    ----------
    network : {"cnn", "mlp", "lstm", "cnn1d"}
        Network family (which input it takes: spectrograms, pooled vectors, sequences, waveforms).
    arch : str
        Variant: ``"default"`` (earmark's), or a reference recipe (``"reference"`` for cnn, lstm and
        cnn1d; ``"reference-173"`` / ``"reference-40"`` for mlp).
    net_options : dict, optional
        Keyword options of the network builder (e.g. ``{"width": 48}`` for the cnn).
    epochs : int
        Maximum number of epochs (the one-cycle schedule spans them); see ``min_steps``.
    batch_size : int
        Mini-batch size.
    lr : float
        Peak learning rate of the one-cycle schedule (AdamW).
    weight_decay : float
        AdamW weight decay.
    max_grad_norm : float
        Gradient-norm clipping threshold (0 disables).
    patience : int
        Epochs without validation improvement before stopping (0 disables early stopping).
    validation_fraction : float
        Share of the training data held out for early stopping when ``X_val`` is not given
        (carved by ``groups`` when given to ``fit``, stratified otherwise).
    class_weight : "balanced", dict or None
        Weight classes inversely to their frequency, or by a ``{class: weight}`` mapping.
    augment : bool
        Apply on-the-fly augmentation (SpecAugment masks, time shift/stretch, frequency warp,
        gain, noise, mixup; see :class:`~earmark.models.AugmentConfig`).
    augment_options : dict, optional
        Overrides of :class:`~earmark.models.AugmentConfig` fields, e.g. ``{"mixup": 0}``.
    max_frames : int, optional
        Length (last axis) every example is padded/cropped to for sequence networks; by default
        the length of the training array, or the 95th percentile of ragged clip lengths.
    pad : {"auto", "min", "zeros", "edge"}
        Padding of short examples ("auto": zeros for waveforms, the clip minimum otherwise).
    crop : {"center", "start"}
        Part of long examples to keep.
    random_state : int or None
        Seed of initialisation, shuffling, splitting and augmentation (None means 0).
    device : str
        ``"auto"`` (CUDA, then MPS, then CPU) or a torch device string.
    checkpoint_dir : str, optional
        Directory where a resumable checkpoint is written after every epoch (one sub-folder
        ``member-<i>`` per network of an ensemble). A checkpoint records a fingerprint of what
        produced it: the parameters that shape training (all but ``checkpoint_dir``, ``resume``,
        ``callbacks``, ``device`` and ``tta``), the seed and ensemble member, and the shapes and a
        digest of the training data (X, y, sample weights) and of the validation data.
        :func:`earmark.train` gives its validation run and its refit sub-folders of their own.
    resume : bool
        Continue from the checkpoint in ``checkpoint_dir`` if there is one (a finished one is
        taken as is). A checkpoint whose fingerprint differs from this run's is refused with a
        :class:`~earmark.errors.ParameterError` naming what differs, never loaded nor silently
        discarded: use a fresh ``checkpoint_dir``, or ``resume=False`` to start over.
    callbacks : list of callables, optional
        Each called as ``cb(estimator, record)`` after every epoch (progress display).
    tta : bool
        Test-time augmentation for spectrogram inputs: predictions average the clip and six
        warped copies (time ×0.9/×1.1, frequency ×0.92…×1.08; see
        :data:`~earmark.models._augment.TTA_VIEWS`); 7× the inference cost. Such a model runs in
        PyTorch only (not exported to ONNX). On FSDD leave-one-speaker-out (speech recipe, one
        seed) it added 0.4–2.4 points to every held-out speaker's accuracy.
    ensemble : int
        Train this many networks from different seeds (the first from ``random_state``, the others
        from seeds derived from it) and average their class probabilities (a
        :class:`~earmark.models.SeedEnsemble`; exported to ONNX and served like one network).
        ``ensemble`` times the training and inference cost. On FSDD leave-one-speaker-out (speech
        recipe with ``tta``), 3 members raised the mean accuracy from 0.926 (single networks, three
        seeds) to 0.936–0.937 (two ensembles); the hardest held-out speaker stayed at 0.88.
    min_steps : int
        Raise the epoch budget, when the training set is small, so that training takes at least
        this many optimizer steps (``patience`` grows in proportion); 0 trains exactly ``epochs``.
        The budget used is :meth:`epoch_budget` (``epoch_budget_`` after fitting). Augmented
        training needs the steps: the registry's ``cnn`` sets 1000, which lifted instrument family
        over unheard programs (800 training clips, 25 steps an epoch) from 0.44 to 0.52, and real
        vs synthetic voice (800 clips) from 0.87 to 0.92.

    Attributes
    ----------
    classes_ : ndarray
        Class labels in output order.
    module_ : torch.nn.Module
        Trained network in eval mode on the CPU; input ``(batch, *input_shape_)`` float32, output logits.
    input_shape_ : tuple of int
        Shape of one example as the module expects it.
    n_frames_ : int or None
        Length examples are padded/cropped to (sequence networks).
    history_ : list of dict
        Per-epoch ``epoch, loss, accuracy, lr, val_loss, val_accuracy`` (of the first member of an
        ensemble); ``loss`` is the same loss as ``val_loss``, and a network's auxiliary training
        term, if it has one, is ``aux_loss``.
    histories_ : list of list of dict
        The history of every member (one list when ``ensemble=1``).
    best_epoch_ : int
        Epoch whose weights were restored (first member).
    epoch_budget_ : int
        Epochs the training could run (``epochs``, or more by ``min_steps``); ``len(history_)``
        is smaller when early stopping ended it.

    Examples
    --------
    >>> from sklearn.datasets import make_blobs
    >>> X, y = make_blobs(200, n_features=5, centers=3, random_state=0)
    >>> clf = TorchClassifier("mlp", epochs=20).fit(X, y)
    >>> clf.score(X, y) > 0.9
    True
    """

    _task = "classification"

    def __init__(
        self,
        network: str = "cnn",
        arch: str = "default",
        *,
        net_options: dict | None = None,
        epochs: int = 30,
        batch_size: int = 64,
        lr: float = 3e-3,
        weight_decay: float = 1e-2,
        max_grad_norm: float = 5.0,
        patience: int = 10,
        validation_fraction: float = 0.15,
        class_weight: str | dict | None = "balanced",
        augment: bool = True,
        augment_options: dict | None = None,
        max_frames: int | None = None,
        pad: str = "auto",
        crop: str = "center",
        random_state: int | None = 0,
        device: str = "auto",
        checkpoint_dir: str | None = None,
        resume: bool = False,
        callbacks: Sequence[Callable[[Any, dict], None]] | None = None,
        tta: bool = False,
        ensemble: int = 1,
        min_steps: int = 0,
    ) -> None:
        super().__init__(
            network, arch, net_options=net_options, epochs=epochs, batch_size=batch_size, lr=lr,
            weight_decay=weight_decay, max_grad_norm=max_grad_norm, patience=patience,
            validation_fraction=validation_fraction, augment=augment, augment_options=augment_options,
            max_frames=max_frames, pad=pad, crop=crop, random_state=random_state, device=device,
            checkpoint_dir=checkpoint_dir, resume=resume, callbacks=callbacks, tta=tta, ensemble=ensemble,
            min_steps=min_steps,
        )
        self.class_weight = class_weight

    def _encode_targets(self, y: np.ndarray) -> np.ndarray:
        check_classification_targets(y)
        self.classes_, enc = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ParameterError(
                f"{type(self).__name__} needs samples of at least 2 classes in the data; got 1 class "
                f"({self.classes_[0]!r}). Add recordings of other classes."
            )
        return enc.astype(np.int64)

    def _encode_targets_val(self, y: np.ndarray) -> np.ndarray:
        pos = {c: i for i, c in enumerate(self.classes_.tolist())}
        try:
            return np.array([pos[v] for v in y.tolist()], dtype=np.int64)
        except KeyError as exc:
            raise ParameterError(f"y_val holds class {exc.args[0]!r} that y does not.") from None

    def _n_outputs(self) -> int:
        return len(self.classes_)

    def _sample_class_weights(self, y_enc: np.ndarray) -> np.ndarray:
        if self.class_weight is None:
            return np.ones(len(y_enc), np.float32)
        if isinstance(self.class_weight, dict):
            classes = [str(c) for c in self.classes_.tolist()]
            given = class_weights_by_label(self.class_weight, classes)
            cw = np.array([given.get(c, 1.0) for c in classes])
            return cw[y_enc].astype(np.float32)
        if self.class_weight != "balanced":
            raise ParameterError(
                f"The 'class_weight' parameter of {type(self).__name__} must be 'balanced', a dict "
                f"{{class: weight}} or None. Got {self.class_weight!r} instead."
            )
        counts = np.bincount(y_enc, minlength=len(self.classes_)).astype(np.float64)
        cw = len(y_enc) / (len(self.classes_) * np.maximum(counts, 1))
        return cw[y_enc].astype(np.float32)

    def _loss(self, out: torch.Tensor, target: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        per = F.cross_entropy(out, target, reduction="none", label_smoothing=0.05)
        return (per * w).sum() / w.sum().clamp_min(1e-12)

    def _val_metrics(self, out: torch.Tensor, target: torch.Tensor) -> dict:
        return {"val_accuracy": float((out.argmax(1) == target).float().mean())}

    def fit(self, X: Any, y: Any, *, sample_weight: Any = None, groups: Any = None, X_val: Any = None, y_val: Any = None):
        """Train the network.

        Parameters
        ----------
        X : array-like of shape (n_samples, *input_shape) or list of clips of varying length
            Features (see ``network``).
        y : array-like of shape (n_samples,)
            Class labels.
        sample_weight : array-like of shape (n_samples,), optional
            Per-example loss weights (multiplied with class weights).
        groups : array-like of shape (n_samples,), optional
            Group of every example (speaker, program); the internal validation split keeps
            groups apart.
        X_val, y_val : optional
            Explicit validation data for early stopping (then no internal split is made).

        Returns
        -------
        self
        """
        return self._fit(X, y, sample_weight=sample_weight, groups=groups, X_val=X_val, y_val=y_val)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, shape (n_samples, n_classes), columns in ``classes_`` order."""
        logits = self._forward(X)
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return (e / e.sum(axis=1, keepdims=True)).astype(np.float64)

    def predict(self, X: Any) -> np.ndarray:
        """Most probable class of each example."""
        check_is_fitted(self, "module_")
        return self.classes_[np.argmax(self._forward(X), axis=1)]


class TorchRegressor(RegressorMixin, _TorchEstimator):
    """scikit-learn regressor backed by a PyTorch network (targets standardised internally).

    Parameters are those of :class:`TorchClassifier` except ``class_weight``; the loss is the
    Huber loss on standardised targets.

    Attributes
    ----------
    module_ : torch.nn.Module
        Trained network (eval mode, CPU); output ``(batch, 1)`` in standardised units.
    y_mean_, y_scale_ : float
        Prediction = ``module_(x) * y_scale_ + y_mean_``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(300, 4)); y = X @ [1.0, 2.0, 0.0, -1.0]
    >>> reg = TorchRegressor("mlp", epochs=40).fit(X, y)
    >>> reg.score(X, y) > 0.8
    True
    """

    _task = "regression"

    def _encode_targets(self, y: np.ndarray) -> np.ndarray:
        y = np.asarray(y, dtype=np.float64)
        self.y_mean_ = float(y.mean())
        self.y_scale_ = float(y.std()) or 1.0
        return ((y - self.y_mean_) / self.y_scale_).astype(np.float32)

    def _encode_targets_val(self, y: np.ndarray) -> np.ndarray:
        return ((np.asarray(y, np.float64) - self.y_mean_) / self.y_scale_).astype(np.float32)

    def _n_outputs(self) -> int:
        return 1

    def _loss(self, out: torch.Tensor, target: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        per = F.huber_loss(out[:, 0], target.float(), reduction="none", delta=1.0)
        return (per * w).sum() / w.sum().clamp_min(1e-12)

    def _val_metrics(self, out: torch.Tensor, target: torch.Tensor) -> dict:
        return {"val_mae": float((out[:, 0] - target).abs().mean()) * self.y_scale_}

    def fit(self, X: Any, y: Any, *, sample_weight: Any = None, groups: Any = None, X_val: Any = None, y_val: Any = None):
        """Train the network (see :meth:`TorchClassifier.fit`); ``y`` is numeric."""
        return self._fit(X, y, sample_weight=sample_weight, groups=groups, X_val=X_val, y_val=y_val)

    def predict(self, X: Any) -> np.ndarray:
        """Predicted target of each example, shape (n_samples,)."""
        return self._forward(X)[:, 0].astype(np.float64) * self.y_scale_ + self.y_mean_

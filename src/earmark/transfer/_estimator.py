"""Fine-tuning: :class:`TransferClassifier` starts from pretrained weights and controls what trains.

``init_from`` names the starting point, in one of four kinds:

- ``bundle:PATH``: another earmark model (same network, arch and feature preset): its body is
  kept; the head is rebuilt for the new classes, with the rows of classes the source model knew
  copied over;
- ``torchvision:mobilenet_v2``: ImageNet MobileNetV2 on log-mel images (network
  ``mobilenet_v2``), weights from torch.hub's cache, downloaded once when missing;
- ``hf:MODEL_ID_OR_DIR``: a Hugging Face ``AutoModelForAudioClassification`` checkpoint with its
  own feature extractor (network ``hf``, raw waveforms);
- ``file:PATH``: a state dict (``.safetensors``, or ``.pt``/``.pth`` read with
  ``weights_only=True``) for any registered architecture.

Fine-tuning controls (all estimator parameters, so they are recorded in the bundle):
``freeze_epochs`` (body frozen for the first N epochs, batch-norm statistics included),
``head_only`` (body frozen throughout), ``body_lr_scale`` (peak learning rate of the body relative
to the head's: discriminative learning rates).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from earmark.errors import EarmarkWarning, ParameterError
from earmark.models import TorchClassifier
from earmark.models._nets import first_member
from earmark.models._torch import _SEQUENCE_NETWORKS

__all__ = ["INIT_KINDS", "TransferClassifier", "finetune", "head_parameter_names", "parse_init_from"]

INIT_KINDS = ("bundle", "torchvision", "hf", "file")


def parse_init_from(spec: str) -> tuple[str, str]:
    """Split an ``init_from`` value into ``(kind, target)``.

    Examples
    --------
    >>> parse_init_from("bundle:models/digits")
    ('bundle', 'models/digits')
    >>> parse_init_from("torchvision:mobilenet_v2")
    ('torchvision', 'mobilenet_v2')
    """
    kind, sep, target = str(spec).partition(":")
    if not sep or kind not in INIT_KINDS or not target:
        raise ParameterError(
            f"The 'init_from' parameter must be 'KIND:TARGET' with KIND one of {list(INIT_KINDS)} "
            f"(e.g. 'bundle:models/digits', 'torchvision:mobilenet_v2', 'hf:./my-ast', "
            f"'file:weights.safetensors'). Got {spec!r} instead."
        )
    return kind, target


def head_parameter_names(module: nn.Module, n_outputs: int) -> list[str]:
    """Names of the head's parameters: the network's own list, or its last ``Linear`` to the outputs.

    Examples
    --------
    >>> from earmark.models import build_network
    >>> head_parameter_names(build_network("mlp", "default", (8,), 3), 3)
    ['1.8.weight', '1.8.bias']
    """
    own = getattr(module, "head_parameter_names", None)
    if callable(own):
        return list(own())
    last = None
    for name, m in module.named_modules():
        if isinstance(m, nn.Linear) and m.out_features == n_outputs:
            last = name
    if last is None:
        raise ParameterError(
            f"Cannot find the head of {type(module).__name__}: no Linear layer with {n_outputs} outputs."
        )
    return [f"{last}.{n}" for n, _ in module.get_submodule(last).named_parameters(recurse=False)]


def _load_bundle(path: str) -> Any:
    # earmark.bundle sits a layer above this package: imported only when a bundle is asked for.
    from earmark.bundle import load_model

    return load_model(path)


def _read_state_file(path: str) -> dict[str, torch.Tensor]:
    p = Path(path)
    if not p.is_file():
        raise ParameterError(f"init_from='file:{path}': no such file; give the path of a state dict.")
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(p))
        else:
            state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch/safetensors raise plain exceptions on foreign files
        raise ParameterError(
            f"init_from='file:{path}': cannot read a state dict ({type(exc).__name__}: {exc}). Save one with "
            "torch.save(module.state_dict(), path) or safetensors."
        ) from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ParameterError(f"init_from='file:{path}': the file does not hold a state dict of tensors.")
    return state


def _strip_prefix(state: dict[str, torch.Tensor], keys: set[str]) -> dict[str, torch.Tensor]:
    if any(k in keys for k in state):
        return state
    for prefix in ("module.", "model.", "_orig_mod."):
        stripped = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if stripped and any(k in keys for k in stripped):
            return stripped
    return state


def load_pretrained(
    module: nn.Module,
    state: dict[str, torch.Tensor],
    head: Sequence[str],
    *,
    source: str,
    classes: Sequence[Any] | None = None,
    source_classes: Sequence[Any] | None = None,
) -> dict[str, int]:
    """Copy the body of ``state`` into ``module``; the head stays fresh except for known classes.

    Every body entry of ``module.state_dict()`` must be in ``state`` with the same shape. Head rows
    are copied for the classes present in both ``classes`` and ``source_classes``.

    Returns
    -------
    dict
        ``{"body": entries copied, "head_rows": class rows copied}``.

    Examples
    --------
    >>> from earmark.models import build_network
    >>> a, b = build_network("mlp", "default", (8,), 3), build_network("mlp", "default", (8,), 3)
    >>> load_pretrained(b, a.state_dict(), head_parameter_names(b, 3), source="a")["body"] > 0
    True
    """
    own = module.state_dict()
    state = _strip_prefix(state, set(own))
    head_set = set(head)
    missing, mismatched, new = [], [], {}
    for key, value in own.items():
        if key in head_set:
            continue
        if key not in state:
            missing.append(key)
        elif tuple(state[key].shape) != tuple(value.shape):
            mismatched.append(f"{key}: {tuple(state[key].shape)} vs {tuple(value.shape)}")
        else:
            new[key] = state[key].to(value.dtype)
    if missing or mismatched:
        detail = "; ".join(mismatched[:3] + [f"missing {k}" for k in missing[:3]])
        raise ParameterError(
            f"init_from={source!r}: the weights do not fit this network ({len(missing)} missing, "
            f"{len(mismatched)} of another shape: {detail}). Use the network/arch/net_options (and feature "
            "preset) the weights were trained with."
        )
    rows = 0
    if classes is not None and source_classes is not None:
        src_pos = {str(c): i for i, c in enumerate(source_classes)}
        pairs = [(i, src_pos[str(c)]) for i, c in enumerate(classes) if str(c) in src_pos]
        for key in head_set:
            if key not in state or key not in own:
                continue
            src, dst = state[key], own[key].clone()
            if src.dim() == 0 or src.shape[1:] != dst.shape[1:]:
                continue
            for i, j in pairs:
                dst[i] = src[j]
            new[key] = dst
        rows = len(pairs)
    module.load_state_dict({**own, **new})
    return {"body": len(own) - len(head_set), "head_rows": rows}


class TransferClassifier(TorchClassifier):
    """:class:`~earmark.models.TorchClassifier` that starts from pretrained weights.

    Parameters
    ----------
    network, arch, net_options
        As for :class:`~earmark.models.TorchClassifier`; also ``"mobilenet_v2"`` (log-mel
        images) and ``"hf"`` (Hugging Face checkpoints), registered by :mod:`earmark.transfer`.
        :func:`finetune` fills them in from ``init_from``.
    init_from : str or None
        Starting point: ``bundle:PATH``, ``torchvision:mobilenet_v2``, ``hf:MODEL_ID_OR_DIR`` or
        ``file:PATH`` (see the module docstring); ``None`` trains from scratch.
    freeze_epochs : int
        The body is frozen (no gradient, batch-norm statistics fixed) for the first
        ``freeze_epochs`` epochs, then trained.
    body_lr_scale : float
        Peak learning rate of the body = ``lr * body_lr_scale`` (the head uses ``lr``).
    head_only : bool
        Keep the body frozen throughout (a linear probe on the pretrained body).
    **kwargs
        Every other parameter of :class:`~earmark.models.TorchClassifier`.

    Attributes
    ----------
    init_report_ : dict
        What was loaded: ``{"source", "body", "head_rows"}``.

    Examples
    --------
    >>> from sklearn.datasets import make_blobs
    >>> X, y = make_blobs(120, n_features=6, centers=3, random_state=0)
    >>> src = TransferClassifier("mlp", epochs=5).fit(X, y)
    >>> import tempfile, torch
    >>> f = tempfile.mktemp(suffix=".pt"); torch.save(src.module_.state_dict(), f)
    >>> clf = TransferClassifier("mlp", init_from=f"file:{f}", head_only=True, epochs=3).fit(X, y)
    >>> clf.init_report_["body"] > 0
    True
    """

    def __init__(
        self,
        network: str = "cnn",
        arch: str = "default",
        *,
        init_from: str | None = None,
        freeze_epochs: int = 0,
        body_lr_scale: float = 1.0,
        head_only: bool = False,
        net_options: dict | None = None,
        epochs: int = 30,
        batch_size: int = 64,
        lr: float = 3e-3,
        weight_decay: float = 1e-2,
        max_grad_norm: float = 5.0,
        patience: int = 10,
        validation_fraction: float = 0.15,
        class_weight: str | None = "balanced",
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
    ) -> None:
        super().__init__(
            network, arch, net_options=net_options, epochs=epochs, batch_size=batch_size, lr=lr,
            weight_decay=weight_decay, max_grad_norm=max_grad_norm, patience=patience,
            validation_fraction=validation_fraction, class_weight=class_weight, augment=augment,
            augment_options=augment_options, max_frames=max_frames, pad=pad, crop=crop,
            random_state=random_state, device=device, checkpoint_dir=checkpoint_dir, resume=resume,
            callbacks=callbacks,
        )
        self.init_from = init_from
        self.freeze_epochs = freeze_epochs
        self.body_lr_scale = body_lr_scale
        self.head_only = head_only

    # ------------------------------------------------------------------ validation
    def _check_params(self) -> None:
        super()._check_params()
        name = type(self).__name__
        if self.init_from is not None:
            parse_init_from(self.init_from)
        if not isinstance(self.freeze_epochs, (int, np.integer)) or isinstance(self.freeze_epochs, bool) \
                or self.freeze_epochs < 0:
            raise ParameterError(
                f"The 'freeze_epochs' parameter of {name} must be an int >= 0. Got {self.freeze_epochs!r} instead."
            )
        if not isinstance(self.body_lr_scale, (int, float)) or not math.isfinite(self.body_lr_scale) \
                or self.body_lr_scale < 0:
            raise ParameterError(
                f"The 'body_lr_scale' parameter of {name} must be a float >= 0. Got {self.body_lr_scale!r} instead."
            )
        if not isinstance(self.head_only, (bool, np.bool_)):
            raise ParameterError(f"The 'head_only' parameter of {name} must be a bool. Got {self.head_only!r} instead.")

    @property
    def _is_sequence(self) -> bool:
        return self.network in _SEQUENCE_NETWORKS or self.network == "mobilenet_v2"

    def _kind(self, ndim_per_example: int) -> str:
        if self.network == "hf":
            return "waveform"
        return super()._kind(ndim_per_example)

    # ------------------------------------------------------------------ hooks
    def _build_module(self, input_shape: tuple[int, ...], n_outputs: int) -> nn.Module:
        module = super()._build_module(input_shape, n_outputs)
        self.head_names_ = head_parameter_names(module, n_outputs)
        self.init_report_ = {"source": None, "body": 0, "head_rows": 0}
        if self.init_from is None:
            return module
        kind, target = parse_init_from(self.init_from)
        source_classes = None
        if kind == "bundle":
            state, source_classes = self._bundle_state(target, input_shape)
        elif kind == "torchvision":
            if self.network != "mobilenet_v2":
                raise ParameterError(
                    f"init_from='torchvision:{target}' needs network='mobilenet_v2'. Got {self.network!r}; "
                    "build the model with earmark.transfer.finetune, which sets it."
                )
            from earmark.transfer._mobilenet import torchvision_state_dict

            state = torchvision_state_dict(target)
        elif kind == "hf":
            if self.network != "hf":
                raise ParameterError(
                    f"init_from='hf:{target}' needs network='hf'. Got {self.network!r}; build the model "
                    "with earmark.transfer.finetune, which sets it."
                )
            from earmark.transfer._hf import hf_pretrained_state

            state = hf_pretrained_state(target, n_outputs)
        else:
            state = _read_state_file(target)
        report = load_pretrained(
            module, state, self.head_names_, source=self.init_from,
            classes=self.classes_, source_classes=source_classes,
        )
        self.init_report_ = {"source": self.init_from, **report}
        return module

    def _bundle_state(self, path: str, input_shape: tuple[int, ...]) -> tuple[dict[str, torch.Tensor], Any]:
        trained = _load_bundle(path)
        est = trained.estimator
        module = getattr(est, "module_", None)
        if module is None:
            raise ParameterError(
                f"init_from='bundle:{path}': the bundle holds a {type(est).__name__}, not a neural network; "
                "only torch models (cnn, mlp, lstm, cnn1d, …) can be fine-tuned."
            )
        mine = (self.network, self.arch, self.net_options or {})
        theirs = (est.network, est.arch, est.net_options or {})
        if mine != theirs:
            raise ParameterError(
                f"init_from='bundle:{path}': the bundle's network is {theirs[:2]} with net_options "
                f"{theirs[2]}, this model's is {mine[:2]} with {mine[2]}. Build the model with "
                "earmark.transfer.finetune, which copies them."
            )
        if tuple(est.input_shape_) != tuple(input_shape):
            preset = trained.preset
            hint = (f"Train with the bundle's preset and clip length ({preset.name!r}, "
                    f"duration {preset.params.get('duration')} s: --features {preset.name}"
                    + (f" --duration {preset.params.get('duration'):g}" if preset.params.get("duration") else "")
                    + ").")
            raise ParameterError(
                f"init_from='bundle:{path}': the bundle takes inputs of shape {tuple(est.input_shape_)}, the "
                f"features here have {tuple(input_shape)}. {hint}"
            )
        members = getattr(module, "members", None)
        if members is not None and len(members) > 1:
            warnings.warn(
                f"init_from='bundle:{path}' is an ensemble of {len(members)} networks; fine-tuning starts from "
                "the first of them only (the others are not used).", EarmarkWarning, stacklevel=3)
        return first_member(module).state_dict(), getattr(est, "classes_", None)

    def _param_groups(self, module: nn.Module) -> list[dict]:
        head = set(self.head_names_)
        body_p = [p for n, p in module.named_parameters() if n not in head]
        head_p = [p for n, p in module.named_parameters() if n in head]
        groups = [{"params": head_p, "lr": self.lr, "name": "head"}]
        if body_p:
            groups.append({"params": body_p, "lr": self.lr * self.body_lr_scale, "name": "body"})
        return groups

    def _body_frozen(self, epoch: int) -> bool:
        return bool(self.head_only) or epoch <= self.freeze_epochs

    def _on_epoch_start(self, module: nn.Module, epoch: int) -> None:
        frozen = self._body_frozen(epoch)
        head = set(self.head_names_)
        for name, p in module.named_parameters():
            if name not in head:
                p.requires_grad_(not frozen)
        if frozen:  # batch-norm statistics of the body stay as pretrained
            for name, m in module.named_modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm) and not any(
                    f"{name}.{n}" in head for n, _ in m.named_parameters(recurse=False)
                ):
                    m.eval()

    def fit(self, X: Any, y: Any, *, sample_weight: Any = None, groups: Any = None, X_val: Any = None,
            y_val: Any = None) -> TransferClassifier:
        """Train from ``init_from`` (see :meth:`earmark.models.TorchClassifier.fit`).

        Returns
        -------
        self
        """
        try:
            super().fit(X, y, sample_weight=sample_weight, groups=groups, X_val=X_val, y_val=y_val)
        finally:
            module = getattr(self, "module_", None)
            if module is not None:
                for p in module.parameters():
                    p.requires_grad_(True)
        return self


def finetune(init_from: str | None = None, *, network: str | None = None, arch: str | None = None,
             net_options: dict | None = None, **params: Any) -> TransferClassifier:
    """A :class:`TransferClassifier` whose network matches ``init_from``.

    Parameters
    ----------
    init_from : str or None
        ``bundle:PATH`` (network, arch and net_options copied from the bundle),
        ``torchvision:mobilenet_v2`` (network ``mobilenet_v2``), ``hf:MODEL_ID_OR_DIR`` (network
        ``hf`` with the checkpoint's config), ``file:PATH`` (give ``network``/``arch``; default
        ``cnn``/``default``), or ``None`` (from scratch).
    network, arch, net_options : optional
        Override what ``init_from`` implies (must still fit the weights).
    **params
        Other :class:`TransferClassifier` parameters (``freeze_epochs``, ``body_lr_scale``,
        ``head_only``, ``epochs``, ``lr`` …).

    Returns
    -------
    TransferClassifier

    Examples
    --------
    >>> clf = finetune("torchvision:mobilenet_v2", freeze_epochs=2, body_lr_scale=0.1)
    >>> clf.network, clf.init_from
    ('mobilenet_v2', 'torchvision:mobilenet_v2')
    """
    defaults: dict[str, Any] = {"network": "cnn", "arch": "default", "net_options": None}
    if init_from is not None:
        kind, target = parse_init_from(init_from)
        if kind == "bundle":
            est = _load_bundle(target).estimator
            if not hasattr(est, "module_"):
                raise ParameterError(
                    f"init_from='bundle:{target}': the bundle holds a {type(est).__name__}, not a neural network."
                )
            defaults = {"network": est.network, "arch": est.arch, "net_options": est.net_options}
        elif kind == "torchvision":
            defaults = {"network": "mobilenet_v2", "arch": "imagenet", "net_options": None}
        elif kind == "hf":
            from earmark.transfer._hf import hf_net_options

            defaults = {"network": "hf", "arch": "auto", "net_options": hf_net_options(target)}
    chosen = {
        "network": network if network is not None else defaults["network"],
        "arch": arch if arch is not None else defaults["arch"],
        "net_options": net_options if net_options is not None else defaults["net_options"],
    }
    return TransferClassifier(init_from=init_from, **chosen, **params)

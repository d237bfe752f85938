"""Hugging Face audio classifiers (``AutoModelForAudioClassification``) as earmark networks.

The network (``network="hf"``) takes raw waveforms ``(batch, samples)`` at the checkpoint's
sampling rate and applies the checkpoint's own feature extractor: in torch for the wav2vec2
family (per-example zero-mean/unit-variance, so an exported graph carries it), through the
extractor's own NumPy code for the others (AST, Whisper, …). Its whole description (model
config and extractor config) is plain JSON held in ``net_options``, so a bundle rebuilds the
architecture without the original checkpoint and then loads its own weights.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from earmark.errors import ParameterError

__all__ = ["HFAudioNet", "hf_audio", "hf_net_options", "hf_pretrained_state"]

_INSTALL = "Hugging Face models need transformers: pip install 'earmark[transfer]' (or pip install transformers)."


def _transformers() -> Any:
    try:
        import transformers
    except ImportError:
        raise ParameterError(_INSTALL) from None
    return transformers


def hf_net_options(source: str) -> dict[str, Any]:
    """``net_options`` of the ``hf`` network for a checkpoint: its config and extractor config.

    Parameters
    ----------
    source : str
        A local directory written by ``save_pretrained`` or a Hub model id (downloaded and cached
        by ``transformers``; set ``HF_HUB_OFFLINE=1`` to forbid network access).

    Returns
    -------
    dict
        ``{"config": {...}, "extractor": {...}}`` (JSON-able).

    Examples
    --------
    >>> opts = hf_net_options("MIT/ast-finetuned-audioset-10-10-0.4593")  # doctest: +SKIP
    >>> opts["config"]["model_type"]  # doctest: +SKIP
    'audio-spectrogram-transformer'
    """
    tf = _transformers()
    try:
        config = tf.AutoConfig.from_pretrained(source)
        extractor = tf.AutoFeatureExtractor.from_pretrained(source)
    except (OSError, ValueError) as exc:
        if os.path.isdir(source):  # a local folder: what is wrong is in it, not the network
            hint = "The folder must be written by save_pretrained (config.json, preprocessor_config.json, weights)."
        elif os.environ.get("HF_HUB_OFFLINE"):
            hint = "HF_HUB_OFFLINE is set: downloads are off. Unset it, or give a folder written by save_pretrained."
        else:
            hint = ("Give a Hub model id that exists (downloaded once, then cached), or a folder written by "
                    "save_pretrained; without a network, download it elsewhere and copy the folder here.")
        raise ParameterError(
            f"hf:{source}: cannot read the Hugging Face checkpoint ({exc}). {hint}"
        ) from exc
    cfg = config.to_dict()
    for key in ("id2label", "label2id", "num_labels", "_name_or_path", "transformers_version", "architectures"):
        cfg.pop(key, None)
    return {"config": cfg, "extractor": extractor.to_dict()}


def _build_extractor(d: dict[str, Any]) -> Any:
    tf = _transformers()
    name = str(d.get("feature_extractor_type", ""))
    cls = getattr(tf, name, None) if name.endswith("FeatureExtractor") else None
    if cls is None:
        raise ParameterError(f"Unknown Hugging Face feature extractor {name!r} in net_options['extractor'].")
    return cls.from_dict(d)


class HFAudioNet(nn.Module):
    """An ``AutoModelForAudioClassification`` behind earmark's network interface.

    Parameters
    ----------
    config : dict
        The model's config (``PretrainedConfig.to_dict()``), ``model_type`` included.
    extractor : dict
        The feature extractor's config (``to_dict()``).
    n_outputs : int
        Number of classes (the classification head is sized for them).

    Examples
    --------
    >>> net = HFAudioNet(opts["config"], opts["extractor"], 3)  # doctest: +SKIP
    >>> net(torch.zeros(2, 16000)).shape  # doctest: +SKIP
    torch.Size([2, 3])
    """

    def __init__(self, config: dict[str, Any], extractor: dict[str, Any], n_outputs: int) -> None:
        super().__init__()
        tf = _transformers()
        cfg = dict(config)
        model_type = cfg.pop("model_type", None)
        if not model_type:
            raise ParameterError("net_options['config'] of the hf network needs a 'model_type'.")
        hf_config = tf.AutoConfig.for_model(model_type, **cfg)
        hf_config.num_labels = int(n_outputs)
        self.model = tf.AutoModelForAudioClassification.from_config(hf_config)
        self.extractor = _build_extractor(extractor)
        self.sampling_rate = int(getattr(self.extractor, "sampling_rate", 16000))
        self._torch_norm = type(self.extractor).__name__ == "Wav2Vec2FeatureExtractor"

    def head_parameter_names(self) -> list[str]:
        """Parameters outside the base model (the projector and classifier): the head."""
        prefix = f"model.{self.model.base_model_prefix}."
        return [f"model.{n}" for n, _ in self.model.named_parameters() if not f"model.{n}".startswith(prefix)]

    def _inputs(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if self._torch_norm:
            if getattr(self.extractor, "do_normalize", True):
                x = (x - x.mean(dim=1, keepdim=True)) / torch.sqrt(x.var(dim=1, keepdim=True, unbiased=False) + 1e-7)
            return {"input_values": x}
        feats = self.extractor(
            list(x.detach().float().cpu().numpy()), sampling_rate=self.sampling_rate, return_tensors="np"
        )
        name = self.extractor.model_input_names[0]
        return {name: torch.as_tensor(np.asarray(feats[name]), dtype=torch.float32, device=x.device)}

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Mean over time of the base model's last hidden state ``(batch, hidden_size)``."""
        base = getattr(self.model, self.model.base_model_prefix)
        h = base(**self._inputs(x)).last_hidden_state
        return h.mean(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(**self._inputs(x)).logits


def hf_audio(
    input_shape: Sequence[int],
    n_outputs: int,
    *,
    config: dict[str, Any] | None = None,
    extractor: dict[str, Any] | None = None,
) -> nn.Module:
    """Builder (``network="hf"``): a Hugging Face audio classifier on raw waveforms.

    ``config`` and ``extractor`` come from :func:`hf_net_options`; the weights are random until
    pretrained ones are loaded (``init_from="hf:..."``) or a bundle's are.

    Examples
    --------
    >>> net = hf_audio((16000,), 3, **hf_net_options("./tiny-wav2vec2"))  # doctest: +SKIP
    """
    if config is None or extractor is None:
        raise ParameterError(
            "The hf network needs net_options={'config': ..., 'extractor': ...}; build the model with "
            "earmark.transfer.finetune('hf:MODEL_ID_OR_DIR') which fills them in."
        )
    if len(input_shape) != 1:
        raise ParameterError(
            f"The hf network needs raw waveforms (samples,) per example; got {tuple(input_shape)}. "
            "Use the 'raw' preset at the checkpoint's sampling rate."
        )
    return HFAudioNet(config, extractor, n_outputs)


def hf_pretrained_state(source: str, n_outputs: int) -> dict[str, torch.Tensor]:
    """State dict of a pretrained checkpoint (keys prefixed ``model.`` as in :class:`HFAudioNet`).

    Examples
    --------
    >>> sd = hf_pretrained_state("./tiny-wav2vec2", 3)  # doctest: +SKIP
    """
    tf = _transformers()
    verbosity = tf.logging.get_verbosity()
    tf.logging.set_verbosity_error()  # the head's size mismatch is intended: no load report
    tf.utils.logging.disable_progress_bar()
    try:
        model = tf.AutoModelForAudioClassification.from_pretrained(
            source, num_labels=int(n_outputs), ignore_mismatched_sizes=True
        )
    except (OSError, ValueError) as exc:
        offline = " (HF_HUB_OFFLINE is set)" if os.environ.get("HF_HUB_OFFLINE") else ""
        raise ParameterError(
            f"hf:{source}: cannot load the pretrained weights{offline}: {exc}"
        ) from exc
    finally:
        tf.logging.set_verbosity(verbosity)
        tf.utils.logging.enable_progress_bar()
    return {f"model.{k}": v for k, v in model.state_dict().items()}

"""Transfer learning: start from a pretrained network, learn from few labels, take embeddings.

- :func:`finetune` / :class:`TransferClassifier`: ``init_from`` a bundle, torchvision's
  MobileNetV2 (on log-mel images), a Hugging Face audio checkpoint or a state-dict file, with
  body freezing, head-only training and discriminative learning rates;
- :func:`embed`: one vector per clip or window from a bundle or backbone (``birdnet`` included:
  CC BY-NC-SA 4.0, non-commercial);
- :func:`embed_preset`: the ``embed:MODEL`` feature preset for classical models.

Importing this package registers the ``mobilenet_v2`` and ``hf`` networks, the ``finetune`` and
``mobilenet_v2`` models, the ``embed`` feature kind and the estimator class for bundles.

Example
-------
>>> from earmark.transfer import finetune
>>> clf = finetune("torchvision:mobilenet_v2", freeze_epochs=2, body_lr_scale=0.1)
>>> clf.get_params()["freeze_epochs"]
2
"""

from typing import Any

from earmark.models import _persist, register_model
from earmark.models._nets import ARCHS
from earmark.transfer._embed import (
    BIRDNET_LICENSE,
    Backbone,
    BirdNETBackbone,
    ModuleBackbone,
    embed,
    get_backbone,
    window_clip,
)
from earmark.transfer._estimator import (
    INIT_KINDS,
    TransferClassifier,
    finetune,
    head_parameter_names,
    load_pretrained,
    parse_init_from,
)
from earmark.transfer._hf import HFAudioNet, hf_audio, hf_net_options
from earmark.transfer._mobilenet import (
    ImageFront,
    MobileNetV2,
    mobilenet_v2_logmel,
    torchvision_state_dict,
)
from earmark.transfer._preset import embed_preset

ARCHS.setdefault(("mobilenet_v2", "imagenet"), mobilenet_v2_logmel)
ARCHS.setdefault(("hf", "auto"), hf_audio)
_persist._TORCH_CLASSES.setdefault("TransferClassifier", TransferClassifier)


def _mobilenet(**params: Any) -> TransferClassifier:
    init = params.pop("init_from", "torchvision:mobilenet_v2")
    if init is None or str(init).startswith("file:"):  # from scratch, or other weights: still mobilenet_v2
        params.setdefault("network", "mobilenet_v2")
        params.setdefault("arch", "imagenet")
    return finetune(init, **params)


_FINETUNE_SPACE = {"lr": ("log", 1e-4, 3e-3), "body_lr_scale": [0.03, 0.1, 0.3, 1.0], "freeze_epochs": [0, 2, 5]}
register_model(
    "finetune", finetune, task="classification", preset="logmel", kind="torch", overwrite=True,
    description="Fine-tune a pretrained network (init_from='bundle:PATH', 'torchvision:mobilenet_v2', "
    "'hf:MODEL', 'file:PATH'; freeze_epochs, body_lr_scale, head_only).",
    search_space=_FINETUNE_SPACE,
)
register_model(
    "mobilenet_v2", _mobilenet, task="classification", preset="logmel", kind="torch", overwrite=True,
    description="ImageNet MobileNetV2 on 224x224x3 log-mel images (the music-genre reference), fine-tuned.",
    search_space=_FINETUNE_SPACE,
)

__all__ = [
    "BIRDNET_LICENSE",
    "INIT_KINDS",
    "Backbone",
    "BirdNETBackbone",
    "HFAudioNet",
    "ImageFront",
    "MobileNetV2",
    "ModuleBackbone",
    "TransferClassifier",
    "embed",
    "embed_preset",
    "finetune",
    "get_backbone",
    "head_parameter_names",
    "hf_audio",
    "hf_net_options",
    "load_pretrained",
    "mobilenet_v2_logmel",
    "parse_init_from",
    "torchvision_state_dict",
    "window_clip",
]

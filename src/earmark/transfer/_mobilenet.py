"""MobileNetV2 on log-mel "images", with torchvision-compatible parameter names.

The music-genre reference fine-tuned an ImageNet MobileNetV2 on mel spectrograms turned into
224×224×3 images. torchvision cannot be installed beside every torch build, so the architecture
is defined here with the very names torchvision uses (``features.0.0.weight`` …
``classifier.1.bias``): a torchvision state dict loads into it unchanged.

The image front (:class:`ImageFront`) is part of the module, so an exported graph carries it:
per-example min-max scaling of the dB spectrogram to [0, 1], bilinear resize to 224×224, the
channel repeated three times, ImageNet mean/std normalisation.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from earmark.errors import ParameterError

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "TORCHVISION_WEIGHTS",
    "ImageFront",
    "MobileNetV2",
    "mobilenet_v2_logmel",
    "torchvision_state_dict",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: torchvision's published ImageNet weights (file name carries the hash prefix torch.hub checks).
TORCHVISION_WEIGHTS = {
    "mobilenet_v2": "https://download.pytorch.org/models/mobilenet_v2-b0353104.pth",
}


class ImageFront(nn.Module):
    """Spectrogram ``(batch, n_mels, frames)`` → ImageNet-normalised ``(batch, 3, size, size)``.

    Parameters
    ----------
    size : int
        Side of the square image (224 for ImageNet backbones).

    Examples
    --------
    >>> tuple(ImageFront(224)(torch.randn(2, 64, 101)).shape)
    (2, 3, 224, 224)
    """

    def __init__(self, size: int = 224) -> None:
        super().__init__()
        self.size = int(size)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 3:
            x = x.unsqueeze(1)
        lo = x.amin(dim=(1, 2, 3), keepdim=True)
        hi = x.amax(dim=(1, 2, 3), keepdim=True)
        x = (x - lo) / (hi - lo).clamp_min(1e-6)
        x = x.flip(2)  # low frequencies at the bottom, as in a picture of a spectrogram
        x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return (x - self.mean) / self.std


def _make_divisible(v: float, divisor: int = 8) -> int:
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def _conv_bn(c_in: int, c_out: int, kernel: int = 3, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU6(inplace=True),
    )


class _InvertedResidual(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = int(round(c_in * expand_ratio))
        self.use_res_connect = stride == 1 and c_in == c_out
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(_conv_bn(c_in, hidden, kernel=1))
        layers += [
            _conv_bn(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, c_out, 1, 1, 0, bias=False),
            nn.BatchNorm2d(c_out),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(nn.Module):
    """MobileNetV2 (Sandler et al. 2018) with torchvision's module layout and parameter names.

    Parameters
    ----------
    num_classes : int
        Outputs of the final linear layer.
    width_mult : float
        Channel multiplier (1.0 for the ImageNet weights).
    dropout : float
        Dropout before the classifier.
    front : nn.Module, optional
        Applied to the input first (e.g. :class:`ImageFront`); no parameters of its own.

    Attributes
    ----------
    features : nn.Sequential
        The body (what pretrained weights provide).
    classifier : nn.Sequential
        ``Dropout, Linear``: the head.

    Examples
    --------
    >>> net = MobileNetV2(num_classes=5, width_mult=0.25)
    >>> tuple(net(torch.zeros(1, 3, 64, 64)).shape)
    (1, 5)
    """

    def __init__(
        self, num_classes: int = 1000, width_mult: float = 1.0, dropout: float = 0.2, front: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.front = front if front is not None else nn.Identity()
        settings = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]
        c_in = _make_divisible(32 * width_mult)
        self.last_channel = _make_divisible(1280 * max(1.0, width_mult))
        layers: list[nn.Module] = [_conv_bn(3, c_in, stride=2)]
        for t, c, n, s in settings:
            c_out = _make_divisible(c * width_mult)
            for i in range(n):
                layers.append(_InvertedResidual(c_in, c_out, s if i == 0 else 1, t))
                c_in = c_out
        layers.append(_conv_bn(c_in, self.last_channel, kernel=1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.last_channel, num_classes))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def head_parameter_names(self) -> list[str]:
        """Names (as in ``state_dict``) of the head's parameters; everything else is body."""
        return [f"classifier.{n}" for n, _ in self.classifier.named_parameters()]

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled body output ``(batch, last_channel)``: the embedding."""
        x = self.features(self.front(x))
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(x))


def mobilenet_v2_logmel(
    input_shape: Sequence[int],
    n_outputs: int,
    *,
    width_mult: float = 1.0,
    dropout: float = 0.2,
    image_size: int = 224,
) -> nn.Module:
    """Builder (``network="mobilenet_v2"``): MobileNetV2 on log-mel images, as the reference did.

    Parameters
    ----------
    input_shape : tuple of int
        ``(n_mels, frames)`` or ``(1, n_mels, frames)`` per example.
    n_outputs : int
        Number of classes.
    width_mult : float
        Channel multiplier; ImageNet weights need 1.0.
    dropout : float
        Dropout before the head.
    image_size : int
        Side of the resized image (224 as for ImageNet).

    Returns
    -------
    MobileNetV2

    Examples
    --------
    >>> net = mobilenet_v2_logmel((64, 101), 4, width_mult=0.25, image_size=64)
    >>> tuple(net(torch.zeros(2, 64, 101)).shape)
    (2, 4)
    """
    if len(input_shape) not in (2, 3) or (len(input_shape) == 3 and input_shape[0] not in (1, 3)):
        raise ParameterError(
            f"The mobilenet_v2 network needs log-mel inputs of shape (n_mels, frames) per example; got "
            f"{tuple(input_shape)}. Use a spectrogram preset such as 'logmel'."
        )
    return MobileNetV2(n_outputs, width_mult=width_mult, dropout=dropout, front=ImageFront(image_size))


def torchvision_state_dict(name: str, *, progress: bool = False) -> dict[str, torch.Tensor]:
    """ImageNet weights of a torchvision model, from torch.hub's cache (downloaded once if missing).

    The file lands in ``$TORCH_HOME/hub/checkpoints`` under torchvision's own file name, so a file
    torchvision already downloaded is reused, and a file placed there by hand is loaded without
    any network access. It is read with ``torch.load(weights_only=True)`` (no arbitrary unpickling).

    Parameters
    ----------
    name : str
        A key of :data:`TORCHVISION_WEIGHTS` (``"mobilenet_v2"``).
    progress : bool
        Show a download progress bar.

    Returns
    -------
    dict of str to Tensor

    Examples
    --------
    >>> sd = torchvision_state_dict("mobilenet_v2")  # doctest: +SKIP
    >>> sd["classifier.1.weight"].shape  # doctest: +SKIP
    torch.Size([1000, 1280])
    """
    url = TORCHVISION_WEIGHTS.get(name)
    if url is None:
        raise ParameterError(
            f"Unknown torchvision backbone {name!r} in init_from='torchvision:{name}'. "
            f"Choose one of {sorted(TORCHVISION_WEIGHTS)}."
        )
    cache = Path(torch.hub.get_dir()) / "checkpoints"
    try:
        return torch.hub.load_state_dict_from_url(
            url, model_dir=str(cache), map_location="cpu", progress=progress, check_hash=True, weights_only=True
        )
    except (OSError, RuntimeError) as exc:
        raise ParameterError(
            f"Cannot get the {name} ImageNet weights ({type(exc).__name__}: {exc}). Download {url} "
            f"and put it in {cache}, or set TORCH_HOME to a cache that holds it."
        ) from exc

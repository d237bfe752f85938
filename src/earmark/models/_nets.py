"""Neural network builders, by family (``network``) and variant (``arch``).

Every builder has the signature ``builder(input_shape, n_outputs, **options) -> nn.Module``;
``input_shape`` excludes the batch axis:

- ``mlp``: ``(n_features,)`` pooled vectors;
- ``cnn``: ``(n_mels, frames)`` or ``(channels, n_mels, frames)`` spectrogram-like inputs;
- ``lstm``: ``(n_coefficients, frames)`` sequences (features first, as librosa returns them);
- ``cnn1d``: ``(samples,)`` raw waveforms;
- ``hcnn``: ``(bins, frames)`` log-frequency (constant-Q) spectrograms.

Modules take float32 batches ``(batch, *input_shape)`` and return logits ``(batch, n_outputs)``.
Per-utterance normalisation is part of the module (:class:`UtteranceNorm`), so an exported graph
(ONNX) carries it along.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from earmark.errors import ParameterError

__all__ = ["ARCHS", "SeedEnsemble", "UtteranceNorm", "build_network", "first_member", "list_archs", "use_channels_last"]


class UtteranceNorm(nn.Module):
    """Normalise each example on its own (no statistics learned from the training set).

    Parameters
    ----------
    mode : {"feature", "global", "none"}
        ``"feature"``: subtract each feature row's mean over time (cepstral/spectral mean
        normalisation, removes the channel and much of the speaker colouring) and divide by the
        example's overall standard deviation; ``"global"``: subtract the example's mean and divide
        by its standard deviation; ``"none"``: identity.
    eps : float
        Floor added to the standard deviation.

    Examples
    --------
    >>> x = torch.randn(2, 8, 20) * 5 + 3
    >>> y = UtteranceNorm("global")(x)
    >>> bool(torch.allclose(y.mean(dim=(1, 2)), torch.zeros(2), atol=1e-5))
    True
    """

    def __init__(self, mode: str = "feature", eps: float = 1e-5) -> None:
        super().__init__()
        if mode not in ("feature", "global", "none"):
            raise ParameterError(
                f"The 'norm' parameter must be 'feature', 'global' or 'none'. Got {mode!r} instead."
            )
        self.mode = mode
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "none":
            return x
        dims = tuple(range(1, x.dim()))
        if self.mode == "feature" and x.dim() >= 3:
            x = x - x.mean(dim=-1, keepdim=True)
        else:
            x = x - x.mean(dim=dims, keepdim=True)
        return x / (x.std(dim=dims, keepdim=True) + self.eps)


def _as_image(input_shape: Sequence[int]) -> tuple[int, int, int]:
    if len(input_shape) == 2:
        return (1, int(input_shape[0]), int(input_shape[1]))
    if len(input_shape) == 3:
        return tuple(int(s) for s in input_shape)  # type: ignore[return-value]
    raise ParameterError(
        f"The cnn network needs inputs of shape (n_mels, frames) or (channels, n_mels, frames) per "
        f"example; got {tuple(input_shape)}. Use a spectrogram preset such as 'logmel'."
    )


class _AddChannel(nn.Module):
    """Adds the channel axis to ``(batch, *ndim)`` inputs; with ``channels_last`` set (see
    :func:`use_channels_last`), hands images on in channels-last memory order."""

    channels_last = False

    def __init__(self, ndim: int) -> None:
        super().__init__()
        self.ndim = ndim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.unsqueeze(1) if x.dim() == self.ndim + 1 else x
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x


def use_channels_last(module: nn.Module, enable: bool = True) -> bool:
    """Put a network with 2-D convolutions in channels-last memory order (or back).

    On CPU, oneDNN's convolutions and batch norm run about a third faster per training step in
    that order for the compact CNN. Values are the same up to float rounding. Returns whether the
    module has 2-D convolutions (otherwise nothing is changed).

    Example
    -------
    >>> net = build_network("cnn", "default", (64, 101), 10)
    >>> use_channels_last(net)
    True
    """
    if not any(isinstance(m, nn.Conv2d) for m in module.modules()):
        return False
    module.to(memory_format=torch.channels_last if enable else torch.contiguous_format)
    for m in module.modules():
        if isinstance(m, _AddChannel):
            m.channels_last = enable
    return True


class _ResBlock(nn.Module):
    """Depthwise-separable residual block (MobileNet/BC-ResNet style)."""

    def __init__(self, c_in: int, c_out: int, stride: int, dropout: float) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c_in, c_in, 3, stride=stride, padding=1, groups=c_in, bias=False),
            nn.BatchNorm2d(c_in),
            nn.ReLU(inplace=True),
            nn.Conv2d(c_in, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
            nn.Conv2d(c_out, c_out, 3, padding=1, groups=c_out, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
            nn.Conv2d(c_out, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.Dropout2d(dropout),
        )
        self.skip: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.skip = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
            )
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.skip(x))


class _AdaptiveAvgPool2d(nn.AdaptiveAvgPool2d):
    """``nn.AdaptiveAvgPool2d`` that also exports to ONNX with a waveform frontend in the graph.

    The exporter cannot lower an adaptive pool to an output size other than 1 when the input's
    size is symbolic (as it is behind the frontend, even though the frontend fixes it); during
    export the same windows are taken as explicit slices of the traced shape (PyTorch's rule: window
    ``i`` of ``n`` over ``L`` spans ``floor(i L / n)`` to ``ceil((i + 1) L / n)``). Same result; no
    parameters, so a state dict of the plain pool loads unchanged.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.onnx.is_in_onnx_export():
            return super().forward(x)
        size = self.output_size if isinstance(self.output_size, tuple) else (self.output_size,) * 2
        h, w = int(x.shape[-2]), int(x.shape[-1])
        oh = h if size[0] is None else int(size[0])
        ow = w if size[1] is None else int(size[1])
        rows = []
        for i in range(oh):
            r0, r1 = (i * h) // oh, -((-(i + 1) * h) // oh)
            cols = [x[..., r0:r1, (j * w) // ow:-((-(j + 1) * w) // ow)].mean(dim=(-2, -1), keepdim=True)
                    for j in range(ow)]
            rows.append(torch.cat(cols, dim=-1))
        return torch.cat(rows, dim=-2)


class ResNorm(nn.Module):
    """Residual frequency-wise instance normalisation (Kim et al., "Domain generalization on
    efficient acoustic scene classification using residual normalization", DCASE 2021):
    ``lam * x + IFN(x)``, where IFN normalises each frequency row of each example over its
    channels and time. It removes what an example's recording channel or voice adds to each band,
    at every stage of the network, while ``lam * x`` keeps some of it.

    Examples
    --------
    >>> ResNorm(0.1)(torch.randn(2, 4, 8, 10)).shape
    torch.Size([2, 4, 8, 10])
    """

    def __init__(self, lam: float = 0.1, eps: float = 1e-5) -> None:
        super().__init__()
        self.lam = float(lam)
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=(1, 3), keepdim=True)
        var = x.var(dim=(1, 3), keepdim=True, unbiased=False)
        return self.lam * x + (x - mean) / torch.sqrt(var + self.eps)


class _BandStats(nn.Module):
    """Each band's mean and standard deviation over time, ``(batch, channels, bands, frames)`` to
    ``(batch, 2 * channels * bands)``: the long-term spectrum and how much each band moves."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x.mean(dim=-1), x.std(dim=-1)], dim=-1).flatten(1)


class _StatsCNN(nn.Module):
    """A CNN whose head also reads the input's per-band statistics (``cnn_default(stats=True)``)."""

    def __init__(self, front: nn.Module, body: nn.Module, n_stats: int, ch: int, n_outputs: int,
                 dropout: float) -> None:
        super().__init__()
        self.front = front
        self.body = body
        self.stats = nn.Sequential(_BandStats(), nn.BatchNorm1d(n_stats), nn.Linear(n_stats, ch), nn.ReLU(inplace=True))
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * ch, n_outputs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.front(x)
        return self.head(torch.cat([self.body(x), self.stats(x)], dim=1))


def cnn_default(
    input_shape: Sequence[int],
    n_outputs: int,
    *,
    width: int = 16,
    depth: int = 3,
    dropout: float = 0.2,
    norm: str = "global",
    pool: str = "global",
    stats: bool = False,
    resnorm: float | None = None,
) -> nn.Module:
    """Compact residual depthwise-separable CNN (~50k parameters at width 16).

    ``pool="global"`` averages over frequency and time (shift-invariant: classes);
    ``pool="time"`` averages over time only and keeps the frequency positions (absolute pitch:
    regression of a note's pitch). ``stats=True`` adds a branch that reads each input band's mean
    and standard deviation over time (after ``norm``) beside the pooled convolutional features:
    the long-term spectrum, which global pooling of local filters sees only indirectly.
    ``resnorm=lam`` puts a :class:`ResNorm` (``lam * x`` + frequency-wise instance normalisation)
    after the stem and after each block (``None``: off). Measured with ``resnorm=0`` (this default
    otherwise): FSDD leave-one-speaker-out mean 0.856 -> 0.898 with seed 0 but 0.869 -> 0.860 with
    seed 1 (worst speaker, nicolas, 0.742 -> 0.812 and 0.730 -> 0.754): within the seed spread for
    the mean. Instrument family over unheard programs 0.519 -> 0.516; real vs synthetic voice
    0.920 -> 0.865 (it removes the voice colouring that task rests on); added to the speech recipe
    (2,000 synthetic clips, ``norm="feature"``) 0.932 -> 0.921 mean, 0.886 -> 0.848 worst. So it
    stays an option, off by default.
    """
    c, n_freq, _ = _as_image(input_shape)
    if resnorm is not None and not (isinstance(resnorm, (int, float)) and not isinstance(resnorm, bool)
                                    and resnorm >= 0):
        raise ParameterError(f"The 'resnorm' option of the cnn is a weight >= 0 (or None). Got {resnorm!r} instead.")
    if pool not in ("global", "time"):
        raise ParameterError(f"The 'pool' option of the cnn must be 'global' or 'time'. Got {pool!r} instead.")
    front: list[nn.Module] = [_AddChannel(2), UtteranceNorm(norm)]
    layers: list[nn.Module] = [
        nn.Conv2d(c, width, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU(inplace=True),
    ]
    if resnorm is not None:
        layers.append(ResNorm(resnorm))
    ch = width
    for i in range(depth):
        out = width * 2 ** min(i + 1, 3)
        layers.append(_ResBlock(ch, out, stride=2, dropout=dropout / 2))
        if resnorm is not None:
            layers.append(ResNorm(resnorm))
        ch = out
    f_out = n_freq
    for _ in range(depth + 1):
        f_out = (f_out - 1) // 2 + 1
    if stats:
        if pool != "global":
            raise ParameterError("The cnn's 'stats' branch goes with pool='global'.")
        body = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        return _StatsCNN(nn.Sequential(*front), body, 2 * c * n_freq, ch, n_outputs, dropout)
    if pool == "global":
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(ch, n_outputs)]
    else:
        layers += [_AdaptiveAvgPool2d((f_out, 1)), nn.Flatten(), nn.Dropout(dropout),
                   nn.Linear(ch * f_out, n_outputs)]
    return nn.Sequential(*front, *layers)


def cnn_reference(
    input_shape: Sequence[int], n_outputs: int, *, dropout: float = 0.25, norm: str = "none"
) -> nn.Module:
    """The reference recipe: six 3x3 conv layers (32-32-64-64-128-128), max pooling, dense 128."""
    c, _, _ = _as_image(input_shape)
    layers: list[nn.Module] = [_AddChannel(2), UtteranceNorm(norm)]
    ch = c
    for out in (32, 64, 128):
        layers += [
            nn.Conv2d(ch, out, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(out, out, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2, ceil_mode=True),
            nn.Dropout(dropout),
        ]
        ch = out
    layers += [
        _AdaptiveAvgPool2d((2, 2)),
        nn.Flatten(),
        nn.Linear(ch * 4, 128),
        nn.ReLU(inplace=True),
        nn.Dropout(2 * dropout),
        nn.Linear(128, n_outputs),
    ]
    return nn.Sequential(*layers)


def _mlp(sizes: Sequence[int], n_in: int, n_outputs: int, dropout: float, batchnorm: bool) -> nn.Module:
    layers: list[nn.Module] = []
    prev = n_in
    for h in sizes:
        layers.append(nn.Linear(prev, h))
        if batchnorm:
            layers.append(nn.BatchNorm1d(h))
        layers += [nn.ReLU(inplace=True), nn.Dropout(dropout)]
        prev = h
    layers.append(nn.Linear(prev, n_outputs))
    return nn.Sequential(*layers)


def _flat_features(input_shape: Sequence[int], network: str) -> int:
    if len(input_shape) != 1:
        raise ParameterError(
            f"The {network} network needs pooled feature vectors (n_features,) per example; got "
            f"{tuple(input_shape)}. Use a pooled preset such as 'classic173' or 'mfcc-mean'."
        )
    return int(input_shape[0])


class _Standardize(nn.Module):
    """Feature standardisation with statistics stored as buffers (set by the estimator)."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(n))
        self.register_buffer("scale", torch.ones(n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.scale


def mlp_default(
    input_shape: Sequence[int], n_outputs: int, *, hidden: Sequence[int] = (256, 128), dropout: float = 0.3
) -> nn.Module:
    """Batch-normalised MLP on pooled feature vectors (inputs standardised inside)."""
    n = _flat_features(input_shape, "mlp")
    return nn.Sequential(_Standardize(n), _mlp(hidden, n, n_outputs, dropout, batchnorm=True))


def mlp_reference_173(input_shape: Sequence[int], n_outputs: int, *, dropout: float = 0.5) -> nn.Module:
    """Reference recipe: 173 → 1024 → 512 → 64 → classes (ReLU, dropout)."""
    n = _flat_features(input_shape, "mlp")
    return nn.Sequential(_Standardize(n), _mlp((1024, 512, 64), n, n_outputs, dropout, batchnorm=False))


def mlp_reference_40(input_shape: Sequence[int], n_outputs: int, *, dropout: float = 0.3) -> nn.Module:
    """Reference recipe: 40 → 128 → 256 → 512 → 64 → classes (ReLU, dropout)."""
    n = _flat_features(input_shape, "mlp")
    return nn.Sequential(
        _Standardize(n), _mlp((128, 256, 512, 64), n, n_outputs, dropout, batchnorm=False)
    )


class _LSTMNet(nn.Module):
    def __init__(
        self,
        n_features: int,
        n_outputs: int,
        hidden: int,
        layers: int,
        bidirectional: bool,
        pool: str,
        dropout: float,
        norm: str,
    ) -> None:
        super().__init__()
        self.norm = UtteranceNorm(norm)
        self.lstm = nn.LSTM(
            n_features,
            hidden,
            num_layers=layers,
            batch_first=True,
            bidirectional=bidirectional,
            dropout=dropout if layers > 1 else 0.0,
        )
        self.pool = pool
        out = hidden * (2 if bidirectional else 1)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(out, n_outputs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x).transpose(1, 2)  # (batch, frames, features)
        seq, _ = self.lstm(x)
        z = seq.mean(dim=1) if self.pool == "mean" else seq[:, -1]
        return self.head(z)


def _seq_features(input_shape: Sequence[int]) -> int:
    if len(input_shape) != 2:
        raise ParameterError(
            f"The lstm network needs sequences (n_coefficients, frames) per example; got "
            f"{tuple(input_shape)}. Use a sequence preset such as 'mfcc-seq'."
        )
    return int(input_shape[0])


def lstm_default(
    input_shape: Sequence[int], n_outputs: int, *, hidden: int = 96, layers: int = 2,
    dropout: float = 0.2, norm: str = "feature",
) -> nn.Module:
    """Bidirectional 2-layer LSTM with mean pooling over time and per-utterance normalisation."""
    return _LSTMNet(_seq_features(input_shape), n_outputs, hidden, layers, True, "mean", dropout, norm)


def lstm_reference(
    input_shape: Sequence[int], n_outputs: int, *, hidden: int = 128, layers: int = 2,
    dropout: float = 0.2, norm: str = "none",
) -> nn.Module:
    """Reference recipe: stacked unidirectional LSTM, last time step, dense output."""
    return _LSTMNet(_seq_features(input_shape), n_outputs, hidden, layers, False, "last", dropout, norm)


def _raw_samples(input_shape: Sequence[int]) -> int:
    if len(input_shape) != 1:
        raise ParameterError(
            f"The cnn1d network needs raw waveforms (samples,) per example; got "
            f"{tuple(input_shape)}. Use the 'raw' preset."
        )
    return int(input_shape[0])


def _conv1d_stack(spec: Sequence[tuple[int, int, int]], batchnorm: bool, pool: int) -> list[nn.Module]:
    layers: list[nn.Module] = []
    ch = 1
    for i, (out, k, s) in enumerate(spec):
        layers.append(nn.Conv1d(ch, out, k, stride=s, padding=k // 2))
        if batchnorm:
            layers.append(nn.BatchNorm1d(out))
        layers.append(nn.ReLU(inplace=True))
        if i < len(spec) - 1:
            layers.append(nn.MaxPool1d(pool, ceil_mode=True))
        ch = out
    return layers


def cnn1d_default(
    input_shape: Sequence[int], n_outputs: int, *, width: int = 32, dropout: float = 0.2,
    norm: str = "global",
) -> nn.Module:
    """M5-style raw-waveform CNN with batch norm and global pooling."""
    _raw_samples(input_shape)
    spec = [(width, 80, 4), (width, 3, 1), (2 * width, 3, 1), (4 * width, 3, 1)]
    return nn.Sequential(
        _AddChannel(1), UtteranceNorm(norm), *_conv1d_stack(spec, True, 4),
        nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(4 * width, n_outputs),
    )


def cnn1d_reference(
    input_shape: Sequence[int], n_outputs: int, *, dropout: float = 0.3, norm: str = "none"
) -> nn.Module:
    """Reference recipe: plain 1-D convolutions (large first kernel), max pooling, dense 64."""
    _raw_samples(input_shape)
    spec = [(16, 64, 2), (32, 32, 2), (64, 16, 2), (128, 8, 2)]
    return nn.Sequential(
        _AddChannel(1), UtteranceNorm(norm), *_conv1d_stack(spec, False, 8),
        nn.AdaptiveMaxPool1d(1), nn.Flatten(), nn.Linear(128, 64), nn.ReLU(inplace=True),
        nn.Dropout(dropout), nn.Linear(64, n_outputs),
    )


class _HarmonicStack(nn.Module):
    """Stack copies of a log-frequency axis shifted so that harmonic ``h`` of every bin lands on it.

    Input ``(batch, channels, bins)``; output ``(batch, channels * len(harmonics), bins)``, where
    channel ``c * H + k`` at bin ``b`` holds input bin ``b + round(bins_per_octave * log2(h_k))``
    (zero outside the axis): a convolution then sees a pitch and its partials at one position.
    """

    def __init__(self, harmonics: Sequence[float], bins_per_octave: int) -> None:
        super().__init__()
        self.shifts = [round(bins_per_octave * math.log2(float(h))) for h in harmonics]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n_bins = x.shape[-1]
        out = []
        for s in self.shifts:
            if s == 0:
                out.append(x)
            elif s > 0:
                out.append(nn.functional.pad(x[..., s:], (0, min(s, n_bins))) if s < n_bins else torch.zeros_like(x))
            else:
                out.append(nn.functional.pad(x[..., : n_bins + s], (min(-s, n_bins), 0)) if -s < n_bins
                           else torch.zeros_like(x))
        return torch.cat(out, dim=1)


class _HarmonicCNN(nn.Module):
    def __init__(self, n_bins: int, n_outputs: int, *, bins_per_octave: int, harmonics: Sequence[float],
                 width: int, dropout: float, head: str, fmin_value: float, units_per_octave: float) -> None:
        super().__init__()
        self.head = head
        self.bins_per_octave = bins_per_octave
        self.stack = _HarmonicStack(harmonics, bins_per_octave)
        c_in = 2 * len(harmonics)
        octave = max(1, bins_per_octave // 4)
        layers: list[nn.Module] = []
        for c, (k, d) in zip((c_in, width, width, width), ((5, 1), (5, 1), (5, max(1, octave // 2)), (5, octave))):
            layers += [nn.Conv1d(c, width, k, padding=d * (k // 2), dilation=d, bias=False), nn.BatchNorm1d(width),
                       nn.ReLU(inplace=True)]
        self.body = nn.Sequential(*layers)
        self.drop = nn.Dropout(dropout)
        self._logits: torch.Tensor | None = None
        if head == "position":
            self.score = nn.Conv1d(width, 1, 1)
            # value (target units) of every bin, and the target standardisation of the estimator
            values = fmin_value + torch.arange(n_bins, dtype=torch.float32) * (units_per_octave / bins_per_octave)
            self.register_buffer("values", values)
            self.register_buffer("y_mean", torch.zeros(()))
            self.register_buffer("y_scale", torch.ones(()))
        else:
            self.out = nn.Linear(2 * width, n_outputs)

    def set_target_scaling(self, mean: float, scale: float) -> None:
        """Targets are standardised by the estimator: output ``(value - mean) / scale``."""
        if self.head != "position":  # a pooled head learns the scale in its linear layer
            return
        self.y_mean.fill_(float(mean))
        self.y_scale.fill_(float(scale))

    def _trunk(self, x: torch.Tensor) -> torch.Tensor:
        # (batch, bins, frames) dB -> level relative to the example's peak, pooled over time
        x = x - x.amax(dim=(-2, -1), keepdim=True)
        x = (x.clamp_min(-80.0) + 80.0) / 80.0
        pooled = torch.stack([x.mean(dim=-1), x.amax(dim=-1)], dim=1)
        return self.body(self.stack(pooled))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """One vector per example, ``(batch, 2 * width)``: the body's output, mean- and max-pooled
        over the frequency axis (what the pooled head reads; the position head has no such layer)."""
        h = self._trunk(x)
        return torch.cat([h.mean(dim=-1), h.amax(dim=-1)], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.drop(self._trunk(x))
        if self.head != "position":
            return self.out(torch.cat([h.mean(dim=-1), h.amax(dim=-1)], dim=1))
        logits = self.score(h)[:, 0]
        self._logits = logits if self.training else None
        # the value around the most likely bin (a local soft-argmax: no averaging across octaves)
        n_bins = logits.shape[-1]
        idx = torch.arange(n_bins, device=logits.device)
        near = (idx[None] - logits.argmax(dim=-1, keepdim=True)).abs() <= max(1, self.bins_per_octave // 12)
        w = torch.softmax(logits.masked_fill(~near, float("-inf")), dim=-1)
        value = (w * self.values).sum(dim=-1, keepdim=True)
        return (value - self.y_mean) / self.y_scale

    def aux_loss(self, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of the bin scores against the target's bin (blurred by one bin)."""
        if self._logits is None:
            return torch.zeros((), device=target.device)
        raw = target.float() * self.y_scale + self.y_mean
        step = self.values[1] - self.values[0]
        pos = (raw - self.values[0]) / step
        idx = torch.arange(self._logits.shape[-1], device=target.device, dtype=torch.float32)
        q = torch.softmax(-0.5 * (idx[None] - pos[:, None]) ** 2, dim=-1)
        per = -(q * torch.log_softmax(self._logits, dim=-1)).sum(dim=-1)
        return (per * weight).sum() / weight.sum().clamp_min(1e-12)


def hcnn_default(
    input_shape: Sequence[int],
    n_outputs: int,
    *,
    bins_per_octave: int = 36,
    harmonics: Sequence[float] = (0.5, 1, 2, 3, 4, 5, 6),
    width: int = 48,
    dropout: float = 0.1,
    head: str = "auto",
    fmin_value: float = 21.0,
    units_per_octave: float = 12.0,
) -> nn.Module:
    """Harmonic CNN on a log-frequency spectrogram ``(bins, frames)`` (the ``cqt`` preset).

    The spectrum is pooled over time (mean and max of the level relative to the peak), stacked
    with copies shifted by each harmonic's interval (``bins_per_octave`` must match the preset),
    and convolved along frequency only, so the network is equivariant to pitch shifts.
    ``head="position"`` (the default for one output) scores every bin and reads the target off the
    best bin's position (a local soft-argmax), trained with a cross-entropy over bins as well as
    the estimator's loss: a regression of targets linear in log-frequency that transfers across
    the register. The bins' values are ``fmin_value + k * units_per_octave / bins_per_octave``;
    the defaults match the ``cqt`` preset and MIDI pitch (bin 0 = MIDI 21, 12 per octave).
    ``head="pool"`` pools over frequency (classification).
    """
    if len(input_shape) != 2:
        raise ParameterError(f"The hcnn network takes (bins, frames) inputs (preset 'cqt'). Got shape {tuple(input_shape)}.")
    if head == "auto":
        head = "position" if n_outputs == 1 else "pool"
    if head not in ("position", "pool"):
        raise ParameterError(f"The 'head' option of the hcnn must be 'auto', 'position' or 'pool'. Got {head!r} instead.")
    return _HarmonicCNN(int(input_shape[0]), n_outputs, bins_per_octave=int(bins_per_octave),
                        harmonics=tuple(harmonics), width=int(width), dropout=float(dropout), head=head,
                        fmin_value=float(fmin_value), units_per_octave=float(units_per_octave))


#: (network, arch) -> builder
ARCHS: dict[tuple[str, str], Callable[..., nn.Module]] = {
    ("mlp", "default"): mlp_default,
    ("mlp", "reference-173"): mlp_reference_173,
    ("mlp", "reference-40"): mlp_reference_40,
    ("cnn", "default"): cnn_default,
    ("cnn", "reference"): cnn_reference,
    ("lstm", "default"): lstm_default,
    ("lstm", "reference"): lstm_reference,
    ("cnn1d", "default"): cnn1d_default,
    ("cnn1d", "reference"): cnn1d_reference,
    ("hcnn", "default"): hcnn_default,
}


def list_archs(network: str | None = None) -> list[tuple[str, str]]:
    """Known ``(network, arch)`` pairs.

    Examples
    --------
    >>> ("mlp", "reference-173") in list_archs("mlp")
    True
    """
    return sorted(k for k in ARCHS if network is None or k[0] == network)


def average_outputs(outs: Sequence[torch.Tensor], task: str) -> torch.Tensor:
    """One output from several outputs of a network (test-time views, ensemble members).

    Classification: the log of the mean class probabilities (a softmax of it is that mean);
    regression: the mean.

    Example
    -------
    >>> out = average_outputs([torch.zeros(2, 3), torch.ones(2, 3)], "classification")
    >>> bool(torch.allclose(torch.softmax(out, dim=1), torch.full((2, 3), 1 / 3)))
    True
    """
    if task == "regression":
        return torch.stack(list(outs)).mean(dim=0)
    probs = torch.stack([torch.softmax(o.float(), dim=1) for o in outs]).mean(dim=0)
    return probs.clamp_min(1e-30).log()


class SeedEnsemble(nn.Module):
    """Networks of one architecture trained from different seeds, answering as one network.

    A classifier ensemble returns the log of its members' mean class probabilities (so a softmax
    of its output is that mean, and the ONNX graph, the service and ``predict_proba`` need nothing
    else); a regressor ensemble returns the mean of its members' outputs.

    Examples
    --------
    >>> nets = [build_network("mlp", "default", (8,), 3) for _ in range(2)]
    >>> ens = SeedEnsemble(nets, "classification").eval()
    >>> p = torch.softmax(ens(torch.zeros(4, 8)), dim=1)
    >>> bool(torch.allclose(p.sum(dim=1), torch.ones(4)))
    True
    """

    def __init__(self, members: Sequence[nn.Module], task: str) -> None:
        super().__init__()
        if len(members) < 1:
            raise ParameterError("A SeedEnsemble needs at least one member network.")
        if task not in ("classification", "regression"):
            raise ParameterError(f"SeedEnsemble task must be 'classification' or 'regression'. Got {task!r}.")
        self.members = nn.ModuleList(members)
        self.task = task

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return average_outputs([m(x) for m in self.members], self.task)


def first_member(module: nn.Module) -> nn.Module:
    """The first network of a :class:`SeedEnsemble`, or ``module`` itself (embeddings, fine-tuning)."""
    return module.members[0] if isinstance(module, SeedEnsemble) else module


def build_network(
    network: str, arch: str, input_shape: Sequence[int], n_outputs: int, options: dict | None = None
) -> nn.Module:
    """Build a fresh module for the given family and variant.

    Examples
    --------
    >>> net = build_network("cnn", "default", (40, 32), 10)
    >>> tuple(net(torch.zeros(2, 40, 32)).shape)
    (2, 10)
    """
    builder = ARCHS.get((network, arch))
    if builder is None:
        known = [a for n, a in ARCHS if n == network]
        if not known:
            raise ParameterError(
                f"The 'network' parameter must be one of {sorted({n for n, _ in ARCHS})}. "
                f"Got {network!r} instead."
            )
        raise ParameterError(
            f"The 'arch' parameter of the {network} network must be one of {known}. Got {arch!r} instead."
        )
    try:
        return builder(tuple(input_shape), int(n_outputs), **(options or {}))
    except TypeError as exc:
        raise ParameterError(f"Bad 'net_options' for {network}/{arch}: {exc}") from exc

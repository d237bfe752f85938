"""Figures of a model and its data: each function takes data and returns a matplotlib Figure.

Nothing here reads files, trains or shows a window: the figures use the Agg canvas, and the
caller saves them (``fig.savefig``) or inlines them in the HTML report
(:func:`earmark.evaluation.figure_to_data_uri`).

Example
-------
>>> from earmark.evaluation import plots
>>> fig = plots.plot_confusion_matrix([[5, 1], [0, 6]], ["no", "yes"])
>>> len(fig.axes) >= 2
True
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from earmark.errors import ParameterError

__all__ = [
    "plot_class_examples",
    "plot_confusion_matrix",
    "plot_cv_folds",
    "plot_embedding",
    "plot_feature_distributions",
    "plot_per_class_scores",
    "plot_predicted_vs_true",
    "plot_reliability",
    "plot_training_curves",
]

_CMAP = "viridis"


def _figure(width: float, height: float) -> Figure:
    """A figure bound to the Agg canvas (no GUI, no pyplot global state)."""
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _colors(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def plot_training_curves(history: Sequence[Mapping[str, Any]]) -> Figure:
    """Loss, accuracy and learning rate per epoch, training and validation side by side.

    Parameters
    ----------
    history : sequence of dict
        One dict per epoch with any of ``epoch``, ``loss``, ``val_loss``, ``accuracy``,
        ``val_accuracy``, ``lr`` (missing or ``None`` values are skipped).

    Returns
    -------
    matplotlib.figure.Figure
        One panel per quantity present (loss, accuracy, learning rate).

    Examples
    --------
    >>> fig = plot_training_curves([{"epoch": 1, "loss": 1.0, "lr": 0.1},
    ...                             {"epoch": 2, "loss": 0.5, "lr": 0.05}])
    >>> [ax.get_title() for ax in fig.axes]
    ['Loss', 'Learning rate']
    """
    if not history:
        raise ParameterError(
            "plot_training_curves needs a non-empty 'history' (one dict per epoch). Models "
            "trained without epochs (e.g. random forests) have no curves to draw."
        )
    panels = [
        ("Loss", ("loss", "val_loss")),
        ("Accuracy", ("accuracy", "val_accuracy")),
        ("Learning rate", ("lr",)),
    ]
    present = [
        (title, [k for k in keys if any(h.get(k) is not None for h in history)])
        for title, keys in panels
    ]
    present = [(title, keys) for title, keys in present if keys]
    if not present:
        raise ParameterError(
            "plot_training_curves found none of loss, val_loss, accuracy, val_accuracy, lr in "
            f"'history'. Got keys {sorted(history[0])}."
        )
    fig = _figure(4.0 * len(present), 3.2)
    axes = fig.subplots(1, len(present), squeeze=False)[0]
    for ax, (title, keys) in zip(axes, present, strict=True):
        for key in keys:
            pts = [
                (h.get("epoch", i + 1), float(h[key]))
                for i, h in enumerate(history)
                if h.get(key) is not None
            ]
            x, y = zip(*pts, strict=True)
            ax.plot(x, y, marker="o" if len(x) < 30 else None, ms=3,
                    ls="--" if key.startswith("val_") else "-",
                    label="validation" if key.startswith("val_") else "training")
        ax.set_title(title)
        ax.set_xlabel("epoch")
        if title == "Learning rate" and all(
            float(h["lr"]) > 0 for h in history if h.get("lr") is not None
        ):
            ax.set_yscale("log")
        elif len(keys) > 1 or keys[0] != "lr":
            ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    return fig


def _short(name: Any, width: int = 24) -> str:
    """A class name cut to ``width`` characters for an axis (tables keep the whole name)."""
    text = str(name)
    return text if len(text) <= width else text[: width - 1] + "…"


def _heatmap(ax: Axes, matrix: np.ndarray, classes: Sequence[str], fmt: str, title: str) -> None:
    n = len(classes)
    labels = [_short(c) for c in classes]
    tick_size = 8 if n <= 20 else 6 if n <= 40 else 5
    # rates on a fixed 0..1 scale (so that figures compare); counts from 0 to the largest cell
    vmax = 1.0 if fmt != "d" else max(float(matrix.max()), 1.0)
    im = ax.imshow(matrix, cmap="Blues", vmin=0, vmax=vmax)
    ax.set_title(title)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_xticks(range(n), labels, rotation=45 if n > 4 else 0, ha="right" if n > 4 else "center",
                  rotation_mode="anchor" if n > 4 else "default", fontsize=tick_size)
    ax.set_yticks(range(n), labels, fontsize=tick_size)
    if n <= 20:
        threshold = vmax / 2.0
        # many classes: rates as whole percents and empty cells left blank, so the numbers do not
        # run into each other
        compact = fmt != "d" and n > 8
        for i in range(n):
            for j in range(n):
                value = matrix[i, j]
                if compact and round(value * 100) == 0:
                    continue
                text = f"{value * 100:.0f}" if compact else format(value, fmt)
                ax.text(j, i, text, ha="center", va="center", fontsize=7 if n <= 12 else 6,
                        color="white" if value > threshold else "black")
    bar = ax.figure.colorbar(im, ax=ax, shrink=0.8)
    if fmt == "d":
        from matplotlib.ticker import MaxNLocator

        bar.locator = MaxNLocator(integer=True)  # counts: no 3.5 ticks
        bar.update_ticks()
    elif n > 8:  # the cells are whole percents: so is the bar
        from matplotlib.ticker import FuncFormatter

        bar.formatter = FuncFormatter(lambda v, _: f"{v * 100:.0f}")
        bar.update_ticks()


def plot_confusion_matrix(
    confusion: Sequence[Sequence[int]] | np.ndarray,
    classes: Sequence[Any],
    *,
    normalize: str = "both",
) -> Figure:
    """Confusion matrix as counts and as rates normalised per true class.

    Parameters
    ----------
    confusion : array-like of int, shape (n_classes, n_classes)
        Rows are true classes, columns predicted ones (``compute_metrics(...)["confusion"]``).
    classes : sequence
        Class names in the order of the rows.
    normalize : {"both", "counts", "true"}, default "both"
        Draw counts, rates per true class (rows sum to 1), or both side by side.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> fig = plot_confusion_matrix([[3, 1], [0, 4]], ["a", "b"], normalize="true")
    >>> fig.axes[0].get_title()
    'Normalised by true class'
    """
    matrix = np.asarray(confusion, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or matrix.shape[0] != len(classes):
        raise ParameterError(
            "The 'confusion' parameter of plot_confusion_matrix must be square with one row "
            f"per class ({len(classes)}). Got shape {matrix.shape} instead."
        )
    if normalize not in ("both", "counts", "true"):
        raise ParameterError(
            "The 'normalize' parameter of plot_confusion_matrix must be 'both', 'counts' or "
            f"'true'. Got {normalize!r} instead."
        )
    rows = matrix.sum(axis=1, keepdims=True)
    rates = np.divide(matrix, rows, out=np.zeros_like(matrix), where=rows > 0)
    panels = []
    if normalize in ("both", "counts"):
        panels.append((matrix, "d", "Counts"))
    if normalize in ("both", "true"):
        title = "Normalised by true class" + (" (%)" if len(classes) > 8 else "")
        panels.append((rates, ".2f", title))
    size = min(2.5 + 0.45 * len(classes), 12.0)  # 56 classes made a 6,700-pixel-wide figure
    fig = _figure((size + 0.6) * len(panels), size)  # room for each panel's colour bar and its labels
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (data, fmt, title) in zip(axes, panels, strict=True):
        _heatmap(ax, data.astype(int) if fmt == "d" else data, classes, fmt, title)
    return fig


def plot_per_class_scores(per_class: Mapping[str, Mapping[str, float]]) -> Figure:
    """Precision, recall and F1 per class as grouped bars.

    Parameters
    ----------
    per_class : mapping
        ``compute_metrics(...)["per_class"]``: {label: {precision, recall, f1, support}}.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> fig = plot_per_class_scores({"a": {"precision": 1, "recall": .5, "f1": .67, "support": 2}})
    >>> fig.axes[0].get_ylabel()
    'score'
    """
    labels = list(per_class)
    if not labels:
        raise ParameterError("plot_per_class_scores needs at least one class in 'per_class'.")
    x = np.arange(len(labels))
    fig = _figure(max(5.0, 0.6 * len(labels) + 2), 3.2)
    ax = fig.subplots()
    for i, key in enumerate(("precision", "recall", "f1")):
        ax.bar(x + (i - 1) * 0.27, [per_class[c][key] for c in labels], width=0.27, label=key)
    ax.set_xticks(x, [_short(c) for c in labels], rotation=45 if len(labels) > 6 else 0,
                  ha="right" if len(labels) > 6 else "center", fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("score")
    ax.set_title("Per-class scores")
    # beside the axes, never over a bar (inside, it hid the last classes' scores)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.grid(axis="y", alpha=0.3)
    return fig


def _log_mel(y: np.ndarray, sr: int, n_mels: int) -> tuple[np.ndarray, int]:
    import librosa

    n_fft = 512 if sr <= 16000 else 1024
    hop = n_fft // 4
    mel = librosa.feature.melspectrogram(
        y=np.asarray(y, dtype=np.float32), sr=sr, n_fft=n_fft, hop_length=hop, win_length=n_fft,
        window="hann", center=True, pad_mode="constant", power=2.0, n_mels=n_mels, fmin=0.0,
        fmax=sr / 2.0, htk=False, norm="slaney",
    )
    return librosa.power_to_db(mel, ref=np.max, top_db=80.0), hop


def plot_class_examples(
    examples: Mapping[Any, tuple[np.ndarray, int]],
    *,
    n_mels: int = 64,
) -> Figure:
    """One example clip per class: its waveform above its log-mel spectrogram.

    Parameters
    ----------
    examples : mapping
        {label: (samples, sample_rate)}; samples a 1-D float array of shape (n_samples,).
    n_mels : int, default 64
        Mel bands of the spectrogram (n_fft 512 at ≤ 16 kHz, else 1024; hop n_fft/4; Hann;
        Slaney mel scale and norm; dB relative to the clip's maximum, floor −80 dB).

    Returns
    -------
    matplotlib.figure.Figure
        Two rows (waveform, log-mel), one column per class, up to 5 columns per row pair.

    Examples
    --------
    >>> sr = 8000
    >>> t = np.arange(sr // 4) / sr
    >>> fig = plot_class_examples({"tone": (np.sin(2 * np.pi * 440 * t), sr)})
    >>> len(fig.axes)
    2
    """
    if not examples:
        raise ParameterError("plot_class_examples needs at least one (samples, sr) example.")
    if not isinstance(n_mels, int) or not 1 <= n_mels <= 512:
        raise ParameterError(
            f"The 'n_mels' parameter of plot_class_examples must be an int in [1, 512]. "
            f"Got {n_mels!r} instead."
        )
    labels = list(examples)
    cols = min(5, len(labels))
    blocks = math.ceil(len(labels) / cols)
    fig = _figure(2.6 * cols, 3.6 * blocks)
    axes = fig.subplots(2 * blocks, cols, squeeze=False)
    for k in range(blocks * cols):
        wave_ax, mel_ax = axes[2 * (k // cols), k % cols], axes[2 * (k // cols) + 1, k % cols]
        if k >= len(labels):
            wave_ax.set_axis_off()
            mel_ax.set_axis_off()
            continue
        y, sr = examples[labels[k]]
        y = np.asarray(y, dtype=np.float32).ravel()
        if y.size == 0:
            raise ParameterError(f"The example of class {labels[k]!r} has no samples.")
        t = np.arange(y.size) / sr
        wave_ax.plot(t, y, lw=0.5, color="tab:blue")
        wave_ax.set_title(_short(labels[k], 18), fontsize=10)
        wave_ax.set_xlim(0, max(t[-1], 1.0 / sr))
        wave_ax.set_yticks([])
        wave_ax.tick_params(labelsize=7)
        mel_db, hop = _log_mel(y, int(sr), n_mels)
        mel_ax.imshow(mel_db, origin="lower", aspect="auto", cmap="magma",
                      extent=(0.0, mel_db.shape[1] * hop / sr, 0, n_mels))
        mel_ax.set_xlabel("s", fontsize=7)
        mel_ax.tick_params(labelsize=7)
        if k % cols == 0:
            wave_ax.set_ylabel("waveform", fontsize=8)
            mel_ax.set_ylabel("mel band", fontsize=8)
    return fig


def _top_features(X: np.ndarray, y: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k features that best separate the classes (ANOVA F, NaN-safe)."""
    from sklearn.feature_selection import f_classif

    finite = np.isfinite(X).all(axis=0) & (np.nanstd(X, axis=0) > 0)
    if not finite.any() or len(np.unique(y)) < 2:
        return np.arange(min(k, X.shape[1]))
    with np.errstate(all="ignore"):
        f, _ = f_classif(X[:, finite], y)
    f = np.nan_to_num(f, nan=-1.0)
    cols = np.flatnonzero(finite)[np.argsort(-f)]
    return cols[:k]


def plot_feature_distributions(
    X: np.ndarray,
    y: Sequence[Any],
    *,
    feature_names: Sequence[str] | None = None,
    max_features: int = 6,
    classes: Sequence[Any] | None = None,
) -> Figure:
    """Per-class distributions (box plots) of the features that separate the classes best.

    Parameters
    ----------
    X : array of float, shape (n_clips, n_features)
        One feature vector per clip.
    y : sequence, shape (n_clips,)
        The class of each clip.
    feature_names : sequence of str, optional
        Names of the columns of ``X`` (default ``f0``, ``f1``, …).
    max_features : int, default 6
        How many features to draw, chosen by ANOVA F-score against ``y``.
    classes : sequence, optional
        Class order of the boxes (default sorted).

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> fig = plot_feature_distributions(rng.normal(size=(20, 3)), ["a", "b"] * 10,
    ...                                  max_features=2)
    >>> len(fig.axes)
    2
    """
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y)
    if X.ndim != 2 or X.shape[0] != y.shape[0] or X.shape[0] == 0:
        raise ParameterError(
            "plot_feature_distributions needs 'X' of shape (n_clips, n_features) and one label "
            f"per clip. Got X {X.shape} and {y.shape[0]} labels."
        )
    if not isinstance(max_features, int) or max_features < 1:
        raise ParameterError(
            f"The 'max_features' parameter must be an int >= 1. Got {max_features!r} instead."
        )
    names = list(feature_names) if feature_names is not None else [f"f{i}" for i in range(X.shape[1])]
    if len(names) != X.shape[1]:
        raise ParameterError(
            f"'feature_names' has {len(names)} names for {X.shape[1]} columns of 'X'."
        )
    classes = list(classes) if classes is not None else sorted(np.unique(y).tolist())
    cols = _top_features(X, y, max_features)
    ncols = min(3, len(cols))
    nrows = math.ceil(len(cols) / ncols)
    fig = _figure(max(4.0, 0.35 * len(classes) + 1.5) * ncols, 2.8 * nrows)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    colors = _colors(len(classes))
    for ax, col in zip(axes, cols, strict=False):
        data = [X[y == c, col][np.isfinite(X[y == c, col])] for c in classes]
        parts = ax.boxplot(data, patch_artist=True, showfliers=False, widths=0.6)
        for patch, color in zip(parts["boxes"], colors, strict=True):
            patch.set_facecolor(color)
            patch.set_alpha(0.6)
        slanted = len(classes) > 6
        ax.set_xticks(range(1, len(classes) + 1), [_short(c, 16) for c in classes], fontsize=7,
                      rotation=45 if slanted else 0, ha="right" if slanted else "center",
                      rotation_mode="anchor" if slanted else "default")  # each name ends under its box
        ax.set_title(str(names[col]), fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    for ax in axes[len(cols):]:
        fig.delaxes(ax)
    fig.suptitle("Feature distributions per class (most separating features)", fontsize=10)
    return fig


def plot_embedding(
    X: np.ndarray,
    y: Sequence[Any],
    *,
    method: str = "pca",
    classes: Sequence[Any] | None = None,
    seed: int = 0,
    max_points: int = 3000,
    tsne_iterations: int = 1000,
) -> Figure:
    """A 2-D map of feature vectors or embeddings (PCA or t-SNE), coloured by class.

    Parameters
    ----------
    X : array of float, shape (n_clips, n_dims)
        Feature vectors or model embeddings; standardised per column before the projection.
    y : sequence, shape (n_clips,)
        The class of each clip.
    method : {"pca", "tsne"}, default "pca"
        The projection.
    classes : sequence, optional
        Class order of the legend (default sorted).
    seed : int, default 0
        Seed of t-SNE and of the subsample drawn when there are more than ``max_points``.
    max_points : int, default 3000
        Largest number of points drawn (a random subsample beyond it).
    tsne_iterations : int, default 1000
        Optimisation steps of t-SNE (at least 250; fewer is faster and rougher).

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> fig = plot_embedding(rng.normal(size=(30, 4)), ["a", "b", "c"] * 10)
    >>> fig.axes[0].get_title()
    'PCA of 30 clips'
    """
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y)
    if X.ndim != 2 or X.shape[0] != y.shape[0] or X.shape[0] < 3:
        raise ParameterError(
            "plot_embedding needs 'X' of shape (n_clips >= 3, n_dims) and one label per clip. "
            f"Got X {X.shape} and {y.shape[0]} labels."
        )
    if method not in ("pca", "tsne"):
        raise ParameterError(
            f"The 'method' parameter of plot_embedding must be 'pca' or 'tsne'. Got {method!r}."
        )
    rng = np.random.default_rng(seed)
    if X.shape[0] > max_points:
        keep = np.sort(rng.choice(X.shape[0], size=max_points, replace=False))
        X, y = X[keep], y[keep]
    X = np.nan_to_num(X, nan=0.0, posinf=0.0, neginf=0.0)
    std = X.std(axis=0)
    X = (X - X.mean(axis=0)) / np.where(std > 0, std, 1.0)
    if X.shape[1] == 1:
        X = np.hstack([X, np.zeros_like(X)])
    if method == "pca":
        from sklearn.decomposition import PCA

        pca = PCA(n_components=2, random_state=seed)
        Z = pca.fit_transform(X)
        ratio = pca.explained_variance_ratio_
        xlabel, ylabel = f"PC1 ({ratio[0]:.0%})", f"PC2 ({ratio[1]:.0%})"
        title = f"PCA of {X.shape[0]} clips"
    else:
        from sklearn.manifold import TSNE

        perplexity = float(min(30.0, max(2.0, (X.shape[0] - 1) / 3.0)))
        if not isinstance(tsne_iterations, int) or tsne_iterations < 250:
            raise ParameterError(
                "The 'tsne_iterations' parameter of plot_embedding must be an int >= 250. "
                f"Got {tsne_iterations!r} instead."
            )
        Z = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed,
                 max_iter=tsne_iterations).fit_transform(X)
        xlabel, ylabel = "t-SNE 1", "t-SNE 2"
        title = f"t-SNE of {X.shape[0]} clips"
    classes = list(classes) if classes is not None else sorted(np.unique(y).tolist())
    fig = _figure(6.0, 4.6)
    ax = fig.subplots()
    for c, color in zip(classes, _colors(len(classes)), strict=True):
        mask = y == c
        if mask.any():
            ax.scatter(Z[mask, 0], Z[mask, 1], s=8, alpha=0.7, color=color, label=_short(c))
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7, markerscale=2, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return fig


def plot_reliability(curve: Mapping[str, Sequence], *, ece: float | None = None) -> Figure:
    """Reliability diagram: accuracy against confidence per bin, with the bin counts below.

    Parameters
    ----------
    curve : mapping
        :func:`earmark.evaluation.calibration_curve`'s result (``edges``, ``accuracy``,
        ``confidence``, ``count``).
    ece : float, optional
        Expected calibration error, written in the title.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> from earmark.evaluation import calibration_curve
    >>> c = calibration_curve(np.array([True, False, True]), np.array([.9, .6, .8]), n_bins=5)
    >>> fig = plot_reliability(c, ece=0.1)
    >>> fig.axes[0].get_title()
    'Reliability (ECE 0.100)'
    """
    edges = np.asarray(curve["edges"], dtype=np.float64)
    counts = np.asarray(curve["count"], dtype=np.float64)
    if edges.size != counts.size + 1:
        raise ParameterError("plot_reliability: 'edges' must have one more entry than 'count'.")
    centers = (edges[:-1] + edges[1:]) / 2
    width = np.diff(edges)
    acc = np.array([np.nan if a is None else a for a in curve["accuracy"]], dtype=np.float64)
    fig = _figure(4.8, 5.0)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    top.bar(centers, np.nan_to_num(acc), width=width, edgecolor="black", alpha=0.7,
            label="accuracy")
    top.plot([0, 1], [0, 1], ls="--", color="gray", label="perfect calibration")
    top.set_ylim(0, 1)
    top.set_ylabel("accuracy")
    top.legend(fontsize=8, loc="upper left")
    top.set_title("Reliability" + (f" (ECE {ece:.3f})" if ece is not None else ""))
    bottom.bar(centers, counts, width=width, color="tab:gray", edgecolor="black")
    bottom.set_xlim(0, 1)
    bottom.set_xlabel("confidence")
    bottom.set_ylabel("clips")
    return fig


def plot_predicted_vs_true(
    y_true: Sequence[float], y_pred: Sequence[float], *, target: str = "target"
) -> Figure:
    """Regression: predicted against true values, with the identity line and residuals.

    Parameters
    ----------
    y_true, y_pred : sequence of float, shape (n,)
        True and predicted values.
    target : str, default "target"
        Name of the predicted quantity, for the axis labels.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> fig = plot_predicted_vs_true([1.0, 2.0, 3.0], [1.1, 1.9, 3.2], target="pitch")
    >>> fig.axes[0].get_xlabel()
    'true pitch'
    """
    t = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(y_pred, dtype=np.float64)
    if t.shape != p.shape or t.ndim != 1 or t.size == 0:
        raise ParameterError(
            "plot_predicted_vs_true needs 'y_true' and 'y_pred' of the same non-zero length. "
            f"Got {t.shape} and {p.shape}."
        )
    fig = _figure(9.0, 4.0)
    ax, res = fig.subplots(1, 2)
    lo, hi = float(min(t.min(), p.min())), float(max(t.max(), p.max()))
    ax.scatter(t, p, s=10, alpha=0.6)
    ax.plot([lo, hi], [lo, hi], ls="--", color="gray")
    ax.set_xlabel(f"true {target}")
    ax.set_ylabel(f"predicted {target}")
    ax.set_title("Predicted vs true")
    res.scatter(t, p - t, s=10, alpha=0.6, color="tab:orange")
    res.axhline(0, ls="--", color="gray")
    res.set_xlabel(f"true {target}")
    res.set_ylabel("residual (predicted − true)")
    res.set_title("Residuals")
    return fig


def plot_cv_folds(fold_scores: Mapping[str, float], *, metric: str = "accuracy") -> Figure:
    """One bar per cross-validation fold with the mean as a line.

    Parameters
    ----------
    fold_scores : mapping
        {fold name: score}.
    metric : str, default "accuracy"
        Name of the score, for the axis label.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> fig = plot_cv_folds({"george": 0.9, "jackson": 0.8})
    >>> fig.axes[0].get_ylabel()
    'accuracy'
    """
    if not fold_scores:
        raise ParameterError("plot_cv_folds needs at least one fold score.")
    names = [str(k) for k in fold_scores]
    values = np.array([float(v) for v in fold_scores.values()])
    fig = _figure(max(4.0, 0.7 * len(names) + 2), 3.2)
    ax = fig.subplots()
    ax.bar(range(len(names)), values, color="tab:blue", alpha=0.8)
    ax.axhline(values.mean(), ls="--", color="black", label=f"mean {values.mean():.3f}")
    ax.set_xticks(range(len(names)), names, rotation=45 if len(names) > 6 else 0, fontsize=8)
    ax.set_ylim(0, 1.05 if values.max() <= 1 else None)
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} per fold")
    ax.legend(fontsize=8)
    return fig

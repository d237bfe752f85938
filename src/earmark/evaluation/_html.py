"""One self-contained HTML page: images and audio inlined as data URIs, no external requests.

:func:`render_report` turns already computed pieces (summary, metrics, figures, clips) into a
string; it reads no files and draws nothing itself.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from earmark.errors import ParameterError

__all__ = ["audio_to_data_uri", "figure_to_data_uri", "render_report"]

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d232a;
background:#f6f7f9}
header{background:#23395b;color:#fff;padding:18px 28px}
header h1{margin:0;font-size:1.5em}header p{margin:4px 0 0;opacity:.85}
main{max-width:1200px;margin:0 auto;padding:12px 28px 40px}
section{background:#fff;border-radius:8px;padding:14px 20px;margin:16px 0;
box-shadow:0 1px 3px rgba(0,0,0,.08)}
h2{font-size:1.2em;margin:4px 0 12px;color:#23395b}
table{border-collapse:collapse;font-size:.9em;margin:6px 0}
.scroll{overflow-x:auto;max-width:100%}
th,td{border-bottom:1px solid #e3e6ea;padding:4px 10px;text-align:left}
th{background:#f0f2f5}td.num{text-align:right;font-variant-numeric:tabular-nums}
figure{margin:10px 0 18px}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.85em;color:#555}
.cards{display:flex;flex-wrap:wrap;gap:10px}
.card{background:#f0f4fa;border-radius:6px;padding:8px 14px;min-width:110px}
.card b{display:block;font-size:1.4em}.card span{font-size:.8em;color:#555}
.clip{display:grid;grid-template-columns:1fr auto;gap:4px 12px;padding:8px 0;
border-bottom:1px solid #eee}
.clip .name{font-family:ui-monospace,monospace;font-size:.85em;word-break:break-all}
.wrong{color:#b3261e;font-weight:600}.note{color:#555;font-size:.9em}
details summary{cursor:pointer;color:#23395b}
pre{background:#f0f2f5;padding:8px;overflow-x:auto;font-size:.8em}
"""


def figure_to_data_uri(fig: Figure, *, fmt: str = "png", dpi: int = 100) -> str:
    """Encode a matplotlib figure as a ``data:`` URI (PNG or SVG).

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        The figure to encode.
    fmt : {"png", "svg"}, default "png"
        Image format.
    dpi : int, default 100
        Resolution of a PNG.

    Returns
    -------
    str
        ``data:image/png;base64,…`` or ``data:image/svg+xml;base64,…``.

    Examples
    --------
    >>> from earmark.evaluation.plots import plot_cv_folds
    >>> figure_to_data_uri(plot_cv_folds({"a": 0.5})).startswith("data:image/png;base64,")
    True
    """
    if fmt not in ("png", "svg"):
        raise ParameterError(f"The 'fmt' parameter must be 'png' or 'svg'. Got {fmt!r} instead.")
    buf = io.BytesIO()
    with warnings.catch_warnings():  # layout notes of matplotlib's are not the user's business
        warnings.simplefilter("ignore", UserWarning)
        fig.savefig(buf, format=fmt, dpi=dpi, bbox_inches="tight", pad_inches=0.05)  # nothing clipped at the edges
    mime = "image/png" if fmt == "png" else "image/svg+xml"
    return f"data:{mime};base64,{base64.b64encode(buf.getvalue()).decode('ascii')}"


def audio_to_data_uri(y: np.ndarray, sr: int, *, max_seconds: float | None = 10.0) -> str:
    """Encode mono samples as a 16-bit PCM WAV ``data:`` URI that an ``<audio>`` element plays.

    Parameters
    ----------
    y : array of float, shape (n_samples,)
        Samples in [-1, 1] (values beyond are clipped).
    sr : int
        Sample rate in Hz.
    max_seconds : float or None, default 10.0
        Keep only the first ``max_seconds`` (keeps the page small); ``None`` keeps everything.

    Returns
    -------
    str
        ``data:audio/wav;base64,…``.

    Examples
    --------
    >>> audio_to_data_uri(np.zeros(80, dtype=np.float32), 8000)[:22]
    'data:audio/wav;base64,'
    """
    import soundfile as sf

    if not isinstance(sr, int | np.integer) or sr <= 0:
        raise ParameterError(f"The 'sr' parameter must be a positive int (Hz). Got {sr!r} instead.")
    y = np.asarray(y, dtype=np.float32).ravel()
    if max_seconds is not None:
        y = y[: int(round(max_seconds * sr))]
    y = np.clip(np.nan_to_num(y), -1.0, 1.0)
    buf = io.BytesIO()
    sf.write(buf, y, int(sr), format="WAV", subtype="PCM_16")
    return f"data:audio/wav;base64,{base64.b64encode(buf.getvalue()).decode('ascii')}"


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int | np.integer):
        return f"{int(value):,}"
    if isinstance(value, float | np.floating):
        value = float(value)
        if not math.isfinite(value):
            return "—"
        return f"{value:.4f}" if abs(value) < 1000 else f"{value:,.1f}"
    return html.escape(str(value))


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = []
    for row in rows:
        cells = []
        for v in row:
            num = isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool)
            cells.append(f'<td class="num">{_fmt(v)}</td>' if num else f"<td>{_fmt(v)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


_HEADLINE = (
    ("accuracy", "accuracy"),
    ("balanced_accuracy", "balanced accuracy"),
    ("macro_f1", "macro F1"),
    ("micro_f1", "micro F1"),
    ("log_loss", "log loss"),
    ("ece", "calibration error"),
    ("roc_auc", "ROC-AUC"),
    ("pr_auc", "PR-AUC (average precision)"),
    ("mae", "MAE"),
    ("rmse", "RMSE"),
    ("r2", "R²"),
    ("n", "clips scored"),
)


def _metrics_section(metrics: Mapping[str, Any], spread: Mapping[str, Any] | None) -> str:
    cards = []
    for key, name in _HEADLINE:
        if metrics.get(key) is None:
            continue
        extra = ""
        if key in ("roc_auc", "pr_auc") and metrics.get("positive_class") is not None:
            name = f"{name}, positive: {metrics['positive_class']}"
        n_all = max((v.get("n_folds", 0) for v in (spread or {}).values()), default=0)
        if spread and key in spread and spread[key].get("std") is not None:
            extra = f" ± {spread[key]['std']:.3f}"
            if spread[key].get("n_folds", n_all) < n_all:  # some folds could not compute it
                name = f"{name} ({spread[key]['n_folds']} of {n_all} folds)"
        elif spread and key != "n":  # no per-fold values: the pooled predictions' score, said so
            name = f"{name} (pooled)"
        cards.append(f'<div class="card"><b>{_fmt(metrics[key])}{extra}</b><span>{html.escape(name)}</span></div>')
    parts = [f'<div class="cards">{"".join(cards)}</div>']
    top_k = metrics.get("top_k_accuracy") or {}
    if top_k:
        head = "top-k accuracy (pooled)" if spread else "top-k accuracy"
        parts.append(_table(["k", head], [[int(k), v] for k, v in top_k.items()]))
    per_class = metrics.get("per_class") or {}
    if per_class:
        rows = [
            [label, s["precision"], s["recall"], s["f1"], s["support"]]
            for label, s in per_class.items()
        ]
        parts.append("<h3>Per class</h3>")
        parts.append(_table(["class", "precision", "recall", "F1", "support"], rows))
    return "".join(parts)


def render_report(
    *,
    title: str,
    subtitle: str = "",
    summary: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
    spread: Mapping[str, Mapping[str, Any]] | None = None,
    tables: Mapping[str, tuple[Sequence[str], Sequence[Sequence[Any]]]] | None = None,
    figures: Mapping[str, Figure | str] | None = None,
    clips: Sequence[Mapping[str, Any]] = (),
    clips_title: str = "Misclassified clips",
    clips_total: int | None = None,
    skipped: Sequence[Mapping[str, str]] = (),
    notes: Sequence[str] = (),
    config: Mapping[str, Any] | None = None,
) -> str:
    """Assemble the HTML report from computed parts; the page makes no external request.

    Parameters
    ----------
    title : str
        Page title and heading.
    subtitle : str, optional
        One line under the heading (model, dataset, date).
    summary : mapping, optional
        Dataset summary (:func:`earmark.sources.summarize`): files, classes, groups, durations.
    metrics : mapping, optional
        :func:`compute_metrics`'s result (or a CV mean): headline cards, top-k and per-class table.
    spread : mapping, optional
        {metric: {"mean", "std", "min", "max"}} across folds, shown as ± and as a table.
    tables : mapping, optional
        Extra tables, {heading: (header, rows)} (e.g. per fold or a leaderboard).
    figures : mapping, optional
        {caption: Figure or data URI}; figures are inlined as PNG.
    clips : sequence of mapping, optional
        Clips to listen to, each with ``path``, ``true``, ``predicted``, ``confidence`` and
        ``audio`` (a data URI from :func:`audio_to_data_uri`, or ``None``).
    clips_total : int, optional
        How many such clips there are, when ``clips`` shows only some (the heading says "20 of 22").
    clips_title : str, default "Misclassified clips"
        Heading of the clip list.
    skipped : sequence of mapping, optional
        Files left out, each ``{"path", "reason"}``.
    notes : sequence of str, optional
        Free-text remarks, one paragraph each.
    config : mapping, optional
        Run configuration, shown as JSON in a collapsible block.

    Returns
    -------
    str
        A complete HTML5 document.

    Examples
    --------
    >>> page = render_report(title="Demo", metrics={"accuracy": 0.5, "n": 2})
    >>> page.startswith("<!DOCTYPE html>") and "accuracy" in page
    True
    """
    sections: list[str] = []
    if notes:
        sections.append(
            "<section><h2>Notes</h2>"
            + "".join(f'<p class="note">{html.escape(n)}</p>' for n in notes)
            + "</section>"
        )
    if summary:
        sections.append(_summary_section(summary))
    if metrics:
        body = _metrics_section(metrics, spread)
        if spread:
            rows = [
                [k, v.get("mean"), v.get("std"), v.get("min"), v.get("max"), v.get("n_folds")]
                for k, v in spread.items()
            ]
            body += "<h3>Across folds</h3>" + _table(["metric", "mean", "std", "min", "max", "folds"], rows)
        sections.append(f"<section><h2>Metrics</h2>{body}</section>")
    for heading, (header, rows) in (tables or {}).items():
        sections.append(f"<section><h2>{html.escape(heading)}</h2>{_table(header, rows)}</section>")
    if figures:
        figs = []
        for caption, fig in figures.items():
            uri = fig if isinstance(fig, str) else figure_to_data_uri(fig)
            alt = html.escape(caption, quote=True)
            figs.append(
                f'<figure><img src="{uri}" alt="{alt}"><figcaption>{html.escape(caption)}'
                "</figcaption></figure>"
            )
        sections.append(f"<section><h2>Plots</h2>{''.join(figs)}</section>")
    if clips:
        sections.append(_clips_section(clips, clips_title, clips_total))
    if skipped:
        rows = [[s.get("path", ""), s.get("reason", "")] for s in skipped]
        sections.append(
            f"<section><h2>Files left out ({len(skipped)})</h2>"
            f"{_table(['file', 'reason'], rows)}</section>"
        )
    if config:
        text = html.escape(json.dumps(config, indent=2, default=str))
        sections.append(
            "<section><h2>Configuration</h2><details><summary>show</summary>"
            f"<pre>{text}</pre></details></section>"
        )
    t = html.escape(title)
    sub = f"<p>{html.escape(subtitle)}</p>" if subtitle else ""
    # data: URIs only, no scripts: a strict CSP documents (and enforces) "no external requests".
    csp = "default-src 'none'; img-src data:; media-src data:; style-src 'unsafe-inline'"
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{csp}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{t}</title><style>{_CSS}</style></head>"
        f"<body><header><h1>{t}</h1>{sub}</header><main>{''.join(sections)}</main>"
        "</body></html>\n"
    )


def _summary_section(summary: Mapping[str, Any]) -> str:
    cards = []
    for key, name in (("n_files", "files listed"), ("n_ok", "files readable"),
                      ("n_errors", "unreadable")):
        if summary.get(key) is not None:
            cards.append(f'<div class="card"><b>{_fmt(summary[key])}</b><span>{name}</span></div>')
    duration = summary.get("duration") or {}
    if duration.get("total") is not None:
        cards.append(
            f'<div class="card"><b>{duration["total"] / 60:.1f} min</b><span>audio in total</span></div>'
        )
    if duration.get("median") is not None:
        cards.append(
            f'<div class="card"><b>{duration["median"]:.2f} s</b><span>median duration</span></div>'
        )
    parts = [f'<div class="cards">{"".join(cards)}</div>']
    for key, name, column in (("classes", "Clips per class", "class"),
                              ("groups", "Clips per group", "group"),
                              ("folds", "Clips per fold", "fold"),
                              ("sample_rates", "Sample rates", "sample rate (Hz)")):
        counts = summary.get(key) or {}
        if counts and len(counts) <= 60:
            parts.append(f"<h3>{name}</h3>")
            parts.append(_table([column, "clips"], [[k, v] for k, v in counts.items()]))
    if summary.get("source"):
        parts.append(f'<p class="note">source: {html.escape(str(summary["source"]))}</p>')
    return f"<section><h2>Dataset</h2>{''.join(parts)}</section>"


def _clips_section(clips: Sequence[Mapping[str, Any]], heading: str, total: int | None = None) -> str:
    rows = []
    for clip in clips:
        audio = clip.get("audio")
        player = (
            f'<audio controls preload="metadata" src="{audio}"></audio>'
            if audio
            else '<span class="note">audio unavailable</span>'
        )
        conf = clip.get("confidence")
        conf_text = f" · confidence {conf:.2f}" if conf is not None else ""
        extra = clip.get("extra")
        extra_text = f" · {html.escape(str(extra))}" if extra else ""
        rows.append(
            '<div class="clip"><div>'
            f'<div class="name">{html.escape(str(clip.get("path", "")))}</div>'
            f'<div>true <b>{html.escape(str(clip.get("true")))}</b> → predicted '
            f'<span class="wrong">{html.escape(str(clip.get("predicted")))}</span>'
            f"{conf_text}{extra_text}</div></div><div>{player}</div></div>"
        )
    count = f"{len(clips)} of {total}" if total is not None and total > len(clips) else f"{len(clips)}"
    return f"<section><h2>{html.escape(heading)} ({count})</h2>{''.join(rows)}</section>"

"""``earmark synth``: render a vocabulary in synthetic espeak-ng voices, as a dataset."""

from __future__ import annotations

import warnings
from pathlib import Path

import typer

from earmark.cli._common import ExitCode, check_writable_folder, err_console, fail, progress_bar
from earmark.errors import EarmarkError

_HELP = """Render every WORD in N synthetic voices with espeak-ng and write a dataset.

Voices differ in accent, voice variant, rate, pitch, pitch range and word gap; clips are resampled, trimmed, levelled and get optional noise and room reverberation, like recordings. OUT gets one WAV per (word, voice) and a manifest.csv whose `group` column is the voice, ready for `earmark info OUT` or for training (mix it into training only). The same --seed gives identical files.

Licence: espeak-ng is GPL-3.0-or-later; it comes from the optional package espeakng-loader (pip install 'earmark\\[synth]').
"""


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def register(app: typer.Typer) -> None:
    """Add ``synth`` to ``app``."""
    app.command("synth", help=_HELP)(synth)


def _words_from(source: Path) -> list[str]:
    import pandas as pd

    from earmark.sources import load_dataset

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        df = load_dataset(source, allow_unlabelled=True)
    labels = df["label"].dropna().astype(str).str.strip() if "label" in df.columns else pd.Series([], dtype=str)
    labels = labels[labels != ""]
    if labels.empty:
        from earmark.errors import DatasetError

        raise DatasetError(f"{source} has no labels to speak: --words-from needs a dataset with a label column "
                           "(or class folders); give the words as arguments instead.")
    return sorted(labels.unique(), key=lambda s: (len(s), s))


def synth(
    words: list[str] | None = typer.Argument(None, help="Words (labels) to speak; or use --words-from."),
    voices: int = typer.Option(..., "--voices", "-n", min=1, help="Number of distinct synthetic voices."),
    out: Path = typer.Option(..., "--out", "-o", file_okay=False, help="Output folder (created)."),
    sample_rate: int = typer.Option(8000, "--sample-rate", "--sr", min=4000, max=192000, help="Sample rate of the files (Hz)."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed of the voices and the post-processing."),
    words_from: Path | None = typer.Option(
        None, "--words-from", exists=True, help="Take the words from this dataset's labels (manifest or folder)."
    ),
    text_map: str | None = typer.Option(
        None, "--text-map", help="What to say for a label, e.g. '0=zero,7=seven' (default: the label itself)."
    ),
    noise: float | None = typer.Option(None, "--noise", min=0.0, max=1.0, help="Share of clips with background noise (default 0.5)."),
    reverb: float | None = typer.Option(None, "--reverb", min=0.0, max=1.0, help="Share of clips in a simulated room (default 0.3)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Write into a folder that already has a manifest.csv."),
) -> None:
    from earmark.synth import PostProcessing, synthesize

    labels = list(words or [])
    if words_from is not None:
        try:
            labels += [w for w in _words_from(words_from) if w not in labels]
        except EarmarkError as exc:
            fail(str(exc))
    if not labels:
        fail("give the words to speak (earmark synth yes no --voices 10 --out DIR) or --words-from DATASET", ExitCode.USAGE)
    check_writable_folder(out, "--out")  # before any clip is rendered
    changes = {k: v for k, v in (("noise_probability", noise), ("reverb_probability", reverb)) if v is not None}
    total = voices * len(labels)
    if text_map:
        from earmark.synth import parse_text_map

        try:
            mapped = sorted(parse_text_map(text_map))
        except EarmarkError as exc:
            fail(str(exc), ExitCode.USAGE)
        if mapped and not set(mapped) & set(labels):  # a shared map may cover more labels, but none?
            err_console.print(f"[yellow]warning:[/] --text-map applies to none of the words: it names "
                              f"{', '.join(mapped[:10])}, the words are {', '.join(labels[:10])}", highlight=False)
    try:
        with progress_bar(f"{_n(len(labels), 'word')} × {_n(voices, 'voice')} (espeak-ng)", total) as advance:
            df = synthesize(
                labels, voices=voices, out=out, sample_rate=sample_rate, seed=seed, text_map=text_map,
                progress=lambda done, total: advance(1), post=PostProcessing(**changes), overwrite=overwrite,
            )
    except EarmarkError as exc:
        code = ExitCode.USAGE if isinstance(exc, ValueError) else ExitCode.ERROR
        fail(str(exc), code)
    except OSError as exc:  # a folder that cannot be made, a full disk…
        fail(f"Cannot write the clips to {out} (--out): {exc.strerror or exc}. Choose a writable folder.")
    err_console.print(
        f"[green]wrote[/] {_n(len(df), 'clip')}, {_n(df['group'].nunique(), 'voice')}, "
        f"{df['duration'].sum() / 60:.1f} min to {out} (espeak-ng, GPL-3.0-or-later); next: earmark info {out}"
    )

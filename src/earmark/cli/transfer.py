"""``earmark embed``: one embedding vector per clip (or per window) from a model or backbone."""

from __future__ import annotations

from pathlib import Path

import typer

from earmark.cli._common import (
    ExitCode,
    check_writable_folder,
    earmark_warnings,
    err_console,
    fail,
    report_skipped,
)

__all__ = ["register"]


def embed_command(
    model: str = typer.Argument(
        ...,
        help="A model bundle (directory or .earmark file), 'birdnet' (BirdNET v2.4: CC BY-NC-SA 4.0, "
        "non-commercial use only), 'torchvision:mobilenet_v2' or 'hf:MODEL_ID_OR_DIR'.",
    ),
    source: Path = typer.Argument(
        ..., exists=True,
        help="Folder of audio files (flat, or one sub-folder per class), manifest CSV, or one audio file; "
        "no labels needed; rows keep its order.",
    ),
    out: Path = typer.Option(
        ..., "--out", "-o", help="Output: .npy (2-D float32 array) or .parquet (path, row, start, e0…eN)."
    ),
    window: float | None = typer.Option(
        None, "--window", min=0.001, help="Seconds per window: one vector per window instead of per clip."
    ),
    hop: float | None = typer.Option(None, "--hop", min=0.001, help="Seconds between windows (default: --window)."),
) -> None:
    """Write embeddings of every clip of SOURCE, computed by MODEL, to --out.

    Files that cannot be decoded are left out and listed, with exit status 1.
    """
    from earmark.errors import EarmarkError
    from earmark.transfer import BIRDNET_LICENSE, embed

    suffix = out.suffix.lower()
    if suffix not in (".npy", ".parquet"):
        fail(f"--out must end in .npy or .parquet. Got {out.name!r}.", ExitCode.USAGE)
    if hop is not None and window is None:
        fail("--hop needs --window.", ExitCode.USAGE)
    if out.is_dir():
        fail(f"--out {out} is a folder; give the path of the .npy or .parquet file to write.", ExitCode.USAGE)
    check_writable_folder(out.parent, "--out")
    if model == "birdnet":
        err_console.print(f"[yellow]note:[/] {BIRDNET_LICENSE}", highlight=False)
    try:
        with earmark_warnings():  # "warning: …" lines, not Python's warning format
            X, index = embed(model, source, window=window, hop=hop, return_index=True, errors="skip")
    except EarmarkError as exc:
        fail(str(exc))
    skipped = index.attrs.get("skipped", [])
    out.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".npy":
        import numpy as np

        np.save(out, X)
    else:
        import pandas as pd

        table = pd.concat(
            [index.reset_index(drop=True), pd.DataFrame(X, columns=[f"e{i}" for i in range(X.shape[1])])], axis=1
        )
        table.to_parquet(out, index=False)
    err_console.print(f"{X.shape[0]} × {X.shape[1]} embeddings → {out}", highlight=False)
    if skipped:
        report_skipped(skipped, label="skipped", of=f"{out.name}" + (
            " (its rows are the other files, in source order)" if suffix == ".npy" else ""))
        raise typer.Exit(int(ExitCode.PARTIAL))


def register(app: typer.Typer) -> None:
    """Add ``embed`` to ``app``."""
    app.command("embed")(embed_command)

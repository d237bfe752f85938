"""Feature commands: ``earmark features list`` and ``earmark extract``."""

from __future__ import annotations

import json
import os
import time
import warnings
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from earmark.cli._common import (
    ExitCode,
    earmark_warnings,
    err_console,
    fail,
    progress_bar,
    register_features,
    write_json,
)
from earmark.errors import EarmarkError

features_app = typer.Typer(help="Feature presets: list them with their settings.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add ``features`` (sub-commands) and ``extract`` to ``app``."""
    app.add_typer(features_app, name="features")
    app.command("extract")(extract_cmd)


@features_app.command("list")
def list_cmd(
    as_json: bool = typer.Option(False, "--json", help="Print the full settings of every preset as JSON."),
) -> None:
    """Show the registered feature presets, their output shape and settings."""
    from earmark.features import get_preset, list_presets

    presets = [get_preset(n) for n in list_presets()]
    if as_json:
        write_json({p.name: {**p.to_dict(), "output_shape": p.output_shape, "pooled": p.pooled}
                    for p in presets}, None)
        return
    table = Table("preset", "rate", "output", "what", "settings", show_lines=True,
                  caption="Change settings after a colon, e.g. --features 'logmel:n_mels=128,sample_rate=8000'.")
    for p in presets:
        shape = "×".join(map(str, p.output_shape)) if p.output_shape else "variable"
        settings = ", ".join(f"{k}={v}" for k, v in p.params.items()) or "librosa defaults"
        table.add_row(p.name, f"{p.sample_rate} Hz", ("vector " if p.pooled else "") + shape,
                      p.description, settings)
    Console().print(table)


def extract_cmd(
    source: Path = typer.Argument(..., exists=True, help="CSV manifest, folder of class folders, or folder of files."),
    features: str = typer.Option("logmel", "--features", "-f", help="Preset name (see 'earmark features list'), settings after a colon: 'logmel:n_mels=128,sample_rate=8000'."),
    out: Path = typer.Option(..., "--out", "-o", help="Feature store folder (created; reused by later runs)."),
    workers: int | None = typer.Option(None, "--workers", "-j", min=1, help="Processes (default: all cores)."),
    backend: str = typer.Option("local", "--backend", help="'local' processes or 'ray'."),
    ray_address: str | None = typer.Option(None, "--ray-address", help="Ray cluster address (default: a local Ray instance)."),
    label_column: str | None = typer.Option(None, "--label-column", "--label", help="Manifest column of the labels."),
    pattern: str | None = typer.Option(None, "--pattern", help="File-name pattern, e.g. '{label}_{group}_{index}'."),
    as_json: bool = typer.Option(False, "--json", help="Print the run summary as JSON on stdout."),
) -> None:
    """Extract features of every file of SOURCE into a sharded, resumable feature store.

    A second run over unchanged files reads them from the store; bad files are listed in the
    store's report.json and skipped. Exit code 1 when some files failed.
    """
    from earmark.features import extract, get_preset
    from earmark.sources import SkippedFileWarning, load_dataset

    if backend not in ("local", "ray"):
        fail(f"--backend must be 'local' or 'ray', not {backend!r}.", ExitCode.USAGE)
    try:
        preset = get_preset(register_features(features))
    except EarmarkError as exc:
        fail(f"{exc} (option --features)", ExitCode.USAGE)
    try:
        with earmark_warnings(), warnings.catch_warnings():  # e.g. files listed twice: a 'warning:' line
            warnings.simplefilter("ignore", SkippedFileWarning)  # listed in the report and below
            df = load_dataset(source, label_column=label_column, pattern=pattern, allow_unlabelled=True)
    except EarmarkError as exc:
        fail(str(exc))
    skipped = list(df.attrs.get("skipped", []))
    t0 = time.perf_counter()
    try:
        with progress_bar(f"{preset.name}", len(df)) as advance:
            last = [0]

            def on_progress(done: int, total: int) -> None:
                advance(done - last[0])
                last[0] = done

            fs = extract(df, preset, cache=out, workers=workers, backend=backend,
                         progress=on_progress, ray_address=ray_address)
    except EarmarkError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        from earmark.features._extract import shutdown_workers

        shutdown_workers(now=True)  # their batches would be lost anyway: no waiting for them
        err_console.print(f"interrupted: the features computed so far are kept in {escape(str(out))}; the same "
                          "command resumes from them.", highlight=False)
        raise typer.Exit(130) from None
    seconds = time.perf_counter() - t0
    failed = skipped + fs.errors
    report = out / preset.cache_key() / "report.json"
    if skipped and report.is_file():  # the store's report lists files the source could not even list as audio
        data = json.loads(report.read_text())
        data["failed"] = skipped + list(data.get("failed", []))
        tmp = report.with_name(report.name + ".tmp")
        tmp.write_text(json.dumps(data, indent=2))
        os.replace(tmp, report)
    corrupt = []
    if report.is_file():
        try:
            corrupt = list(json.loads(report.read_text()).get("corrupt_shards", []))
        except (OSError, ValueError):
            corrupt = []
    summary = {
        "source": str(source), "preset": preset.name, "store": str(out / preset.cache_key()),
        "files": len(df) + len(skipped), "features": len(fs), "from_cache": fs.cached,
        "failed": failed, "seconds": round(seconds, 3),
        "files_per_second": round(len(df) / seconds, 1) if seconds > 0 else None,
        "corrupt_shards": corrupt,
    }
    if as_json:
        write_json(summary, None)
    else:
        err_console.print(
            f"{preset.name}: {len(fs)} of {summary['files']} files featurized "
            f"({fs.cached} from the store) in {seconds:.2f} s → {summary['store']}", highlight=False)
        for e in failed[:20]:
            err_console.print(f"  [yellow]skipped[/] {escape(str(e['path']))}: {escape(str(e['reason']))}",
                              highlight=False)
        if len(failed) > 20:
            err_console.print(f"  … and {len(failed) - 20} more (see report.json in the store)")
        for c in corrupt:
            err_console.print(f"  [yellow]warning:[/] damaged store shard {escape(str(c['path']))} "
                              f"({escape(str(c['reason']))}); its "
                              "files are computed again", highlight=False)
    if failed:
        raise typer.Exit(int(ExitCode.PARTIAL))

"""``earmark demo``: the main job end to end on the Free Spoken Digit Dataset.

Data → summary → speaker-held-out split with a leakage check → training → evaluation on the
unseen speaker → HTML report → model bundle → prediction from the reloaded bundle.
"""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from earmark.cli._common import ExitCode, earmark_warnings, err_console, fail
from earmark.errors import EarmarkError


def register(app: typer.Typer) -> None:
    """Add ``demo`` to ``app``."""
    app.command("demo")(demo)


def _find_data(data: Path | None, out: Path, download: bool, console: Console) -> tuple[Path, str]:
    """Locate FSDD: an explicit local copy, a verified download, or a synthesized stand-in."""
    from earmark.sources import make_demo_dataset
    from earmark.sources.catalog import download as fetch

    local = data or (Path(os.environ["EARMARK_FSDD"]) if os.environ.get("EARMARK_FSDD") else None)
    if local is not None:
        manifest = local / "manifest.csv" if local.is_dir() else local
        if not manifest.exists():
            fail(f"{local}: no FSDD manifest.csv there; pass --data with the folder holding manifest.csv and recordings/")
        return manifest, f"FSDD, local copy at {local}"
    cache = Path(os.environ.get("EARMARK_CACHE", Path.home() / ".cache" / "earmark")) / "datasets" / "fsdd"
    if (cache / "manifest.csv").exists():
        return cache / "manifest.csv", f"FSDD, downloaded earlier to {cache}"
    if download:
        console.print("No local FSDD given (--data or EARMARK_FSDD): downloading the pinned public version …")
        try:
            return fetch("fsdd", cache, timeout=30) / "manifest.csv", f"FSDD, downloaded and verified into {cache}"
        except EarmarkError as exc:
            console.print(f"[yellow]Download failed:[/] {escape(str(exc))} For the demo, give a local FSDD "
                          "copy with --data DIR (or EARMARK_FSDD), or fetch one first with earmark datasets "
                          f"download fsdd --to {escape(str(cache))} --url URL.", highlight=False)
    console.print(
        "[bold yellow]No FSDD available (no local copy, no download). Running on a SMALL SYNTHESIZED "
        "STAND-IN dataset (vowel-like formant glides × 5 fake speakers): its numbers say nothing about speech.[/]"
    )
    return make_demo_dataset(out / "synthetic-data"), "SYNTHETIC STAND-IN (not FSDD)"


def demo(
    data: Path | None = typer.Option(None, "--data", help="Local FSDD copy (folder with manifest.csv); else EARMARK_FSDD."),
    out: Path = typer.Option(Path("earmark-demo"), "--out", help="Where the model bundle and report go."),
    model: str | None = typer.Option(None, "--model", help="Model to train (default: earmark's recommended model)."),
    features: str | None = typer.Option(None, "--features", help="Feature preset, settings after a colon: 'logmel:n_mels=128' (default: the model's own)."),
    epochs: int | None = typer.Option(None, "--epochs", help="Training epochs (default: the model's own)."),
    test_speaker: str | None = typer.Option(None, "--test-speaker", help="Speaker held out for testing (default: chosen by a seeded group split)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the split and the training."),
    download: bool = typer.Option(True, "--download/--no-download", help="Try the public source when no local copy is given."),
    workers: int | None = typer.Option(None, "--workers", "-j", min=1, help="Feature-extraction processes (default: all cores)."),
) -> None:
    """Run the main job end to end: data → leakage-free split → train → evaluate → report → bundle → predict."""
    from earmark.bundle import load_model, save_model
    from earmark.evaluation import build_report, evaluate, write_report
    from earmark.serving.monitor import build_reference
    from earmark.sources import check_leakage, load_dataset, summarize, train_test_split
    from earmark.training import train

    console = Console()
    out.mkdir(parents=True, exist_ok=True)
    manifest, origin = _find_data(data, out, download, console)
    synthetic = origin.startswith("SYNTHETIC")
    tag = " [SYNTHETIC STAND-IN DATA]" if synthetic else ""
    console.rule(f"earmark demo — {origin}")

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            df = load_dataset(manifest)
        summary = summarize(df, duplicates=False)
        console.print(
            f"1. data: {summary['n_ok']} of {summary['n_files']} files readable, {len(summary['classes'])} classes, "
            f"{len(summary.get('groups', {}))} speakers, {summary['duration']['total'] / 60:.1f} min of audio"
        )
        if test_speaker is not None:
            if test_speaker not in set(df["group"]):
                fail(f"--test-speaker {test_speaker!r} is not one of {sorted(set(df['group']))}", ExitCode.USAGE)
            train_df, test_df = df[df["group"] != test_speaker], df[df["group"] == test_speaker]
        else:
            train_df, test_df = train_test_split(df, test_size=0.2, seed=seed)
        leak = check_leakage(train_df, test_df)
        console.print(
            f"2. split by speaker: train {len(train_df)} clips ({', '.join(sorted(set(train_df['group'])))}), "
            f"test {len(test_df)} clips ({', '.join(sorted(set(test_df['group'])))}); "
            + ("no leakage (no shared speaker or audio)" if leak.ok else f"[red]LEAKAGE: {leak}[/]")
        )

        t0 = time.perf_counter()
        with earmark_warnings():  # "warning: …" lines, as train prints them
            trained = train(train_df, model=model, features=features, epochs=epochs, seed=seed, workers=workers,
                            progress=err_console.is_terminal)
        seconds = time.perf_counter() - t0
        name = trained.config.get("model", model)
        console.print(f"3. trained {name} on {trained.preset.name} features in {seconds:.0f} s")

        result = evaluate(trained, test_df)
        m = result.metrics
        console.print(
            f"4. unseen speaker{tag}: accuracy {m['accuracy']:.1%}, macro F1 {m['macro_f1']:.3f}, "
            f"balanced accuracy {m['balanced_accuracy']:.1%} on {m['n']} clips"
        )

        trained.data["origin"] = origin  # the bundle says what it learnt from (served at /model, on the page)
        if synthetic:
            trained.data["stand_in"] = True
        bundle = save_model(trained, out / "model", reference=build_reference(trained, train_df, workers=workers))
        report = write_report(
            build_report(result, model=trained, summary=summary, title=f"earmark demo — {origin}"),
            out / "report.html",
        )
        console.print(f"5. report: {report}  (self-contained HTML: metrics, plots, misclassified clips)")
        console.print(f"6. model bundle: {bundle}")

        reloaded = load_model(bundle)
        sample = test_df.groupby("label", sort=True).head(1).head(5)
        preds = reloaded.predict(sample["path"].tolist())
        table = Table("file", "true", "predicted", "confidence", title=f"7. predictions from the reloaded bundle{tag}")
        for (_, row), (_, p) in zip(sample.iterrows(), preds.iterrows()):
            table.add_row(Path(row["path"]).name, str(row["label"]), str(p["label"]), f"{p['confidence']:.2f}")
        console.print(table)
    except EarmarkError as exc:
        fail(str(exc))

    console.print(
        "next: "
        f"earmark serve {bundle}   |   earmark predict {bundle} FILE…   |   earmark cv {manifest} --model logreg"
    )

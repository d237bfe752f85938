"""Data commands: ``earmark info`` and ``earmark datasets``."""

from __future__ import annotations

import warnings
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from earmark.cli._common import ExitCode, err_console, fail, write_json
from earmark.errors import EarmarkError

datasets_app = typer.Typer(help="The catalog of public datasets: list them, download one.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add ``info`` and ``datasets`` to ``app``."""
    app.command("info")(info)
    app.add_typer(datasets_app, name="datasets")


def _load(source: Path, label_column: str | None, group_column: str | None, pattern: str | None, check: str):
    from earmark.sources import load_dataset

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # skipped files are reported by the command itself
        return load_dataset(
            source, label_column=label_column, group_column=group_column, pattern=pattern, check=check
        )


def info(
    source: Path = typer.Argument(..., exists=True, help="CSV manifest, folder of class folders, or folder of files."),
    label_column: str | None = typer.Option(None, "--label-column", help="Manifest column of the labels."),
    group_column: str | None = typer.Option(None, "--group-column", help="Manifest column of the groups (speaker, recording…)."),
    pattern: str | None = typer.Option(None, "--pattern", help="File-name pattern, e.g. '{label}_{group}_{index}'."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object on stdout instead of tables."),
    duplicates: bool = typer.Option(True, "--duplicates/--no-duplicates", help="Look for files with identical audio."),
) -> None:
    """Summarise a dataset: classes, groups, durations, sample rates, bad files, duplicates.

    Every file is decoded, so corrupt audio is found and listed. The exit code is 0 when the
    summary was made, even if some files are bad.
    """
    from earmark.sources import summarize

    try:
        df = _load(source, label_column, group_column, pattern, "decode")
        summary = summarize(df, duplicates=duplicates)
    except EarmarkError as exc:
        fail(str(exc))
    if as_json:
        write_json(summary, None)
        return
    _print_summary(summary)


def _print_summary(s: dict) -> None:
    out = Console()
    out.print(f"[bold]{s['source']}[/]: {s['n_ok']} of {s['n_files']} files readable")
    if s.get("classes"):
        t = Table("class", "files", title=f"{len(s['classes'])} classes (balance {s['balance']:.2f})")
        for k, v in s["classes"].items():
            t.add_row(str(k), str(v))
        out.print(t)
    if s.get("groups"):
        g = s["groups"]
        shown = list(g.items())[:20]
        t = Table("group", "files", title=f"{len(g)} groups" + (" (first 20)" if len(g) > 20 else ""))
        for k, v in shown:
            t.add_row(str(k), str(v))
        out.print(t)
    if s.get("folds"):
        out.print("folds: " + ", ".join(f"{k}: {v}" for k, v in s["folds"].items()))
    if s.get("duration"):
        d = s["duration"]
        out.print(
            f"duration (s): min {d['min']:.3f}, median {d['median']:.3f}, mean {d['mean']:.3f}, "
            f"max {d['max']:.3f}, total {d['total'] / 60:.1f} min"
        )
    if s.get("sample_rates"):
        out.print("sample rates: " + ", ".join(f"{k} Hz × {v}" for k, v in s["sample_rates"].items()))
    if s.get("channels"):
        out.print("channels: " + ", ".join(f"{k} × {v}" for k, v in s["channels"].items()))
    if s["errors"]:
        t = Table("file", "reason", title=f"{len(s['errors'])} unreadable files (left out)")
        for e in s["errors"]:
            t.add_row(e["path"], e["reason"])
        out.print(t)
    if s["duplicates"]:
        out.print(f"[yellow]{len(s['duplicates'])} sets of files with identical audio:[/]")
        for group in s["duplicates"][:20]:
            out.print("  " + " = ".join(group))


@datasets_app.command("list")
def datasets_list() -> None:
    """List the catalog: name, licence, source and expected layout."""
    from earmark.sources.catalog import list_entries

    t = Table("name", "title", "licence", "download", "source / layout")
    for e in list_entries():
        t.add_row(e.name, e.title, e.license, "yes" if e.downloadable else "manual", f"{e.url}\n{e.layout}")
    Console().print(t)


@datasets_app.command("download")
def datasets_download(
    name: str = typer.Argument(..., help="Catalog name, e.g. fsdd."),
    to: Path = typer.Option(None, "--to", help="Folder to create (default: ./data/NAME)."),
    url: str | None = typer.Option(None, "--url", help="Another location of the same archive (mirror or file://)."),
) -> None:
    """Download a dataset at its pinned version and verify it file by file."""
    from earmark.sources.catalog import download

    dest = to or Path("data") / name
    err_console.print(f"downloading {name} into {dest} …")
    try:
        path = download(name, dest, url=url)
    except EarmarkError as exc:
        fail(str(exc))
    err_console.print(f"[green]verified[/] {name} in {path}; next: earmark info {path / 'manifest.csv'}")
    raise typer.Exit(int(ExitCode.OK))

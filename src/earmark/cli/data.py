"""Data commands: ``earmark info`` and ``earmark datasets``."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.table import Table

from earmark.cli._common import ExitCode, err_console, fail, write_json
from earmark.errors import EarmarkError

if TYPE_CHECKING:
    import pandas as pd

datasets_app = typer.Typer(help="The catalog of public datasets: list them, download one.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add ``info`` and ``datasets`` to ``app``."""
    app.command("info")(info)
    app.add_typer(datasets_app, name="datasets")


def _load(
    source: Path, label_column: str | None, group_column: str | None, pattern: str | None, check: str
) -> pd.DataFrame:
    from earmark.sources import load_dataset

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # skipped files are reported by the command itself
        return load_dataset(
            source, label_column=label_column, group_column=group_column, pattern=pattern, check=check,
            allow_unlabelled=True,  # a summary needs no labels: it says when there are none
        )


def _n(count: int, noun: str, plural: str | None = None) -> str:
    """``count`` and ``noun``, in the plural unless ``count`` is 1: ``_n(1, 'group')`` → ``'1 group'``."""
    return f"{count} {noun if count == 1 else plural or noun + 's'}"


def info(
    source: Path = typer.Argument(
        ..., exists=True, help="CSV manifest, folder of class folders, or folder of files (labelled with --pattern, or not)."
    ),
    label_column: str | None = typer.Option(None, "--label-column", help="Manifest column of the labels."),
    group_column: str | None = typer.Option(None, "--group-column", help="Manifest column of the groups (speaker, recording…)."),
    pattern: str | None = typer.Option(None, "--pattern", help="File-name pattern, e.g. '{label}_{group}_{index}'."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object on stdout instead of tables."),
    duplicates: bool = typer.Option(True, "--duplicates/--no-duplicates", help="Look for files with identical audio."),
) -> None:
    """Summarise a dataset: classes, groups, durations, sample rates, bad files, duplicates.

    A folder of files without class sub-folders or --pattern is summarised without classes.
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
    out.print(f"[bold]{s['source']}[/]: {s['n_ok']} of {_n(s['n_files'], 'file')} readable")
    if s.get("classes"):
        t = Table("class", "files", title=f"{_n(len(s['classes']), 'class', 'classes')} (balance {s['balance']:.2f})")
        for k, v in s["classes"].items():
            t.add_row(str(k), str(v))
        out.print(t)
    unlabelled = s.get("n_unlabelled", 0)
    if unlabelled and unlabelled == s["n_ok"]:
        out.print(
            "no labels: the files have no class; to give them classes use class sub-folders, "
            "a CSV manifest with a label column, or --pattern (e.g. '{label}_{group}_{index}')",
            highlight=False,
        )
    elif unlabelled:
        out.print(f"[yellow]{_n(unlabelled, 'file')} without a label[/]", highlight=False)
    if s.get("groups"):
        g = s["groups"]
        shown = list(g.items())[:20]
        t = Table("group", "files", title=_n(len(g), "group") + (" (first 20)" if len(g) > 20 else ""))
        for k, v in shown:
            t.add_row(str(k), str(v))
        out.print(t)
    if s.get("folds"):
        out.print("folds: " + ", ".join(f"{k}: {v}" for k, v in s["folds"].items()))
    if s.get("duration"):
        d = s["duration"]
        total = f"{d['total'] / 60:.1f} min" if d["total"] >= 60 else f"{d['total']:.1f} s"
        out.print(
            f"duration (s): min {d['min']:.3f}, median {d['median']:.3f}, mean {d['mean']:.3f}, "
            f"max {d['max']:.3f}, total {total}"
        )
    if s.get("sample_rates"):
        out.print("sample rates: " + ", ".join(f"{k} Hz × {v}" for k, v in s["sample_rates"].items()))
    if s.get("channels"):
        out.print("channels: " + ", ".join(f"{k} × {v}" for k, v in s["channels"].items()))
    if s["errors"]:
        t = Table("file", "reason", title=f"{_n(len(s['errors']), 'unreadable file')} (left out)")
        for e in s["errors"]:
            t.add_row(e["path"], e["reason"])
        out.print(t)
    if s["duplicates"]:
        out.print(f"[yellow]{_n(len(s['duplicates']), 'set')} of files with identical audio:[/]")
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

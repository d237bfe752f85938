"""Data commands: ``earmark info``, ``earmark split`` and ``earmark datasets``."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from earmark.cli._common import ExitCode, err_console, fail, warnings_as_lines, write_json
from earmark.errors import EarmarkError

if TYPE_CHECKING:
    import pandas as pd

datasets_app = typer.Typer(help="The catalog of public datasets: list them, download one.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add ``info``, ``split`` and ``datasets`` to ``app``."""
    app.command("info")(warnings_as_lines(info))
    app.command("split")(warnings_as_lines(split))
    app.add_typer(datasets_app, name="datasets")


def _load(
    source: Path, label_column: str | None, group_column: str | None, pattern: str | None, check: str
) -> pd.DataFrame:
    from earmark.sources import SkippedFileWarning, load_dataset

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkippedFileWarning)  # skipped files are listed by the command itself
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
    label_column: str | None = typer.Option(None, "--label-column", "--label", help="Manifest column of the labels."),
    group_column: str | None = typer.Option(None, "--group-column", "--group", help="Manifest column of the groups (speaker, recording…)."),
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
    out.print(f"[bold]{escape(str(s['source']))}[/]: {s['n_ok']} of {_n(s['n_files'], 'file')} readable")
    if s.get("classes"):
        t = Table("class", "files", title=f"{_n(len(s['classes']), 'class', 'classes')} (balance {s['balance']:.2f})")
        for k, v in s["classes"].items():
            t.add_row(escape(str(k)), str(v))
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
            t.add_row(escape(str(k)), str(v))
        out.print(t)
    if s.get("folds"):
        out.print("folds: " + ", ".join(f"{k}: {v}" for k, v in s["folds"].items()), markup=False)
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
        t = Table(title=f"{_n(len(s['errors']), 'unreadable file')} (left out)")
        t.add_column("file", overflow="fold")  # whole paths, wrapped: a cut one names no file
        t.add_column("reason", overflow="fold")
        for e in s["errors"]:
            t.add_row(escape(str(e["path"])), escape(str(e["reason"])))
        out.print(t)
    if s["duplicates"]:
        out.print(f"[yellow]{_n(len(s['duplicates']), 'set')} of files with identical audio:[/]")
        for group in s["duplicates"][:20]:
            out.print("  " + " = ".join(group), markup=False, highlight=False)


#: Columns load_dataset fills from each file's header; a written manifest leaves them out.
_HEADER_COLUMNS = ("duration", "sample_rate", "channels")


def _manifest(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` as a manifest to write: absolute paths first, header-derived columns left out."""
    # a source's 'Path' / 'Fold' that a written column was made from would be read back instead of
    # it (a case variant, found by the same names): left out; any other column of the source stays
    made_from = df.attrs.get("columns_from", {})
    variants = {src for std, src in made_from.items() if src != std and src.lower() == std and std in df.columns}
    keep = [c for c in df.columns if c not in _HEADER_COLUMNS and c not in variants]
    return df[["path", *[c for c in keep if c != "path"]]]


def _side(df: pd.DataFrame) -> dict[str, object]:
    out: dict[str, object] = {"files": len(df)}
    if "label" in df.columns:
        out["classes"] = {str(k): int(v) for k, v in df["label"].dropna().astype(str).value_counts().sort_index().items()}
    if "group" in df.columns:
        out["groups"] = sorted(df["group"].dropna().astype(str).unique().tolist())
    return out


def split(
    source: Path = typer.Argument(..., exists=True, help="CSV manifest, folder of class folders, or folder of files."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder to write train.csv and test.csv (or manifest.csv with --folds) into."),
    test_size: float = typer.Option(0.2, "--test-size", min=0.01, max=0.99, help="Share of the files (about, by group) in test.csv."),
    by: str = typer.Option("auto", "--by", help="'group' (no group on both sides), 'fold' (hold out --test-fold), 'random', or 'auto' (group when there are groups, else fold when there are folds)."),
    test_fold: str | None = typer.Option(None, "--test-fold", help="The fold held out with --by fold (default: the last)."),
    folds: int | None = typer.Option(None, "--folds", min=2, help="Instead of train/test: write manifest.csv with a 'fold' column (replacing one it had) of K group-aware stratified folds, for 'earmark cv --folds fold'."),
    seed: int = typer.Option(0, "--seed", help="Seed of the shuffle; the same seed gives the same split."),
    label_column: str | None = typer.Option(None, "--label-column", "--label", help="Manifest column of the labels."),
    group_column: str | None = typer.Option(None, "--group-column", "--group", help="Manifest column of the groups (speaker, recording…)."),
    pattern: str | None = typer.Option(None, "--pattern", help="File-name pattern, e.g. '{label}_{group}_{index}'."),
    duplicates: bool = typer.Option(True, "--duplicates/--no-duplicates", help="Look for identical audio on both sides (content hash of every file)."),
    as_json: bool = typer.Option(False, "--json", help="Print the split's summary as JSON on stdout."),
) -> None:
    """Split a dataset into train and test manifests without leakage (or into K folds).

    Groups (speakers, recordings…) never straddle the two sides; labels are stratified as far as
    groups allow. The manifests hold absolute paths and every column of the source, so
    'earmark train OUT/train.csv' and 'earmark evaluate MODEL OUT/test.csv' read them as they are.
    Unreadable files are listed and left out of both sides (every file is decoded; with
    --no-duplicates only headers are read, so a file broken after its header is not found); identical
    audio found on both sides is reported (exit code 1).
    """
    import numpy as np

    from earmark.sources import check_leakage, iter_folds, split_kind, train_test_split
    from earmark.sources._splits import _group_array, _has, duplicates_across_folds

    if out.exists() and not out.is_dir():
        fail(f"--out {out} is a file; give a folder to write the manifests into.", ExitCode.USAGE)
    if by not in ("auto", "group", "fold", "random"):
        fail(f"--by must be auto, group, fold or random; got {by!r}.", ExitCode.USAGE)
    if folds and (test_fold is not None or by == "fold"):
        fail("--folds K writes new folds; --test-fold / --by fold hold out an existing one. Use one or the other.",
             ExitCode.USAGE)
    names = ["manifest.csv"] if folds else ["train.csv", "test.csv"]
    try:
        # checking duplicates decodes every file anyway: decode first, so a file that cannot be is left out
        df = _load(source, label_column, group_column, pattern, "decode" if duplicates else "header")
        skipped = list(df.attrs.get("skipped", []))
        if len(df) < 2:
            first = (f"; e.g. {skipped[0].get('path')}: {skipped[0].get('reason')}"
                     if skipped and isinstance(skipped[0], dict) else "")
            fail(f"{source} has {len(df)} readable file(s) of {len(df) + len(skipped)} listed{first}. "
                 "A split needs at least 2; check the paths (relative ones are read from the manifest's folder).")
        kind = split_kind(df, by)
        if kind == "group" and not _has(df, "group"):
            n_groups = df["group"].dropna().astype(str).nunique() if "group" in df.columns else 0
            fail(f"--by group needs a group column with at least two groups; {source} has "
                 f"{n_groups or 'none'} (name it with --group-column, or use --by random).",
                 ExitCode.USAGE)
        if by == "auto" and kind == "random" and "fold" in df.columns and df["fold"].nunique() > 1 and not folds:
            if _has(df, "fold"):
                kind = "fold"  # predefined folds are what keeps such a table leak-free
            else:
                n_blank = int(df["fold"].isna().sum())
                err_console.print(f"[yellow]warning:[/] the fold column is not used: {_n(n_blank, 'row')} "
                                  f"{'has' if n_blank == 1 else 'have'} no fold (fill them in to hold out a fold); "
                                  "the split is random.", highlight=False)
        if folds:
            if by not in ("auto", "group", "random"):
                fail(f"--folds K makes group-aware (or random) folds; --by {by} does not apply.", ExitCode.USAGE)
            data = df.drop(columns=["group"]) if kind == "random" and "group" in df.columns else df
            if "group" in data.columns and len(set(_group_array(data, warn=False))) < folds:
                n_groups = len(set(_group_array(data, warn=False)))  # a blank row is a group of its own
                fail(f"--folds {folds} needs at least {folds} groups to keep each group in one fold; {source} has "
                     f"{n_groups}. Use --folds {n_groups} or fewer (with as many folds as groups, each holds out "
                     "one group), or --by random to ignore the groups.", ExitCode.USAGE)
            assigned = np.zeros(len(df), dtype=int)
            for i, (_, _, test_pos) in enumerate(iter_folds(data, folds=folds, seed=seed), start=1):
                assigned[test_pos] = i
            table = df.assign(fold=assigned)
            sides = {f"fold {k}": _side(table[table["fold"] == k]) for k in range(1, folds + 1)}
            leak = None
            fold_dups = duplicates_across_folds(table) if duplicates else None
        else:
            value: object = None
            if test_fold is not None:
                if "fold" not in df.columns:
                    fail("--test-fold needs a 'fold' column in the manifest.", ExitCode.USAGE)
                known = {str(v): v for v in df["fold"].dropna().unique()}
                if test_fold not in known:
                    fail(f"--test-fold {test_fold!r} is not a fold of {source}; folds: {sorted(known)}.", ExitCode.USAGE)
                value, kind = known[test_fold], "fold"
            data = df.drop(columns=["group"]) if kind == "random" and "group" in df.columns else df
            train_df, test_df = train_test_split(data, test_size=test_size, seed=seed, by=kind, test_fold=value)
            train_df, test_df = df.loc[train_df.index], df.loc[test_df.index]
            sides = {"train": _side(train_df), "test": _side(test_df)}
            if duplicates:
                leak = check_leakage(train_df, test_df)
            else:  # groups only: no file is read again
                leak = check_leakage(train_df.iloc[:0], test_df.iloc[:0])
                if "group" in df.columns:
                    leak.shared_groups = sorted(set(train_df["group"].dropna().astype(str))
                                                & set(test_df["group"].dropna().astype(str)))
    except EarmarkError as exc:
        fail(str(exc))
    out.mkdir(parents=True, exist_ok=True)
    if folds:
        _manifest(table).to_csv(out / names[0], index=False)
    else:
        _manifest(train_df).to_csv(out / names[0], index=False)
        _manifest(test_df).to_csv(out / names[1], index=False)
    summary: dict[str, object] = {
        "source": str(source), "by": kind, "seed": seed, "written": [str(out / n) for n in names],
        "sides": sides, "skipped": skipped,
    }
    if folds:
        summary["duplicates_across"] = fold_dups
    if leak is not None:
        summary["shared_groups"] = leak.shared_groups
        summary["duplicates_across"] = leak.duplicates if duplicates else None
        if kind == "random" and "group" in df.columns:
            summary["note"] = ("a random split ignores the groups: the same group can be on both sides"
                               if by == "random" else
                               "one group only: the split is random within it")
    if as_json:
        write_json(summary, None)
    else:
        console = Console()
        t = Table("side", "files", "classes", "groups", title=f"split of {source} (by {kind}, seed {seed})")
        for name, side in sides.items():
            classes = side.get("classes") or {}
            groups = side.get("groups")
            t.add_row(name, str(side["files"]), str(len(classes)) if classes else "-",
                      (", ".join(groups[:6]) + (f" … ({len(groups)})" if len(groups) > 6 else "")) if groups else "-")
        console.print(t)
        err_console.print("wrote " + ", ".join(str(out / n) for n in names), highlight=False)
        if "note" in summary:
            err_console.print(f"[yellow]warning:[/] {summary['note']}", highlight=False)
    if kind == "group" and not folds and len(df):
        share = len(test_df) / len(df)
        if abs(share - test_size) > max(0.5 * min(test_size, 1 - test_size), 0.05):
            err_console.print(f"[yellow]warning:[/] the test side holds {share:.1%} of the files (asked for "
                              f"{test_size:.0%}): whole groups cannot make up that share, their sizes differ too "
                              "much. Check the groups, or choose --test-size near what they allow.", highlight=False)
    if "label" in df.columns and df["label"].isna().any():
        n_blank = int(df["label"].isna().sum())
        err_console.print(f"[yellow]warning:[/] {_n(n_blank, 'file')} without a label: the split is not stratified "
                          "by label, so classes may be unbalanced between the sides; train and evaluate need a "
                          "label for every file (fill them in, or drop those rows).", highlight=False)
    if kind == "fold" and test_size != 0.2 and not folds:
        err_console.print("[yellow]warning:[/] --test-size does not apply when a fold is held out "
                          "(the fold's files are the test side)", highlight=False)
    if skipped:
        err_console.print(f"[yellow]{_n(len(skipped), 'unreadable file')} left out:[/]", highlight=False)
        for item in skipped[:20]:
            text = f"{item.get('path')}: {item.get('reason')}" if isinstance(item, dict) else str(item)
            err_console.print(f"  {text}", highlight=False, markup=False)
    missing = []
    if not folds and "label" in df.columns:
        missing = sorted(set(sides["train"].get("classes", {})) ^ set(sides["test"].get("classes", {})))  # type: ignore[union-attr, arg-type]
        if missing:
            err_console.print(f"[yellow]warning:[/] classes on one side only: {escape(', '.join(missing))} "
                              "(too few files or groups of them to put one on each side)", highlight=False)
    if leak is not None and leak.shared_groups and kind != "random":
        err_console.print(f"[yellow]warning:[/] groups on both sides: {escape(', '.join(leak.shared_groups[:10]))}",
                          highlight=False)
    if folds and fold_dups:
        err_console.print(f"[yellow]warning:[/] {_n(len(fold_dups), 'audio')} found in more than one fold "
                          "(identical content; the same file, when it is listed twice):", highlight=False)
        for d in fold_dups[:10]:
            err_console.print("  " + " = ".join(f"fold {f} {ps[0]}" for f, ps in d["folds"].items()), highlight=False,
                              markup=False)
        raise typer.Exit(int(ExitCode.PARTIAL))
    if leak is not None and leak.duplicates and duplicates:
        err_console.print(f"[yellow]warning:[/] {_n(len(leak.duplicates), 'audio')} found on both sides "
                          "(identical content; the same file, when it is listed twice):", highlight=False)
        for d in leak.duplicates[:10]:
            err_console.print(f"  train {d['train'][0]} = test {d['test'][0]}", highlight=False, markup=False)
        raise typer.Exit(int(ExitCode.PARTIAL))
    if skipped:
        raise typer.Exit(int(ExitCode.PARTIAL))


@datasets_app.command("list")
def datasets_list(
    as_json: bool = typer.Option(False, "--json", help="Print the catalog as JSON on stdout instead of a table."),
) -> None:
    """List the catalog: name, licence, source and expected layout."""
    import dataclasses

    from earmark.sources.catalog import list_entries

    if as_json:
        write_json([dataclasses.asdict(e) for e in list_entries()], "-")
        return
    t = Table("name", "title", "licence", "download", "source / layout")
    t.columns[-1].overflow = "fold"  # whole URLs, wrapped: a cut one cannot be followed
    for e in list_entries():
        t.add_row(e.name, e.title, e.license, "yes" if e.downloadable else "manual", f"{e.url}\n{e.layout}")
    Console().print(t)


@datasets_app.command("download")
def datasets_download(
    name: str = typer.Argument(..., help="Catalog name, e.g. fsdd."),
    to: Path = typer.Option(None, "--out", "-o", "--to", help="Folder to create (default: ./data/NAME)."),
    url: str | None = typer.Option(None, "--url", help="Another location of the same archive (mirror or file://)."),
) -> None:
    """Download a dataset at its pinned version and verify it (file count and a digest of every file)."""
    from earmark.sources.catalog import download, get_entry

    dest = to or Path("data") / name
    try:
        downloadable = get_entry(name).downloadable
    except EarmarkError as exc:
        fail(str(exc), ExitCode.USAGE)
    if downloadable:
        err_console.print(f"downloading {name} into {dest} …")
    try:
        path = download(name, dest, url=url)
    except EarmarkError as exc:
        fail(str(exc))
    err_console.print(f"[green]verified[/] {name} in {path}; next: earmark info {path / 'manifest.csv'}")
    raise typer.Exit(int(ExitCode.OK))

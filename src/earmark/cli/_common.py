"""Shared pieces of the command line: exit codes, error reporting, progress bars, JSON output."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from enum import IntEnum
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

__all__ = ["ExitCode", "all_models", "check_output_file", "check_writable_folder", "earmark_warnings", "err_console", "fail", "progress_bar", "register_features", "warnings_as_lines", "write_json"]

#: Messages, warnings and progress go to stderr; results (tables, JSON) go to stdout.
err_console = Console(stderr=True)


class ExitCode(IntEnum):
    """Exit codes of every ``earmark`` command."""

    OK = 0
    #: The command ran, but some inputs failed (undecodable files, …); they are listed.
    PARTIAL = 1
    #: Bad usage: an option or argument the command cannot use.
    USAGE = 2
    #: The command could not run (missing data, bad bundle, …).
    ERROR = 3
    #: ``earmark monitor`` found drift.
    DRIFT = 4


def fail(message: str, code: ExitCode = ExitCode.ERROR) -> NoReturn:
    """Print ``message`` to stderr and exit with ``code``."""
    err_console.print(f"[bold red]error:[/] {escape(str(message))}", highlight=False)  # '[synth]' is text
    raise typer.Exit(int(code))


def report_skipped(skipped: list[dict[str, str]], *, label: str = "left out", of: str = "the scores") -> None:
    """List the files a command left out (at most 50, then a count) and say how many there were."""
    for s in skipped[:50]:
        err_console.print(f"[yellow]{label}[/] {escape(str(s.get('path')))}: {escape(str(s.get('reason')))}",
                          highlight=False)
    if len(skipped) > 50:
        err_console.print(f"… and {len(skipped) - 50} more (see --json).", highlight=False)
    if skipped:
        err_console.print(f"{len(skipped)} file{'' if len(skipped) == 1 else 's'} left out of {of}.", highlight=False)


def all_models(*names: str | None) -> None:
    """Register the models the transfer module adds (``finetune``, ``mobilenet_v2``), so that every
    command that takes a model name knows them. Given names, only when one of them is not yet known
    (the import loads torch, which a classical model does not need)."""
    wanted = [n for n in names if n]
    if names and not wanted:
        return
    if wanted:
        from earmark.models import list_models

        known = {spec.name for spec in list_models()}
        if all(n in known for n in wanted):
            return
    import earmark.transfer  # noqa: F401


def check_writable_folder(folder: Path, option: str) -> None:
    """Exit with a usage error, before any work, when ``folder`` could not be created or written
    (its nearest existing ancestor is a file or not writable). Nothing is created."""
    import os

    probe = Path(os.path.abspath(folder))
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir():
        fail(f"Cannot write to {folder} for {option}: {probe} is a file, not a folder. Choose another path.",
             ExitCode.USAGE)
    if not os.access(probe, os.W_OK | os.X_OK):
        fail(f"Cannot write to {folder} for {option}: {probe} is not writable. Choose a writable path.",
             ExitCode.USAGE)


def check_output_file(target: str | Path | None, option: str) -> None:
    """Exit with a usage error, before any work, when an output file (``--json``, ``--report``,
    ``--out``) could not be written: it is a folder, or its folder cannot be made or written.
    ``None`` and ``'-'`` (stdout) pass."""
    if target is None or str(target) == "-":
        return
    if Path(target).is_dir():
        fail(f"{option} {target} is a folder; give the path of the file to write.", ExitCode.USAGE)
    check_writable_folder(Path(target).parent, option)


def write_text(target: str | Path, text: str) -> None:
    """Write an output file, creating its folder; a path that cannot be written exits with an
    error naming it (not a traceback)."""
    path = Path(target)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        fail(f"Cannot write {path}: {exc.strerror or exc}. Choose a writable output path.")


def write_json(obj: Any, target: str | Path | None) -> None:
    """Write ``obj`` as JSON to a file (its folder created), or to stdout when ``target`` is
    ``None`` or ``'-'``."""
    text = json.dumps(obj, indent=2, default=_default, ensure_ascii=False)
    if target is None or str(target) == "-":
        sys.stdout.write(text + "\n")
    else:
        write_text(target, text + "\n")


def _default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    return str(o)


@contextmanager
def progress_bar(description: str, total: int | None, *, enabled: bool | None = None) -> Iterator[Any]:
    """A rich progress bar (files/s and ETA) on a terminal; a no-op elsewhere.

    Yields a callable ``advance(n=1)``.
    """
    if enabled is None:
        enabled = err_console.is_terminal
    if not enabled:
        yield lambda n=1: None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TaskProgressColumn,
        TextColumn,
        TimeRemainingColumn,
    )

    class _RateColumn(ProgressColumn):
        def render(self, task: Any) -> Any:
            from rich.text import Text

            return Text(f"{task.speed:,.0f} files/s" if task.speed else "", style="cyan")

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        _RateColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err_console, transient=True) as prog:
        task = prog.add_task(description, total=total)
        yield lambda n=1: prog.advance(task, n)


@contextmanager
def earmark_warnings() -> Iterator[None]:
    """Show earmark's warnings raised inside the block as one ``warning:`` line each on stderr
    (others as Python shows them), also when the block fails."""
    import warnings

    from earmark.errors import EarmarkWarning

    pending: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", EarmarkWarning)
            try:
                yield
            finally:
                pending = list(caught)
    finally:
        # shown once recording has stopped: inside it, showwarning would record them again
        shown: set[str] = set()
        for w in pending:
            if not issubclass(w.category, EarmarkWarning):
                warnings.showwarning(w.message, w.category, w.filename, w.lineno)
            elif str(w.message) not in shown:
                shown.add(str(w.message))
                err_console.print(f"[yellow]warning:[/] {escape(str(w.message))}", highlight=False)


def register_features(features: str | None) -> str | None:
    """Make a ``--features`` value usable by name: ``embed:MODEL`` (a bundle path, ``birdnet``,
    ``torchvision:…``, ``hf:…``) is registered as :func:`earmark.transfer.embed_preset` does;
    other names, with their settings, are checked (an unknown one exits with a usage error).

    Example
    -------
    >>> register_features("logmel")
    'logmel'
    """
    if features is None:
        return None
    if not features.startswith("embed:"):
        from earmark.errors import EarmarkError
        from earmark.features import get_preset

        try:
            get_preset(features)
        except EarmarkError as exc:
            fail(f"{exc} (option --features)", ExitCode.USAGE)
        return features
    from earmark.transfer import embed_preset
    from earmark.transfer._embed import get_backbone

    preset = embed_preset(features.split(":", 1)[1])
    terms = getattr(get_backbone(preset.params["model"]), "license", None)
    if terms:  # the backbone's terms reach what is made with its embeddings (BirdNET: non-commercial)
        err_console.print(f"[yellow]note:[/] {escape(terms)}", highlight=False)
    return preset.name


def warnings_as_lines(command: Any) -> Any:
    """``command`` with earmark's warnings shown as ``warning:`` lines (the signature Typer reads is kept)."""
    import functools

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        with earmark_warnings():
            return command(*args, **kwargs)

    return run

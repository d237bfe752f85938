"""Entry point of the ``earmark`` command: parses and delegates, nothing else.

Each command group lives in its own module with a ``register(app)`` function; the list below
composes them. Exit codes are :class:`earmark.cli._common.ExitCode`.
"""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="earmark",
    help="From a folder of labelled recordings to a trained, evaluated and served audio classifier.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

#: Command modules, in the order their commands appear in ``earmark --help``.
COMMAND_MODULES = (
    "earmark.cli.data",      # info, datasets
    "earmark.cli.demo",      # demo
    "earmark.cli.features",  # features list, extract
    "earmark.cli.models",    # models list, train, tune
    "earmark.cli.evaluate",  # evaluate, cv, compare
    "earmark.cli.serve",     # predict, export, serve, monitor
    "earmark.cli.synth",     # synth
    "earmark.cli.transfer",  # embed
)

for _name in COMMAND_MODULES:
    importlib.import_module(_name).register(app)


def _print_version(value: bool) -> None:
    # an eager option's callback runs before a command is looked for: `earmark --version` alone works
    if value:
        from earmark import __version__

        typer.echo(__version__)
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", help="Print earmark's version and exit.", is_eager=True,
                                 callback=_print_version),
) -> None:
    """From a folder of labelled recordings to a trained, evaluated and served audio classifier."""


def main() -> None:
    """Run the command line (the ``earmark`` console script)."""
    app()


if __name__ == "__main__":
    main()

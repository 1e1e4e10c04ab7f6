"""The ``alambic`` command, one module per subcommand (built on typer, output through rich).

    alambic run PIPELINE [--param step.field=value ...] [--output DIR] [--push-to-hub REPO]
    alambic info PIPELINE            the DAG (text and mermaid), columns, parameters, LLMs
    alambic runs list|show|rm        what the run store keeps
    alambic view [RUN or FOLDER]     a local web page with the rows, failures, plots, diffs
    alambic quickstart               generate a small dataset with a local model

Every error a user can cause is one line on stderr (``error: ...``) and exit status 1.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import typer

from alambic.cli import info, quickstart, run, runs, view

app = typer.Typer(
    name="alambic",
    help="Build datasets with and for LLMs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        from alambic import __version__

        print(f"alambic {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", help="Print the version and exit.", callback=_version, is_eager=True
    ),
) -> None:
    """Build datasets with and for LLMs."""


run.register(app)
info.register(app)
app.add_typer(runs.app, name="runs")
view.register(app)
quickstart.register(app)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``) and return its exit status."""
    import click

    from alambic.cli._common import fail_message
    from alambic.errors import AlambicError

    args = list(sys.argv[1:] if argv is None else argv)
    command = typer.main.get_command(app)
    try:
        result = command.main(args=args, prog_name="alambic", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Abort:
        print("aborted", file=sys.stderr)
        return 130
    except AlambicError as exc:
        fail_message(str(exc))
        return 1
    return int(result) if isinstance(result, int) else 0


__all__ = ["app", "main"]

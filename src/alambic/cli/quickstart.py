"""``alambic quickstart``: a thin wrapper over :mod:`alambic.quickstart`."""

from __future__ import annotations

from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    app.command(
        "quickstart",
        help="Generate a small dataset with a local model, to see alambic work end to end. "
        "Options not listed here are passed on to alambic.quickstart.",
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    )(quickstart_command)


def quickstart_command(
    ctx: typer.Context,
    model: Annotated[
        str | None, typer.Option("--model", help="Hub id or local folder of the model.")
    ] = None,
    base_url: Annotated[
        str | None,
        typer.Option(
            "--base-url", help="An OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1."
        ),
    ] = None,
    num_rows: Annotated[
        int | None, typer.Option("--num-rows", help="How many instructions to answer.")
    ] = None,
    max_new_tokens: Annotated[
        int | None, typer.Option("--max-new-tokens", help="Tokens per answer.")
    ] = None,
    output: Annotated[
        str | None, typer.Option("--output", help="Folder the dataset is saved to.")
    ] = None,
) -> int:
    from alambic.quickstart import main

    argv: list[str] = []
    for flag, value in (
        ("--model", model),
        ("--base-url", base_url),
        ("--num-rows", num_rows),
        ("--max-new-tokens", max_new_tokens),
        ("--output", output),
    ):
        if value is not None:
            argv += [flag, str(value)]
    return main(argv + list(ctx.args))

"""``alambic view [RUN or DISTISET folder]``: a local web page with a run's rows."""

from __future__ import annotations

from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    app.command(
        "view",
        help="Look at a run's rows in the browser: a local read-only page on 127.0.0.1 (a free "
        "port, printed). TARGET: a run as `alambic runs list` prints it (DEFINITION/RUN), a "
        "pipeline name, a Distiset folder; default: the latest run.",
    )(view_command)


def view_command(
    target: Annotated[
        str | None, typer.Argument(help="DEFINITION/RUN, a pipeline name, or a folder.")
    ] = None,
    diff: Annotated[
        list[str] | None,
        typer.Option(
            "--diff",
            help="Another run or Distiset folder to compare with. Repeatable. Default: the "
            "latest run of every other definition of the same pipeline.",
        ),
    ] = None,
    port: Annotated[
        int, typer.Option("--port", help="Port on 127.0.0.1 (default: a free one).")
    ] = 0,
    open_browser: Annotated[
        bool | None,
        typer.Option(
            "--open/--no-open", help="Open the page in a browser (default: on a terminal)."
        ),
    ] = None,
) -> int:
    from alambic.viewer import open_target, serve
    from alambic.viewer.sources import Source, sibling_runs

    source = open_target(target)
    others: dict[str, Source] = {}
    for ref in diff or []:
        other = open_target(ref)
        others[other.label] = other
    if not diff:  # other definitions of the same pipeline can be compared without --diff
        others = sibling_runs(source)
    if open_browser is None:
        import sys

        open_browser = sys.stdout.isatty()
    if open_browser:
        import threading
        import webbrowser

        from alambic.testing.processes import free_port

        port = port or free_port()
        threading.Timer(1.0, webbrowser.open, args=(f"http://127.0.0.1:{port}/",)).start()
    serve(source, others, port=port)
    return 0

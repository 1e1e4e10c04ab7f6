"""``alambic runs list|show|rm``: what the run store keeps."""

from __future__ import annotations

import dataclasses
import json
import sys
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any

import typer

from alambic.cli._common import CLIError

if TYPE_CHECKING:
    from alambic.pipeline.runs import RunInfo

app = typer.Typer(
    help="List, show and delete stored runs (in ALAMBIC_CACHE_DIR, default ~/.cache/alambic).",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)

HEADERS = (
    "pipeline",
    "definition",
    "run",
    "status",
    "started",
    "rows this run",
    "failed rows",
    "cost",
)


def _cost(info: RunInfo) -> str:
    """What the run's requests cost: ``unknown`` when a price is, ``-`` when not recorded."""
    from alambic.budget import format_usd

    if info.spend is None:
        return "-"
    return format_usd(info.cost_usd)


def _row(info: RunInfo) -> tuple[str, ...]:
    rows = ", ".join(f"{s.name}={s.rows_this_run}" for s in info.steps) or "-"
    started = info.started_at.strftime("%Y-%m-%d %H:%M:%S") if info.started_at else "-"
    failed = "-" if info.failed_rows is None else str(info.failed_rows)
    status = info.status if info.error is None else f"{info.status}: {info.error}"
    return (
        info.pipeline_name,
        info.definition_id,
        str(info.run_id),
        status,
        started,
        rows,
        failed,
        _cost(info),
    )


@app.command("list", help="Every stored run: a table with a header, oldest first per pipeline.")
def list_command(
    json_output: Annotated[bool, typer.Option("--json", help="One JSON object per run.")] = False,
) -> int:
    from alambic.pipeline.runs import list_runs

    infos = sorted(list_runs(), key=lambda i: (i.started_at is None, i.started_at, i.run_id))
    if json_output:
        for info in infos:
            print(json.dumps(_as_dict(info), default=str))
        return 0
    if not infos:
        print("no stored runs")
        return 0
    rows = [_row(i) for i in infos]
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.table import Table

        table = Table(*HEADERS)
        for row in rows:
            table.add_row(*row)
        Console().print(table)
    else:  # piped: tab-separated, header first, one run per line
        print("\t".join(HEADERS))
        for row in rows:
            print("\t".join(row))
    print(
        "\nshow one: alambic runs show DEFINITION/RUN (e.g. "
        f"{infos[-1].ref}); delete: alambic runs rm DEFINITION/RUN",
        file=sys.stderr,
    )
    return 0


def _as_dict(info: RunInfo) -> dict[str, Any]:
    data = dataclasses.asdict(info)
    data["definition_id"] = info.definition_id
    data["ref"] = info.ref
    return data


@app.command(
    "show",
    help="One run in detail: REF is what `runs list` prints (DEFINITION/RUN, a definition id, "
    "or a pipeline name for its latest run).",
    no_args_is_help=True,
)
def show_command(
    ref: Annotated[str, typer.Argument(help="DEFINITION/RUN, DEFINITION, or a pipeline name.")],
    run: Annotated[int | None, typer.Argument(help="Run id (default: the latest).")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Everything as JSON.")] = False,
    yaml_output: Annotated[
        bool, typer.Option("--yaml", help="Print only the pipeline's YAML definition.")
    ] = False,
) -> int:
    from alambic.pipeline.runs import show_run

    details = show_run(ref, run)
    info = details.run
    if yaml_output:
        print(details.pipeline_yaml, end="")
        return 0
    if json_output:
        data = {"run": _as_dict(info), "definitions": details.definitions}
        print(json.dumps(data, default=str, indent=2))
        return 0
    print(f"pipeline:    {info.pipeline_name}")
    print(f"definition:  {info.definition_id}  ({info.path})")
    print(f"run:         {info.run_id}  (ref {info.ref})")
    print(f"status:      {info.status}" + (f" ({info.error})" if info.error else ""))
    print(f"started:     {info.started_at or '-'}")
    print(f"finished:    {info.finished_at or '-'}")
    print(f"failed rows: {'-' if info.failed_rows is None else info.failed_rows}")
    print("steps:       name, rows this run, rows committed in all, finished")
    for step in info.steps:
        mark = "yes" if step.finished else "no"
        print(f"  {step.name}\t{step.rows_this_run}\t{step.rows}\t{mark}")
    _print_spend(info)
    print(f"\nlook at the rows: alambic view {info.ref}; pipeline YAML: --yaml")
    return 0


def _print_spend(info: RunInfo) -> None:
    """Requests, tokens and cost per step and per model (``-``: the run recorded none)."""
    print(f"cost:        {_cost(info)}" + ("" if info.spend is not None else " (not recorded)"))
    if not info.spend:
        return
    print("spend:       step, model, requests, tokens in / out / cached, cost, price")
    models: dict[str, list[dict[str, Any]]] = {}
    for entry in info.spend:
        models.setdefault(str(entry.get("model")), []).append(entry)
        print(f"  {entry.get('step')}\t{entry.get('model')}\t" + _usage(entry))
    print("per model:   model, requests, tokens in / out / cached, cost")
    for model, entries in models.items():
        total: dict[str, Any] = {
            key: sum(int(e.get(key) or 0) for e in entries)
            for key in ("requests", "input_tokens", "output_tokens", "cached_tokens")
        }
        usds = [e.get("usd") for e in entries]
        total["usd"] = None if None in usds else sum(Decimal(str(u)) for u in usds)
        print(f"  {model}\t" + _usage(total, price=False))


def _usage(entry: dict[str, Any], *, price: bool = True) -> str:
    from alambic.budget import format_usd

    text = (
        f"{entry.get('requests', 0)}\t{entry.get('input_tokens', 0)} / "
        f"{entry.get('output_tokens', 0)} / {entry.get('cached_tokens', 0)}\t"
        f"{format_usd(entry.get('usd'))}"
    )
    return text + (f"\t{entry['price']}" if price and entry.get("price") else "")


@app.command(
    "rm",
    help="Delete runs: REF as `runs list` prints it (DEFINITION/RUN removes one run and the "
    "batches it committed; DEFINITION or a pipeline name removes all its runs), or --all.",
)
def rm_command(
    ref: Annotated[str | None, typer.Argument(help="DEFINITION/RUN, DEFINITION or a name.")] = None,
    run: Annotated[int | None, typer.Argument(help="Run id (default: every run).")] = None,
    all_runs: Annotated[
        bool, typer.Option("--all", help="Delete every stored run of every pipeline.")
    ] = False,
    requests: Annotated[
        bool,
        typer.Option("--requests", help="With --all: also delete the LLM request cache."),
    ] = False,
) -> int:
    from alambic.pipeline.runs import clear_cache, delete_run

    if all_runs:
        if ref is not None:
            raise CLIError("`alambic runs rm --all` takes no REF: give one or the other.")
        clear_cache(requests=requests)
        print("deleted every stored run" + (" and the request cache" if requests else ""))
        return 0
    if ref is None:
        raise CLIError(
            "`alambic runs rm` needs a REF as `alambic runs list` prints it "
            "(DEFINITION/RUN), or --all."
        )
    deleted = delete_run(ref, run)
    print(f"deleted {deleted} run(s) of {ref!r}")
    return 0


# earlier names, kept working
app.command("delete", hidden=True)(rm_command)


@app.command("clear", hidden=True)
def clear_command() -> int:
    from alambic.pipeline.runs import clear_cache

    clear_cache()
    print("cache cleared")
    return 0

"""``alambic run PIPELINE``: run a pipeline from a Python, YAML or JSON file."""

from __future__ import annotations

import inspect
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from alambic.cli._common import CLIError, fail_message, load_pipeline, parse_params

if TYPE_CHECKING:
    from alambic.pipeline.base import Pipeline

EXIT_FAILED_ROWS = 3
"""Exit status of a run that finished with failed rows (without ``--allow-failures``)."""

EXECUTORS = ("local", "ray")


def register(app: typer.Typer) -> None:
    app.command(
        "run",
        help="Run a pipeline: a Python file (a module-level Pipeline or a function returning "
        "one; FILE.py:NAME picks one), a YAML/JSON file, or a Distiset folder's pipeline.yaml.",
        no_args_is_help=True,
    )(run_command)


def run_command(
    pipeline: Annotated[
        str, typer.Argument(help="FILE.py[:NAME], FILE.yaml, FILE.json or a Distiset folder.")
    ],
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            "-p",
            help="Override a runtime parameter: STEP.FIELD=VALUE (VALUE read as YAML: 0.7, "
            "true, [a, b]); nested: STEP.llm.generation_kwargs.temperature=0.2. Repeatable.",
        ),
    ] = None,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Recompute every step instead of resuming.")
    ] = False,
    executor: Annotated[
        str, typer.Option("--executor", help="Where steps run: local (default) or ray.")
    ] = "local",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Save the Distiset to this folder.")
    ] = None,
    push_to_hub: Annotated[
        str | None,
        typer.Option(
            "--push-to-hub", help="Push the Distiset to this Hub dataset repo (user/name)."
        ),
    ] = None,
    private: Annotated[
        bool, typer.Option("--private", help="With --push-to-hub: a private repo.")
    ] = False,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Run every step on one batch of one row, without caching."),
    ] = False,
    allow_failures: Annotated[
        bool,
        typer.Option(
            "--allow-failures",
            help=f"Exit 0 even when rows failed (otherwise the exit status is {EXIT_FAILED_ROWS}).",
        ),
    ] = False,
    retry_failed: Annotated[
        bool | None,
        typer.Option(
            "--retry-failed/--keep-failed",
            help="On resume, recompute rows that failed with a transient error (the "
            "executor's default) or keep them as they are.",
        ),
    ] = None,
    allow_module: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-module",
            help="Let a YAML/JSON pipeline import classes from this module (and its submodules). "
            "Only alambic's own are imported otherwise. Repeatable.",
        ),
    ] = None,
    progress: Annotated[
        bool | None,
        typer.Option(
            "--progress/--no-progress",
            help="Live progress table (default: on a terminal; plain lines when piped).",
        ),
    ] = None,
    budget: Annotated[
        list[str] | None,
        typer.Option(
            "--budget",
            help="Stop before a request could pass this cap: USD (--budget 5), or "
            "usd=5, tokens=2000000, requests=1000. Repeatable. Rerun with a higher one to go on.",
        ),
    ] = None,
) -> int:
    if executor not in EXECUTORS:
        raise CLIError(f"--executor {executor!r} is not one of {', '.join(EXECUTORS)}.")
    pipe = load_pipeline(pipeline, allow_modules=list(allow_module or []))
    parameters = parse_params(pipe, list(param or []))
    pipe.apply_parameters(parameters)
    run_kwargs = _executor_kwargs(pipe, executor)
    if retry_failed is not None:
        if "retry_failed" not in inspect.signature(pipe.run).parameters:
            raise CLIError(
                "--retry-failed/--keep-failed: this version of alambic cannot choose (Pipeline.run "
                "takes no retry_failed); leave the option out."
            )
        run_kwargs["retry_failed"] = retry_failed
    if dry_run:
        distiset = pipe.dry_run()
    else:
        if budget:
            run_kwargs["budget"] = parse_budget(budget)
        distiset = pipe.run(
            use_cache=not no_cache,
            show_progress=True if progress else (False if progress is False else None),
            **run_kwargs,
        )
    failed = max(_failed_rows(pipe.last_summary), _failed_in_dataset(distiset))
    if output is not None:
        saved = distiset.save_to_disk(output)
        print(f"dataset saved to {saved}/ (look at it with: alambic view {saved})", file=sys.stderr)
    if push_to_hub is not None:
        # a failure is one HubError with the repo, the cause and the fix (alambic.hub_errors)
        url = distiset.push_to_hub(push_to_hub, private=private)
        print(f"pushed to {push_to_hub}: {url}", file=sys.stderr)
    rows = {name: sum(len(split) for split in dd.values()) for name, dd in distiset.items()}
    print(
        "rows: " + ", ".join(f"{k}={v}" for k, v in rows.items()) + f"; failed rows: {failed}",
        file=sys.stderr,
    )
    if failed and not allow_failures:
        fail_message(
            f"{failed} row(s) failed (their reasons are in the alambic_metadata column; see "
            f"them with `alambic view`). Pass --allow-failures to exit 0 anyway."
        )
        return EXIT_FAILED_ROWS
    return 0


def parse_budget(items: list[str]) -> dict[str, float]:
    """``5`` (USD) or ``usd=5``, ``tokens=...``, ``requests=...`` as ``run(budget=...)``."""
    budget: dict[str, float] = {}
    for item in items:
        kind, sep, raw = item.partition("=")
        if not sep:
            kind, raw = "usd", item
        if kind not in ("usd", "tokens", "requests"):
            raise CLIError(
                f"--budget {item!r}: {kind!r} is not one of usd, tokens, requests "
                "(e.g. --budget 5 or --budget requests=1000)."
            )
        try:
            value = float(raw)
        except ValueError:
            raise CLIError(f"--budget {item!r}: {raw!r} is not a number.") from None
        budget[kind] = value if kind == "usd" else int(value)
    return budget


def _executor_kwargs(pipeline: Pipeline, executor: str) -> dict[str, Any]:
    if executor == "local":
        return {}
    if "executor" not in inspect.signature(pipeline.run).parameters:
        raise CLIError(
            f"--executor {executor}: this version of alambic has no {executor} executor "
            "(Pipeline.run takes no executor). Use --executor local."
        )
    return {"executor": executor}


def _failed_in_dataset(distiset: Any) -> int:
    """Rows of the result with an error recorded, resumed ones included (0 without metadata)."""
    from alambic.errors import METADATA_COLUMN
    from alambic.pipeline.runs import row_failed

    count = 0
    for dataset_dict in distiset.values():
        for dataset in dataset_dict.values():
            if METADATA_COLUMN not in dataset.column_names:
                continue
            column = dataset.select_columns([METADATA_COLUMN])
            for start in range(0, len(column), 1000):
                batch = column[start : start + 1000][METADATA_COLUMN]
                count += sum(1 for meta in batch if row_failed({METADATA_COLUMN: meta}))
    return count


def _failed_rows(summary: dict[str, Any] | None) -> int:
    if not summary:
        return 0
    return sum(int(step.get("failed_rows", 0)) for step in summary.get("steps", {}).values())

"""``alambic estimate PIPELINE``: requests, tokens, cost and time per task, before running."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from alambic.cli._common import CLIError, load_pipeline, parse_params


def register(app: typer.Typer) -> None:
    app.command(
        "estimate",
        help="Estimate a run without calling any LLM: per task, the requests, input tokens "
        "(the model's tokenizer where available), output tokens (max_new_tokens, or measured "
        "with --sample), cost (and the batch API's) and time at the configured rate limits.",
        no_args_is_help=True,
    )(estimate_command)


def estimate_command(
    pipeline: Annotated[
        str, typer.Argument(help="FILE.py[:NAME], FILE.yaml, FILE.json or a Distiset folder.")
    ],
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param", "-p", help="Override a runtime parameter: STEP.FIELD=VALUE. Repeatable."
        ),
    ] = None,
    sample: Annotated[
        int | None,
        typer.Option(
            "--sample",
            help="First run N rows for real (this calls the LLMs and costs money) to measure "
            "reply lengths and latency.",
        ),
    ] = None,
    latency: Annotated[
        float | None,
        typer.Option("--latency", help="Seconds per request, for the time estimate."),
    ] = None,
    format: Annotated[str, typer.Option("--format", "-f", help="text (default) or json.")] = "text",
    allow_module: Annotated[
        list[str] | None,
        typer.Option("--allow-module", help="Let a YAML/JSON pipeline import this module."),
    ] = None,
) -> int:
    if format not in ("text", "json"):
        raise CLIError(f"--format {format!r} is not one of text, json.")
    if sample is not None and sample < 1:
        raise CLIError(f"--sample {sample} is not a number of rows >= 1.")
    pipe = load_pipeline(pipeline, allow_modules=list(allow_module or []))
    parameters = parse_params(pipe, list(param or []))
    estimate = pipe.estimate(parameters, sample=sample, latency_s=latency)
    if format == "json":
        print(json.dumps(estimate.to_dict(), indent=2, default=str))
    else:
        print(estimate)
    return 0

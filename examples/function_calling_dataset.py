"""A verified function-calling dataset (APIGen) from a library of Python functions.

    function library --> APIGenGenerator --> APIGenExecutionChecker --> APIGenSemanticChecker --> KeepColumns

``describe_functions`` reads the library (``examples/function_library/tools.py`` by default;
any ``.py`` file or folder works) into tool specs without importing it. For each function,
the LLM writes a user query and the calls that answer it (``APIGenGenerator``); the calls
are executed against the real functions in a restricted subprocess with a timeout
(``APIGenExecutionChecker``); an LLM judge checks that the calls and their results serve the
query (``APIGenSemanticChecker``). Each row keeps both verdicts;
``--drop-failed`` keeps only rows that passed both, which you want before training.

Run it on a local model (a folder or a hub id)::

    python examples/function_calling_dataset.py --model Qwen/Qwen2.5-1.5B-Instruct

or on any OpenAI-compatible server, with a stronger judge::

    python examples/function_calling_dataset.py --base-url http://127.0.0.1:8000/v1 \\
        --model small-model --judge-model big-model --queries-per-function 3

The ``tools`` column holds the OpenAI-format spec of each row's function;
``alambic.steps.tasks.apigen_utils`` turns specs and calls into the Anthropic and Hermes
formats too.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from alambic.llms.base import LLM
from alambic.pipeline import Pipeline
from alambic.steps import KeepColumns, LoadDataFromDicts, StepInput, StepOutput, step
from alambic.steps.tasks import (
    APIGenExecutionChecker,
    APIGenGenerator,
    APIGenSemanticChecker,
    Task,
)
from alambic.steps.tasks.apigen_utils import function_rows

LIBRARY = Path(__file__).resolve().parent / "function_library" / "tools.py"

EXAMPLES = """QUERY: How long is the sentence "the cat sat on the mat"?
ANSWER: [{"name": "count_words", "arguments": {"sentence": "the cat sat on the mat"}}]

QUERY: What is 12 km in miles, and 3 miles in km?
ANSWER: [{"name": "convert_distance", "arguments": {"value": 12, "unit": "km"}}, {"name": "convert_distance", "arguments": {"value": 3, "unit": "miles"}}]"""
"""Queries and calls for functions not in the library, shown to the generator as a guide."""

OUTPUT_COLUMNS = [
    "func_name",
    "query",
    "answers",
    "tools",
    "execution_result",
    "keep_row_after_execution_check",
    "keep_row_after_semantic_check",
    "thought",
]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="Local folder, hub id or served model name.")
    parser.add_argument("--judge-model", help="The semantic judge's model (default: --model).")
    parser.add_argument("--base-url", help="OpenAI-compatible server; without it, run locally.")
    parser.add_argument("--library", default=str(LIBRARY), help="A .py file or folder of them.")
    parser.add_argument("--queries-per-function", type=int, default=1)
    parser.add_argument("--parallel", type=float, default=0.5, help="Share of multi-call queries.")
    parser.add_argument("--timeout", type=float, default=5.0, help="Seconds per row's calls.")
    parser.add_argument("--max-new-tokens", type=int, default=512)
    parser.add_argument("--drop-failed", action="store_true", help="Keep verified rows only.")
    return parser.parse_args(argv)


def make_llm(args: argparse.Namespace, model: str) -> LLM:
    """An OpenAI-compatible client with ``--base-url``, else a local transformers model."""
    kwargs: dict[str, Any] = {"max_new_tokens": args.max_new_tokens}
    if args.base_url:
        from alambic.llms.openai import OpenAILLM

        return OpenAILLM(model=model, base_url=args.base_url, generation_kwargs=kwargs)
    from alambic.llms.transformers import TransformersLLM

    return TransformersLLM(model=model, generation_kwargs=kwargs)


@step(inputs=["query", "answers"], outputs=["query", "answers"])
def ExpandQueries(inputs: StepInput) -> StepOutput:
    """One row per generated query when the generator wrote several per function."""
    rows = []
    for row in inputs:
        if isinstance(row["query"], list):
            for query, answers in zip(row["query"], row["answers"], strict=True):
                rows.append({**row, "query": query, "answers": answers})
        else:
            rows.append(row)
    yield rows


@step(
    inputs=["keep_row_after_execution_check", "keep_row_after_semantic_check"],
    step_type="global",
)
def DropFailed(inputs: StepInput) -> StepOutput:
    """Keep rows that passed both checks."""
    yield [
        row
        for row in inputs
        if row["keep_row_after_execution_check"] and row["keep_row_after_semantic_check"]
    ]


def build_pipeline(args: argparse.Namespace) -> Pipeline:
    functions = [
        {**row, "examples": EXAMPLES, "tools": row["tools"]} for row in function_rows(args.library)
    ]
    with Pipeline(name="function-calling-dataset") as pipeline:
        load = LoadDataFromDicts(name="load_functions", data=functions)
        generate = APIGenGenerator(
            name="generate_calls",
            llm=make_llm(args, args.model),
            number=args.queries_per_function,
            is_parallel=args.parallel,
        )
        expand = ExpandQueries(name="expand_queries")
        execute = APIGenExecutionChecker(
            name="execute_calls", libpath=args.library, timeout=args.timeout
        )
        judge = APIGenSemanticChecker(
            name="judge_calls", llm=make_llm(args, args.judge_model or args.model)
        )
        keep = KeepColumns(name="keep_columns", columns=OUTPUT_COLUMNS)
        last = load >> generate >> expand >> execute >> judge >> keep
        if args.drop_failed:
            last >> DropFailed(name="drop_failed")
    return pipeline


def main(argv: Sequence[str] | None = None) -> Any:
    """Build and run the pipeline; returns the Distiset."""
    args = parse_args(argv)
    pipeline = build_pipeline(args)
    if not args.base_url:
        # transformers' loading is not thread-safe: load the local models one after another
        for item in pipeline.steps.values():
            if isinstance(item, Task):
                item.llm.load()
    return pipeline.run(use_cache=False)


def show(distiset: Any) -> None:
    for row in distiset["default"]["train"]:
        print(json.dumps(row, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    show(main())

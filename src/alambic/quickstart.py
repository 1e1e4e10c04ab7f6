"""The quickstart: generate a small dataset of answers with a local model.

    python -m alambic.quickstart                         # default model, downloaded once
    python -m alambic.quickstart --model ./my-model      # a local model folder
    python -m alambic.quickstart --base-url http://127.0.0.1:8000/v1 --model my-served-model

The result is saved with ``Distiset.save_to_disk`` and a few rows are printed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from alambic.errors import AlambicError

if TYPE_CHECKING:
    from alambic.distiset import Distiset
    from alambic.llms.base import LLM
    from alambic.pipeline import Pipeline

DEFAULT_MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"

INSTRUCTIONS = [
    "What's the capital of Spain?",
    "Give three tips for writing clear emails.",
    "Explain what a prime number is to a ten-year-old.",
    "Write a haiku about autumn rain.",
    "What is the difference between a list and a tuple in Python?",
    "Suggest a name for a bakery that sells only bread.",
]


def build_llm(model: str, base_url: str | None, max_new_tokens: int) -> LLM:
    """A local transformers model, or any OpenAI-compatible server when ``base_url`` is set."""
    generation = {"max_new_tokens": max_new_tokens}
    if base_url:
        from alambic.llms.openai import OpenAILLM

        return OpenAILLM(model=model, base_url=base_url, generation_kwargs=generation)
    from alambic.llms.transformers import TransformersLLM

    return TransformersLLM(model=model, generation_kwargs=generation)


def build_pipeline(llm: LLM, instructions: Sequence[str] = INSTRUCTIONS) -> Pipeline:
    from alambic.pipeline import Pipeline
    from alambic.steps import LoadDataFromDicts
    from alambic.steps.tasks import TextGeneration

    with Pipeline(name="quickstart", description="Answers to a few instructions") as pipeline:
        load = LoadDataFromDicts(data=[{"instruction": i} for i in instructions], batch_size=8)
        generate = TextGeneration(name="generate", llm=llm, input_batch_size=8)
        load >> generate
    return pipeline


def run(argv: Sequence[str] | None = None) -> Distiset:
    """Parse ``argv``, run the pipeline, save and print the dataset; return it."""
    parser = argparse.ArgumentParser(
        prog="python -m alambic.quickstart",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=f"hub id or local folder (default {DEFAULT_MODEL}); with --base-url, the served model's name",
    )
    parser.add_argument(
        "--base-url",
        default=None,
        help="an OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1",
    )
    parser.add_argument(
        "--num-rows", type=int, default=len(INSTRUCTIONS), help="how many instructions to answer"
    )
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument(
        "--output", default="quickstart-dataset", help="folder the dataset is saved to"
    )
    args = parser.parse_args(argv)
    instructions = [INSTRUCTIONS[i % len(INSTRUCTIONS)] for i in range(args.num_rows)]
    llm = build_llm(args.model, args.base_url, args.max_new_tokens)
    pipeline = build_pipeline(llm, instructions)
    distiset = pipeline.run(use_cache=False)
    distiset.save_to_disk(Path(args.output))
    dataset = distiset["default"]["train"]
    for row in dataset.select(range(min(3, len(dataset)))):
        print(f"\n> {row['instruction']}\n{row['generation']}")
    print(f"\n{len(dataset)} rows saved to {args.output}/ (load them with Distiset.load_from_disk)")
    return distiset


def main(argv: Sequence[str] | None = None) -> int:
    try:
        run(argv)
    except AlambicError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""A preference (DPO) dataset from scratch: two LLMs answer, a judge rates, pairs are built.

    instructions --> TextGeneration (LLM A) --+
                 \\-> TextGeneration (LLM B) --+--> GroupColumns --> UltraFeedback --> FormatTextGenerationDPO

Each instruction is answered by two generators; ``GroupColumns`` gathers their answers into
the ``generations`` list (and their model names into ``generation_models``) that the judge
reads -- ``CombineOutputs`` would not do here, since both branches write the same
``generation`` column and it keeps only the last. ``UltraFeedback`` rates every answer
1-5, and ``FormatTextGenerationDPO`` turns the ratings into ``chosen``/``rejected``
conversations (the layout of ``HuggingFaceH4/ultrafeedback_binarized``), ready for TRL's
``DPOTrainer`` and for ``--push-to-hub``.

Run it on a local model (a folder or a hub id; the two generators sample at different
temperatures and seeds)::

    python examples/preference_dataset.py --model Qwen/Qwen2.5-0.5B-Instruct

or on any OpenAI-compatible server (vLLM, TGI, llama.cpp, Ollama...), with a different model
per generator and a stronger judge::

    python examples/preference_dataset.py --base-url http://127.0.0.1:8000/v1 \\
        --model small-model --model-b other-model --judge-model big-model

Rows the judge could not rate, or whose answers tie, are kept with ``pair_status`` saying
why (``--drop-unpaired`` removes them, which you want before training).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from alambic.llms.base import LLM
from alambic.pipeline import Pipeline
from alambic.steps import FormatTextGenerationDPO, GroupColumns, KeepColumns, LoadDataFromDicts
from alambic.steps.tasks import Task, TextGeneration, UltraFeedback

INSTRUCTIONS = [
    "Explain in two sentences why the sky is blue.",
    "Write a haiku about a cat that learns to code.",
    "What is the difference between a list and a tuple in Python?",
    "Give three tips for writing a clear bug report.",
]

OUTPUT_COLUMNS = [
    "prompt",
    "prompt_id",
    "chosen",
    "chosen_model",
    "chosen_rating",
    "rejected",
    "rejected_model",
    "rejected_rating",
    "pair_status",
]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="Local folder, hub id or served model name.")
    parser.add_argument("--model-b", help="Second generator's model (default: --model).")
    parser.add_argument("--judge-model", help="The judge's model (default: --model).")
    parser.add_argument("--base-url", help="OpenAI-compatible server; without it, run locally.")
    parser.add_argument("--aspect", default="overall-rating", help="UltraFeedback aspect.")
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--judge-max-new-tokens", type=int, default=512)
    parser.add_argument(
        "--drop-unpaired", action="store_true", help="Remove ties and unrated rows."
    )
    parser.add_argument("--push-to-hub", metavar="REPO", help="Upload the dataset to this repo.")
    parser.add_argument("--private", action="store_true", help="Make the Hub dataset private.")
    parser.add_argument("--instructions", nargs="+", default=INSTRUCTIONS)
    return parser.parse_args(argv)


def make_llm(args: argparse.Namespace, model: str, **generation_kwargs: Any) -> LLM:
    """An OpenAI-compatible client with ``--base-url``, else a local transformers model."""
    if args.base_url:
        from alambic.llms.openai import OpenAILLM

        return OpenAILLM(model=model, base_url=args.base_url, generation_kwargs=generation_kwargs)
    from alambic.llms.transformers import TransformersLLM

    return TransformersLLM(model=model, generation_kwargs=generation_kwargs)


def build_pipeline(args: argparse.Namespace) -> Pipeline:
    with Pipeline(name="preference-dataset") as pipeline:
        load = LoadDataFromDicts(
            name="load_instructions", data=[{"instruction": i} for i in args.instructions]
        )
        generators = [
            TextGeneration(
                name="generate_a",
                llm=make_llm(
                    args, args.model, max_new_tokens=args.max_new_tokens, temperature=0.7, seed=1
                ),
            ),
            TextGeneration(
                name="generate_b",
                llm=make_llm(
                    args,
                    args.model_b or args.model,
                    max_new_tokens=args.max_new_tokens,
                    temperature=1.0,
                    seed=2,
                ),
            ),
        ]
        group = GroupColumns(
            name="group_generations",
            columns=["generation", "model_name"],
            output_columns=["generations", "generation_models"],
        )
        judge = UltraFeedback(
            name="ultrafeedback",
            aspect=args.aspect,
            llm=make_llm(
                args,
                args.judge_model or args.model,
                max_new_tokens=args.judge_max_new_tokens,
            ),
        )
        pairs = FormatTextGenerationDPO(
            name="format_dpo",
            tie_strategy="drop" if args.drop_unpaired else "flag",
            add_pair_status=True,
        )
        keep = KeepColumns(name="keep_columns", columns=OUTPUT_COLUMNS)
        load >> generators >> group >> judge >> pairs >> keep
    return pipeline


def main(argv: Sequence[str] | None = None) -> Any:
    """Build and run the pipeline; returns the Distiset (pushed first with --push-to-hub)."""
    args = parse_args(argv)
    pipeline = build_pipeline(args)
    if not args.base_url:
        # Load the local models one after another: transformers' loading is not thread-safe
        # and the executor loads steps in parallel (load() is a no-op once loaded).
        for step in pipeline.steps.values():
            if isinstance(step, Task):
                step.llm.load()
    distiset = pipeline.run(use_cache=False)
    if args.push_to_hub:
        distiset.push_to_hub(args.push_to_hub, private=args.private)
    return distiset


if __name__ == "__main__":
    main()

"""A process-reward (PRM) dataset for math, labelled without humans (Math-Shepherd).

    problems --> golden answer --> MathShepherdGenerator (M solutions) --> MathShepherdCompleter --> FormatPRM

Each problem comes with its reference answer (as in GSM8K or MATH); ``--golden-model``
instead has a strong model write a golden solution. A solver model writes ``--solutions``
step-by-step solutions per problem; the completer continues every solution from every step
``--completions`` times, and a step is labelled good when a continuation reaches the
reference answer. ``FormatPRM`` writes one row per solution, in the Math-Shepherd layout
(``input`` / ``label`` with the ``ки`` step token) or TRL's (``prompt`` / ``completions`` /
``labels``, for ``trl.PRMTrainer``) with ``--format trl``.

Run it on a local model (a folder or a hub id)::

    python examples/prm_dataset.py --model Qwen/Qwen2.5-Math-1.5B-Instruct

or on an OpenAI-compatible server::

    python examples/prm_dataset.py --base-url http://127.0.0.1:8000/v1 --model my-model

``--no-format`` stops after the completer, one row per problem, with the labelled solutions
and, for a problem that failed (unreadable solutions, failed requests), the reason in
``alambic_metadata``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from alambic.llms.base import LLM
from alambic.pipeline import Pipeline
from alambic.steps import LoadDataFromDicts, StepInput, StepOutput, step
from alambic.steps.tasks import FormatPRM, MathShepherdCompleter, MathShepherdGenerator, Task

PROBLEMS = [
    {
        "instruction": "A shop sells pens in packs of 6. Ana buys 4 packs and gives away 9 pens. "
        "How many pens does she keep?",
        "answer": "15",
    },
    {
        "instruction": "A cyclist rides 18 km per hour for 2.5 hours. How far does she ride, "
        "in km?",
        "answer": "45",
    },
    {
        "instruction": "Tom has 3 times as many marbles as Lea. Together they have 48. How many "
        "marbles does Lea have?",
        "answer": "12",
    },
]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="The solver and completer model.")
    parser.add_argument("--golden-model", help="Write golden solutions with this model.")
    parser.add_argument("--base-url", help="OpenAI-compatible server; without it, run locally.")
    parser.add_argument("--solutions", type=int, default=2, help="Solutions per problem (M).")
    parser.add_argument("--completions", type=int, default=4, help="Completions per step (N).")
    parser.add_argument("--format", choices=["math-shepherd", "trl"], default="math-shepherd")
    parser.add_argument("--max-new-tokens", type=int, default=512)
    parser.add_argument("--no-format", action="store_true", help="Stop after the completer.")
    return parser.parse_args(argv)


def make_llm(args: argparse.Namespace, model: str, **generation_kwargs: Any) -> LLM:
    """An OpenAI-compatible client with ``--base-url``, else a local transformers model."""
    kwargs: dict[str, Any] = {"max_new_tokens": args.max_new_tokens, **generation_kwargs}
    if args.base_url:
        from alambic.llms.openai import OpenAILLM

        return OpenAILLM(model=model, base_url=args.base_url, generation_kwargs=kwargs)
    from alambic.llms.transformers import TransformersLLM

    return TransformersLLM(model=model, generation_kwargs=kwargs)


@step(inputs=["answer"], outputs=["golden_solution"])
def GoldenFromAnswer(inputs: StepInput) -> StepOutput:
    """The reference answer as a golden solution (its answer line is all the completer reads)."""
    yield [{**row, "golden_solution": [f"The answer is: {row['answer']}"]} for row in inputs]


def build_pipeline(args: argparse.Namespace) -> Pipeline:
    with Pipeline(name="prm-dataset") as pipeline:
        load = LoadDataFromDicts(name="load_problems", data=PROBLEMS)
        golden: Any
        if args.golden_model:
            golden = MathShepherdGenerator(
                name="golden_solution", llm=make_llm(args, args.golden_model)
            )
        else:
            golden = GoldenFromAnswer(name="golden_solution")
        solve = MathShepherdGenerator(
            name="solve",
            llm=make_llm(args, args.model, temperature=0.8),
            M=args.solutions,
        )
        complete = MathShepherdCompleter(
            name="complete",
            llm=make_llm(args, args.model, temperature=0.8),
            N=args.completions,
        )
        last = load >> golden >> solve >> complete
        if not args.no_format:
            last >> FormatPRM(name="format_prm", format=args.format)
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


if __name__ == "__main__":
    for row in main()["default"]["train"]:
        print(row)

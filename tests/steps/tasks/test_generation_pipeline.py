"""Every generation task inside a real pipeline: with the fake LLM, and with a tiny local model."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, ClassVar

import pytest

from alambic.llms.fake import FakeLLM
from alambic.llms.typing import ChatType
from alambic.pipeline import Pipeline
from alambic.steps import LoadDataFromDicts
from alambic.steps.tasks import (
    EvolComplexity,
    EvolInstruct,
    EvolInstructGenerator,
    EvolQuality,
    GenerateSentencePair,
    Genstruct,
    InstructionBacktranslation,
    Magpie,
    MagpieGenerator,
    SelfInstruct,
    StructuredGeneration,
    TextClassification,
)

SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
}
ROWS = [
    {
        "input": "gardening",
        "instruction": "Name a French city.",
        "response": "Paris.",
        "generation": "Paris.",
        "title": "Paris",
        "content": "Paris is the capital of France.",
        "anchor": "Paris is big.",
        "text": "I love this city!",
        "structured_output": SCHEMA,
    },
    {
        "input": "FAIL",
        "instruction": "FAIL me.",
        "response": "FAIL",
        "generation": "FAIL",
        "title": "FAIL",
        "content": "FAIL",
        "anchor": "FAIL",
        "text": "FAIL",
        "structured_output": SCHEMA,
    },
]


def good_reply(messages: ChatType, index: int) -> str:
    """A well-formed reply for whichever generation task sent ``messages``."""
    text = "\n".join(m["content"] for m in messages)
    if "FAIL" in messages[-1]["content"] and "<prompt>" not in text:
        return "%%% !!! ###"
    if "<prompt>" in text or "<response>" in text:
        inner = re.search(r"<(?:prompt|response)>\n(.*?)\n</", text, re.DOTALL)
        assert inner is not None
        return f"{inner.group(1)} Explain why, in two steps."
    if "[[[Title]]]" in text:
        return "What is the capital of France? [[[Assistant]]] Paris."
    if "Rate how well" in text:
        return "Good and focused.\nScore: 5"
    if "sentence-embedding" in text:
        return "## Positive\nParis is large.\n## Negative\nParis is tiny."
    if "Classify the" in text:
        return '{"labels": ["positive"]}'
    if "JSON schema" in text:
        return 'Here: {"city": "Lyon"}'
    if "requests a user could make" in text:
        return "1. How do I plant tulips?\n2. When should I water roses?"
    return f"Answer: {messages[-1]['content']}"


class FakeCompletionLLM(FakeLLM):
    """The fake LLM with raw completions, for Magpie."""

    supports_raw_completion: ClassVar[bool] = True

    def complete(self, prompts: Any, num_generations: int = 1, **kwargs: Any) -> Any:
        return [
            {
                "generations": [
                    f"Question {j} about {len(p)}<|im_end|>" for j in range(num_generations)
                ],
                "statistics": {
                    "input_tokens": [1] * num_generations,
                    "output_tokens": [1] * num_generations,
                },
            }
            for p in prompts
        ]


def generation_tasks(make_llm: Any, completion_llm: Any) -> dict[str, Any]:
    """Factories of every generation task, by step name (build them inside a Pipeline)."""
    return {
        "self_instruct": lambda: SelfInstruct(
            name="self_instruct", llm=make_llm(), num_instructions=2
        ),
        "evol_instruct": lambda: EvolInstruct(
            name="evol_instruct", llm=make_llm(), num_evolutions=2, generate_answers=True
        ),
        "evol_complexity": lambda: EvolComplexity(name="evol_complexity", llm=make_llm()),
        "evol_quality": lambda: EvolQuality(name="evol_quality", llm=make_llm()),
        "genstruct": lambda: Genstruct(name="genstruct", llm=make_llm()),
        "backtranslation": lambda: InstructionBacktranslation(
            name="backtranslation", llm=make_llm()
        ),
        "pairs": lambda: GenerateSentencePair(
            name="pairs", llm=make_llm(), action="paraphrase", triplet=True
        ),
        "classify": lambda: TextClassification(
            name="classify",
            llm=make_llm(),
            available_labels=["positive", "negative"],
            use_structured_output=False,
        ),
        "structured": lambda: StructuredGeneration(
            name="structured", llm=make_llm(), use_structured_output=False
        ),
        "magpie": lambda: Magpie(
            name="magpie",
            llm=completion_llm(),
            pre_query_template="chatml",
            conversation_output=True,
        ),
    }


@pytest.mark.slow  # ten steps in one pipeline: 2-4 s on a busy 2-core machine
def test_generation_tasks_in_a_pipeline_with_the_fake_llm() -> None:
    with Pipeline(name="generation-fake") as pipeline:
        load = LoadDataFromDicts(data=ROWS)
        factories = generation_tasks(lambda: FakeLLM(reply_fn=good_reply), FakeCompletionLLM)
        load >> [make() for make in factories.values()]
    distiset = pipeline.run(use_cache=False, show_progress=False)
    data = {name: distiset[name]["train"] for name in distiset}
    assert data["self_instruct"][0]["instructions"] == [
        "How do I plant tulips?",
        "When should I water roses?",
    ]
    evolved = data["evol_instruct"][0]
    assert evolved["evolved_instruction"] == (
        "Name a French city. Explain why, in two steps. Explain why, in two steps."
    )
    assert evolved["answer"] == f"Answer: {evolved['evolved_instruction']}"
    assert data["evol_complexity"][0]["evolved_instruction"].endswith("in two steps.")
    assert data["evol_quality"][0]["evolved_response"] == "Paris. Explain why, in two steps."
    assert (data["genstruct"][0]["user"], data["genstruct"][0]["assistant"]) == (
        "What is the capital of France?",
        "Paris.",
    )
    assert (data["backtranslation"][0]["score"], data["backtranslation"][0]["reason"]) == (
        5,
        "Good and focused.",
    )
    assert data["pairs"][0]["negative"] == "Paris is tiny."
    assert data["classify"][0]["labels"] == "positive"
    assert json.loads(data["structured"][0]["generation"]) == {"city": "Lyon"}
    assert data["magpie"][0]["conversation"][0]["content"].startswith("Question 0")
    # a reply that cannot be parsed is a row with None outputs and the reason
    failing = {
        "self_instruct": "instructions",
        "genstruct": "user",
        "backtranslation": "score",
        "pairs": "positive",
        "classify": "labels",
        "structured": "generation",
    }
    for name, column in failing.items():
        row = data[name][1]
        assert row[column] is None, name
        assert row["alambic_metadata"][f"error_{name}"]["message"], name
    assert len(data["magpie"]) == 2


def test_generator_tasks_in_a_pipeline() -> None:
    with Pipeline(name="generation-evol-generator") as pipeline:
        EvolInstructGenerator(
            name="evol_gen",
            llm=FakeLLM(reply_fn=good_reply),
            num_instructions=3,
            seed_instructions=["Name a French city."],
            batch_size=2,
        )
    # a pipeline with a single leaf step names its dataset "default"
    instructions = pipeline.run(use_cache=False, show_progress=False)["default"]["train"][
        "instruction"
    ]
    assert len(instructions) == 3
    assert len(set(instructions)) == 3
    assert all(i.startswith("Name a French city. Explain why") for i in instructions)
    with Pipeline(name="generation-magpie-generator") as pipeline:
        MagpieGenerator(
            name="magpie_gen",
            llm=FakeCompletionLLM(),
            num_rows=3,
            batch_size=2,
            pre_query_template="chatml",
            only_instruction=True,
        )
    distiset = pipeline.run(use_cache=False, show_progress=False)
    # one request with n=2 for the first batch, n=1 for the second
    assert distiset["default"]["train"]["instruction"] == [
        "Question 0 about 17",
        "Question 1 about 17",
        "Question 0 about 17",
    ]


TASK_NAMES = [
    "self_instruct",
    "evol_instruct",
    "evol_complexity",
    "evol_quality",
    "genstruct",
    "backtranslation",
    "pairs",
    "classify",
    "structured",
    "magpie",
]


# One pipeline per task: TransformersLLM.load() is not safe to run concurrently (two local
# models loading in the same pipeline fail with "Cannot copy out of meta tensor").
@pytest.mark.parametrize("name", TASK_NAMES)
def test_each_generation_task_in_a_pipeline_with_a_tiny_local_model(
    tiny_model_path: Path, name: str
) -> None:
    from alambic.llms.transformers import TransformersLLM

    def local() -> TransformersLLM:
        return TransformersLLM(
            model=str(tiny_model_path),
            generation_kwargs={"max_new_tokens": 8, "min_new_tokens": 2, "seed": 0},
        )

    with Pipeline(name=f"generation-tiny-{name}") as pipeline:
        load = LoadDataFromDicts(data=ROWS[:1])
        task = generation_tasks(local, local)[name]()
        load >> task
    rows = pipeline.run(use_cache=False, show_progress=False)["default"]["train"]
    assert len(rows) == 1
    row = rows[0]
    assert row["model_name"] == str(tiny_model_path)
    meta = row["alambic_metadata"]
    assert isinstance(meta[f"raw_output_{name}"], str)
    assert meta[f"statistics_{name}"]["output_tokens"] >= 2
    # a random model writes gibberish: the row is either fully parsed or failed with a reason
    outputs = [c for c in task.get_outputs() if c != "model_name"]
    error = meta.get(f"error_{name}")
    if error is None:
        assert all(row[c] is not None for c in outputs)
    else:
        assert all(row[c] is None for c in outputs)
        assert error["message"]
    if name == "magpie" and error is None:
        assert [m["role"] for m in row["conversation"]] == ["user", "assistant"]

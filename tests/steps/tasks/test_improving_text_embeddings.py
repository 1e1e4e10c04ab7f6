"""The seven embedding-data tasks (Wang et al., 2024): prompts, parsers and generator rows."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from alambic.llms.fake import FakeLLM
from alambic.steps.tasks import (
    BitextRetrievalGenerator,
    EmbeddingTaskGenerator,
    GenerateLongTextMatchingData,
    GenerateShortTextMatchingData,
    GenerateTextClassificationData,
    GenerateTextRetrievalData,
    MonolingualTripletGenerator,
)
from alambic.steps.tasks._parsing import ReplyParseError

EXAMPLE_TASKS: list[tuple[Any, dict[str, str]]] = [
    (
        GenerateTextRetrievalData,
        {"user_query": "q", "positive_document": "p", "hard_negative_document": "n"},
    ),
    (GenerateShortTextMatchingData, {"input": "a", "positive_document": "b"}),
    (GenerateLongTextMatchingData, {"input": "a", "positive_document": "b"}),
    (GenerateTextClassificationData, {"input_text": "t", "label": "l", "misleading_label": "m"}),
]


@pytest.mark.parametrize(("cls", "fields"), EXAMPLE_TASKS)
def test_example_tasks_columns_prompt_and_parsers(cls: Any, fields: dict[str, str]) -> None:
    task = cls(name="t", llm=FakeLLM(), language="French")
    assert task.get_outputs() == {**dict.fromkeys(fields, True), "model_name": True}
    assert task.get_inputs() == {"task": True}
    prompt = task.format_input({"task": "Find recipes for a dish."})[0]["content"]
    assert "Find recipes for a dish." in prompt
    assert "French" in prompt
    for name in fields:
        assert f'"{name}"' in prompt
    reply = json.dumps(fields)
    assert task.format_output(reply) == fields
    prosy = f"Sure! Here is the example:\n```json\n{reply}\n```\nLet me know."
    assert task.format_output(prosy) == fields
    with pytest.raises(ReplyParseError):
        task.parse_output(reply[: len(reply) // 2])  # truncated
    with pytest.raises(ReplyParseError):
        task.parse_output("I'd rather not.")  # garbage
    missing = dict(fields)
    missing[next(iter(fields))] = ""
    with pytest.raises(ReplyParseError, match="no text field"):
        task.parse_output(json.dumps(missing))


def test_retrieval_attributes_are_drawn_per_task_reproducibly() -> None:
    a = GenerateTextRetrievalData(name="r", llm=FakeLLM())
    first = a.attributes("task one")
    assert first == a.attributes("task one")
    assert first["query_type"] in {"extremely long-tail", "long-tail", "common"}
    fixed = GenerateTextRetrievalData(name="r", llm=FakeLLM(), num_words=50, clarity="clear")
    assert fixed.attributes("x")["num_words"] == 50
    assert "about 50 words" in fixed.format_input({"task": "x"})[0]["content"]


def run_generator(task: Any) -> list[dict[str, Any]]:
    task.load()
    return [row for batch, _ in task.process() for row in batch]


def test_task_generator_lists_or_flattens_tasks() -> None:
    reply = 'Here are some:\n["Retrieve laws for a legal question.", "Find a recipe."]'
    llm = FakeLLM()
    llm.enqueue(reply)
    rows = run_generator(EmbeddingTaskGenerator(name="brainstorm", llm=llm))
    assert rows[0]["tasks"] == ["Retrieve laws for a legal question.", "Find a recipe."]
    assert "retrieval tasks" in llm.history[0]["messages"][-1]["content"]
    llm = FakeLLM()
    llm.enqueue(reply, "[]")
    flat = EmbeddingTaskGenerator(
        name="b", llm=llm, flatten_tasks=True, num_generations=2, category="text-classification"
    )
    assert flat.get_outputs() == {"task": True, "model_name": True}
    rows = run_generator(flat)
    assert [r["task"] for r in rows] == [
        "Retrieve laws for a legal question.",
        "Find a recipe.",
        None,
    ]
    assert "lists no task" in rows[2]["alambic_metadata"]["error_b"]["message"]


@pytest.mark.parametrize(
    "task",
    [
        lambda llm: MonolingualTripletGenerator(
            name="tri", llm=llm, language="German", num_generations=2
        ),
        lambda llm: BitextRetrievalGenerator(
            name="tri", llm=llm, target_language="Spanish", num_generations=2
        ),
    ],
)
def test_triplet_generators(task: Callable[[Any], Any]) -> None:
    llm = FakeLLM()
    llm.enqueue('{"S1": "a", "S2": "b", "S3": "c"}', '{"S1": "a", "S2": "b"')
    rows = run_generator(task(llm))
    assert [(r["S1"], r["S2"], r["S3"]) for r in rows] == [("a", "b", "c"), (None, None, None)]
    assert rows[1]["alambic_metadata"]["error_tri"]["message"]
    prompt = llm.history[0]["messages"][-1]["content"]
    assert ("German" in prompt) or ("Spanish" in prompt)
    assert '"S3"' in prompt
    assert rows[0]["model_name"] == "fake-model"

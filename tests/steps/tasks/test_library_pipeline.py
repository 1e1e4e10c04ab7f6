"""The issue-16 tasks inside real pipelines: with the fake LLM (well-formed and garbage
replies), and each with the tiny local transformers model."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from alambic.llms.fake import FakeLLM
from alambic.llms.typing import ChatType
from alambic.pipeline import Pipeline
from alambic.steps import LoadDataFromDicts
from alambic.steps.tasks import (
    CLAIR,
    URIAL,
    APIGenGenerator,
    APIGenSemanticChecker,
    BitextRetrievalGenerator,
    EmbeddingTaskGenerator,
    EvolComplexityGenerator,
    GenerateLongTextMatchingData,
    GenerateShortTextMatchingData,
    GenerateTextClassificationData,
    GenerateTextRetrievalData,
    MathShepherdCompleter,
    MathShepherdGenerator,
    MonolingualTripletGenerator,
)

CALLS = '[{"name": "add", "arguments": {"a": 3, "b": 4}}]'
ROWS: list[dict[str, Any]] = [
    {
        "examples": 'QUERY: 1 plus 1?\nANSWER: [{"name": "add", "arguments": {"a": 1, "b": 1}}]',
        "func_name": "add",
        "func_desc": "Adds two integers.",
        "query": "What is 3 plus 4?",
        "answers": CALLS,
        "execution_result": ["7"],
        "instruction": "What is 3 plus 4, doubled?",
        "golden_solution": ["Step 1: 3 + 4 = 7.", "Step 2: 7 * 2 = 14.", "The answer is: 14"],
        "solutions": [["Step 1: 3 + 4 = 7.", "Step 2: 7 * 2 = 14.", "The answer is: 14"]],
        "task": "Retrieve recipes that answer a cooking question.",
        "student_solution": "It is 15.",
    },
]
ROWS.append({k: ("FAIL" if isinstance(v, str) else v) for k, v in ROWS[0].items()})

EXAMPLES = {
    "retrieval example": {
        "user_query": "quick vegan dinner",
        "positive_document": "A 20-minute chickpea curry.",
        "hard_negative_document": "The history of curry.",
    },
    "short-text matching": {"input": "How to boil an egg?", "positive_document": "Boil it 8 min."},
    "long-text matching": {"input": "A long question.", "positive_document": "A long answer."},
    "text-classification example": {
        "input_text": "Great soup!",
        "label": "positive",
        "misleading_label": "neutral",
    },
}


def good_reply(messages: ChatType, index: int) -> str:
    text = "\n".join(m["content"] for m in messages)
    last = messages[-1]["content"]
    if "FAIL" in last:
        return "%%% garbage %%%"
    if "different request" in last:
        return json.dumps([{"query": "Add 5 and 6.", "answers": json.loads(CALLS)}])
    if "Does this data pass?" in last:
        return 'Checked.\n{"thought": "", "passes": "yes"}'
    if "Continue the solution" in last:
        return "Step 2: 7 * 2 = 14.\nThe answer is: 14"
    if "2 times" in last:
        return "Step 1: 3 + 4 = 7.\nThe answer is: 7\n---\nStep 1: 7 * 2 = 14.\nThe answer is: 14"
    if last.startswith("Problem:"):
        return "Step 1: 3 + 4 = 7.\nStep 2: 7 * 2 = 14.\nThe answer is: 14"
    for marker, fields in EXAMPLES.items():
        if marker in last:
            return "```json\n" + json.dumps(fields) + "\n```"
    if "## Corrected answer" in last:
        return "## Reasoning\n3 + 4 doubled is 14.\n\n## Corrected answer\nIt is 14."
    if last.startswith("# Instructions"):
        return "Fourteen.\n```"
    if "Brainstorm" in text:
        return '["Find recipes.", "Find laws."]'
    if '"S1"' in text:
        return '{"S1": "a cat", "S2": "a feline", "S3": "a cart"}'
    inner = re.search(r"<prompt>\n(.*?)\n</", text, re.DOTALL)
    if inner is not None:  # an evolution request
        return f"{inner.group(1)} Explain each step."
    return f"{last} Explain each step."


def tasks(make_llm: Any) -> dict[str, Any]:
    return {
        "apigen_gen": lambda: APIGenGenerator(name="apigen_gen", llm=make_llm()),
        "apigen_judge": lambda: APIGenSemanticChecker(name="apigen_judge", llm=make_llm()),
        "golden": lambda: MathShepherdGenerator(name="golden", llm=make_llm()),
        "solver": lambda: MathShepherdGenerator(name="solver", llm=make_llm(), M=2),
        "completer": lambda: MathShepherdCompleter(name="completer", llm=make_llm(), N=2),
        "retrieval": lambda: GenerateTextRetrievalData(name="retrieval", llm=make_llm()),
        "short": lambda: GenerateShortTextMatchingData(name="short", llm=make_llm()),
        "long": lambda: GenerateLongTextMatchingData(name="long", llm=make_llm()),
        "classification": lambda: GenerateTextClassificationData(
            name="classification", llm=make_llm()
        ),
        "clair": lambda: CLAIR(name="clair", llm=make_llm()),
        "urial": lambda: URIAL(name="urial", llm=make_llm()),
    }


@pytest.mark.slow
def test_every_task_in_one_pipeline_with_the_fake_llm() -> None:
    with Pipeline(name="library-fake") as pipeline:
        load = LoadDataFromDicts(data=ROWS)
        load >> [make() for make in tasks(lambda: FakeLLM(reply_fn=good_reply)).values()]
    distiset = pipeline.run(use_cache=False, show_progress=False)
    data = {name: distiset[name]["train"].to_list() for name in distiset}
    gen = data["apigen_gen"][0]
    assert (gen["query"], json.loads(gen["answers"])) == ("Add 5 and 6.", json.loads(CALLS))
    assert data["apigen_judge"][0]["keep_row_after_semantic_check"] is True
    assert data["golden"][0]["golden_solution"][-1] == "The answer is: 14"
    assert len(data["solver"][0]["solutions"]) == 2
    assert data["completer"][0]["solutions"] == [["Step 1: 3 + 4 = 7. +", "Step 2: 7 * 2 = 14. +"]]
    # garbage continuations never reach the golden answer: the first step is labelled bad
    assert data["completer"][1]["solutions"][0][0].endswith(" -")
    assert data["retrieval"][0]["hard_negative_document"] == "The history of curry."
    assert data["short"][0]["positive_document"] == "Boil it 8 min."
    assert data["long"][0]["input"] == "A long question."
    assert data["classification"][0]["misleading_label"] == "neutral"
    assert (data["clair"][0]["revision"], data["clair"][0]["rational"]) == (
        "It is 14.",
        "3 + 4 doubled is 14.",
    )
    assert data["urial"][0]["generation"] == "Fourteen."
    failing = {
        "apigen_gen": "query",
        "apigen_judge": "keep_row_after_semantic_check",
        "golden": "golden_solution",
        "solver": "solutions",
        "retrieval": "user_query",
        "short": "input",
        "long": "positive_document",
        "classification": "label",
        "clair": "revision",
    }
    for name, column in failing.items():
        row = data[name][1]
        assert row[column] is None, name
        assert row["alambic_metadata"][f"error_{name}"]["message"], name


def run_alone(name: str, make: Any) -> Any:
    with Pipeline(name=f"library-{name}") as pipeline:
        make()
    return pipeline.run(use_cache=False, show_progress=False)["default"]["train"]


def test_generator_tasks_in_a_pipeline_with_the_fake_llm() -> None:
    with Pipeline(name="library-brainstorm") as pipeline:
        EmbeddingTaskGenerator(
            name="brainstorm", llm=FakeLLM(reply_fn=good_reply), flatten_tasks=True
        ) >> GenerateTextRetrievalData(name="retrieval", llm=FakeLLM(reply_fn=good_reply))
    retrieval = pipeline.run(use_cache=False, show_progress=False)["default"]["train"]
    assert retrieval["task"] == ["Find recipes.", "Find laws."]
    assert retrieval["user_query"] == ["quick vegan dinner"] * 2
    mono = run_alone(
        "mono",
        lambda: MonolingualTripletGenerator(
            name="mono", llm=FakeLLM(reply_fn=good_reply), num_generations=2
        ),
    )
    assert mono["S2"] == ["a feline", "a feline"]
    bitext = run_alone(
        "bitext",
        lambda: BitextRetrievalGenerator(
            name="bitext", llm=FakeLLM(reply_fn=good_reply), target_language="French"
        ),
    )
    assert bitext["S3"] == ["a cart"]
    evolved = run_alone(
        "evc",
        lambda: EvolComplexityGenerator(
            name="evc",
            llm=FakeLLM(reply_fn=good_reply),
            num_instructions=3,
            seed_instructions=["Name a French city."],
        ),
    )
    assert len(evolved["instruction"]) == 3
    assert all(i.startswith("Name a French city.") for i in evolved["instruction"])


TASK_NAMES = list(tasks(FakeLLM))


# one pipeline per task: TransformersLLM.load() is not safe to run concurrently
@pytest.mark.slow
@pytest.mark.parametrize("name", TASK_NAMES)
def test_each_task_in_a_pipeline_with_a_tiny_local_model(tiny_model_path: Path, name: str) -> None:
    from alambic.llms.transformers import TransformersLLM

    def local() -> TransformersLLM:
        return TransformersLLM(
            model=str(tiny_model_path),
            generation_kwargs={"max_new_tokens": 8, "min_new_tokens": 2, "seed": 0},
        )

    with Pipeline(name=f"library-tiny-{name}") as pipeline:
        load = LoadDataFromDicts(data=ROWS[:1])
        task = tasks(local)[name]()
        load >> task
    rows = pipeline.run(use_cache=False, show_progress=False)["default"]["train"].to_list()
    assert len(rows) == 1
    row = rows[0]
    assert row["model_name"] == str(tiny_model_path)
    meta = row["alambic_metadata"]
    assert meta[f"statistics_{name}"]["output_tokens"] >= 2
    outputs = [c for c in task.get_outputs() if c != "model_name"]
    error = meta.get(f"error_{name}")
    # a random model writes gibberish: the row is either fully parsed or failed with a reason
    if error is None:
        assert all(row[c] is not None for c in outputs), name
    else:
        assert all(row[c] is None for c in outputs), name
        assert error["message"]
    if name == "completer" and error is None:
        # gibberish never reaches 14: every intermediate step is labelled bad
        assert row["solutions"][0][0].endswith(" -")


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["brainstorm", "triplet"])
def test_generator_tasks_with_a_tiny_local_model(tiny_model_path: Path, kind: str) -> None:
    from alambic.llms.transformers import TransformersLLM

    llm = TransformersLLM(
        model=str(tiny_model_path),
        generation_kwargs={"max_new_tokens": 8, "min_new_tokens": 2, "seed": 0},
    )
    with Pipeline(name=f"library-tiny-gen-{kind}") as pipeline:
        if kind == "brainstorm":
            EmbeddingTaskGenerator(name="gen", llm=llm, num_generations=2)
        else:
            MonolingualTripletGenerator(name="gen", llm=llm, num_generations=2)
    rows = pipeline.run(use_cache=False, show_progress=False)["default"]["train"].to_list()
    assert len(rows) == 2
    for row in rows:
        assert row["model_name"] == str(tiny_model_path)
        meta = row["alambic_metadata"]
        assert isinstance(meta["raw_output_gen"], str)
        column = "tasks" if kind == "brainstorm" else "S1"
        assert (row[column] is None) == ("error_gen" in meta and meta["error_gen"] is not None)

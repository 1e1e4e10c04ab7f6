from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from typing import Any

import pytest

from alambic.llms.fake import FakeLLM
from alambic.llms.typing import ChatType
from alambic.steps.tasks import EvolComplexity, EvolInstruct, EvolInstructGenerator
from alambic.steps.tasks._evolution import clean_rewrite, pick_mutation
from alambic.steps.tasks._parsing import ReplyParseError
from alambic.steps.tasks.evol_instruct import IN_BREADTH_MUTATIONS, IN_DEPTH_MUTATIONS


def evolving_reply(messages: ChatType, index: int) -> str:
    """Rewrite the prompt inside <prompt> tags as '<it> (harder)'; answer other requests."""
    content = messages[-1]["content"]
    match = re.search(r"<prompt>\n(.*?)\n</prompt>", content, re.DOTALL)
    if match is None:
        return f"Answer to: {content}"
    return f"{match.group(1)} (harder)"


def make(**kwargs: Any) -> EvolInstruct:
    return EvolInstruct(name="evol", llm=FakeLLM(reply_fn=evolving_reply), **kwargs)


def test_in_depth_prompt_holds_instruction_and_method() -> None:
    task = make(mutations={"constraints": IN_DEPTH_MUTATIONS["constraints"]})
    prompt = task.format_input({"instruction": "Sort a list."})[0]["content"]
    assert "<prompt>\nSort a list.\n</prompt>" in prompt
    assert IN_DEPTH_MUTATIONS["constraints"] in prompt
    assert "harder for advanced AI systems" in prompt


def test_in_breadth_prompt() -> None:
    task = make(mutations=dict(IN_BREADTH_MUTATIONS))
    prompt = task.format_input({"instruction": "Sort a list."})[0]["content"]
    assert "brand-new prompt from the same domain" in prompt
    assert "Sort a list." in prompt


def test_mutation_choice_is_deterministic_and_varies() -> None:
    names = ["a", "b", "c", "d"]
    assert pick_mutation(names, 1, "x", 0) == pick_mutation(list(reversed(names)), 1, "x", 0)
    picks = {pick_mutation(names, 1, f"text {i}", 0) for i in range(40)}
    assert picks == set(names)


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("Sort a list of names by length.", "Sort a list of names by length."),
        ("<prompt>\nSort a list of names.\n</prompt>", "Sort a list of names."),
        ("```\nSort a list of names.\n```", "Sort a list of names."),
        ("**Rewritten Prompt:** Sort a list of names.", "Sort a list of names."),
    ],
)
def test_clean_rewrite_accepts(reply: str, expected: str) -> None:
    assert clean_rewrite(reply, "Sort a list.") == expected


@pytest.mark.parametrize(
    ("reply", "match"),
    [
        ("   ", "empty"),
        ("sort a  list.", "unchanged"),
        ("Here is the rewritten prompt: sort numbers", "copies the rewriting prompt"),
        ("#Given Prompt# sort", "copies"),
    ],
)
def test_clean_rewrite_eliminates(reply: str, match: str) -> None:
    with pytest.raises(ReplyParseError, match=match):
        clean_rewrite(reply, "Sort a list.")


def test_format_output_cleans_one_reply() -> None:
    assert make().format_output("<prompt>Do X well.</prompt>", {"instruction": "Do X."}) == {
        "rewrite": "Do X well."
    }
    # an unchanged rewrite is kept, as distilabel keeps it; eliminating it is opt-in
    assert make().format_output("Do X.", {"instruction": "Do X."}) == {"rewrite": "Do X."}
    with pytest.raises(ReplyParseError):
        make(eliminate_unchanged=True).parse_output("Do X.", {"instruction": "Do X."})
    assert make(eliminate_unchanged=True).format_output("Do X.", {"instruction": "Do X."}) == {
        "rewrite": None
    }


def test_evolves_num_evolutions_times(run_task: Callable[..., Any]) -> None:
    task = make(num_evolutions=3)
    rows = run_task(task, [{"instruction": "Add 2 and 3."}])
    assert rows[0]["evolved_instruction"] == "Add 2 and 3. (harder) (harder) (harder)"
    assert list(task.get_outputs()) == ["evolved_instruction", "model_name"]
    assert len(task.llm.history) == 3  # type: ignore[attr-defined]
    meta = rows[0]["alambic_metadata"]
    assert meta["statistics_evol"]["input_tokens"] > 0
    assert "Add 2 and 3. (harder) (harder)" in meta["raw_input_evol"][0]["content"]


def test_store_evolutions_and_answers(run_task: Callable[..., Any]) -> None:
    task = make(
        num_evolutions=2,
        store_evolutions=True,
        generate_answers=True,
        include_original_instruction=True,
    )
    rows = run_task(task, [{"instruction": "Name a colour."}])
    assert rows[0]["evolved_instructions"] == [
        "Name a colour.",
        "Name a colour. (harder)",
        "Name a colour. (harder) (harder)",
    ]
    assert rows[0]["answers"] == [f"Answer to: {t}" for t in rows[0]["evolved_instructions"]]
    assert list(task.get_outputs()) == ["evolved_instructions", "answers", "model_name"]


def test_single_answer(run_task: Callable[..., Any]) -> None:
    rows = run_task(make(generate_answers=True), [{"instruction": "Hi."}])
    assert rows[0]["answer"] == "Answer to: Hi. (harder)"


def test_eliminated_chains_become_failed_rows(
    run_task: Callable[..., Any], error_of: Callable[..., Any]
) -> None:
    task = make(num_evolutions=2)
    # row 0: fine then fine; row 1: a reply that quotes the rewriting prompt
    task.llm.enqueue("A harder one.", "Given prompt: oops")  # type: ignore[attr-defined]
    rows = run_task(task, [{"instruction": "Easy."}, {"instruction": "Other."}, {"instruction": 5}])
    assert rows[0]["evolved_instruction"] == "A harder one. (harder)"
    assert rows[1]["evolved_instruction"] is None
    assert "step 1: eliminated" in error_of(rows[1], "evol")["message"]
    assert rows[2]["evolved_instruction"] is None
    assert error_of(rows[2], "evol")["type"] == "ColumnTypeError"
    assert task.failures == 2


def test_llm_failure_is_kept_on_the_row(
    run_task: Callable[..., Any], error_of: Callable[..., Any]
) -> None:
    task = EvolInstruct(name="evol", llm=FakeLLM(fail_on=["Boom"]))
    rows = run_task(task, [{"instruction": "Boom."}])
    assert rows[0]["evolved_instruction"] is None
    assert "told to fail" in error_of(rows[0], "evol")["message"]


def test_num_generations_runs_independent_chains(run_task: Callable[..., Any]) -> None:
    task = make(num_generations=2, group_generations=True)
    rows = run_task(task, [{"instruction": "Q."}])
    assert len(rows) == 1
    assert rows[0]["evolved_instruction"] == ["Q. (harder)", "Q. (harder)"]
    assert len(rows[0]["alambic_metadata"]) == 2


def test_evol_complexity_uses_in_depth_only() -> None:
    task = EvolComplexity(name="cx", llm=FakeLLM())
    assert sorted(task.mutations) == sorted(IN_DEPTH_MUTATIONS)
    assert task.mutation_names == ["concretize", "constraints", "deepen", "reasoning"]
    for i in range(10):
        prompt = task.format_input({"instruction": f"Task {i}"})[0]["content"]
        assert "harder for advanced AI systems" in prompt


def test_evol_complexity_runs(run_task: Callable[..., Any]) -> None:
    task = EvolComplexity(
        name="cx",
        llm=FakeLLM(reply_fn=evolving_reply),
        num_evolutions=2,
        store_evolutions=True,
        include_original_instruction=True,
    )
    rows = run_task(task, [{"instruction": "Add."}])
    assert rows[0]["evolved_instructions"] == ["Add.", "Add. (harder)", "Add. (harder) (harder)"]


def test_generator_produces_unique_instructions() -> None:
    counter = itertools.count()

    def numbered(messages: ChatType, index: int) -> str:
        reply = evolving_reply(messages, index)
        return reply if reply.startswith("Answer") else f"{reply} #{next(counter) % 3}"

    task = EvolInstructGenerator(
        name="gen",
        llm=FakeLLM(reply_fn=numbered),
        num_instructions=5,
        seed_instructions=["Write a haiku about rain."],
        batch_size=2,
        generate_answers=True,
    )
    task.load()
    batches = list(task.process())
    rows = [row for batch, _ in batches for row in batch]
    assert len(rows) == 5
    assert batches[-1][1] is True
    instructions = [r["instruction"] for r in rows]
    assert len(set(instructions)) == 5
    assert all(i.startswith("Write a haiku about rain. (harder) #") for i in instructions)
    # duplicates (the counter repeats every 3) were dropped, and evolved ones evolved again
    assert any(i.count("(harder)") > 1 for i in instructions)
    assert all(r["answer"] == f"Answer to: {r['instruction']}" for r in rows)
    assert rows[0]["model_name"] == "fake-model"
    assert list(rows[0]) == ["instruction", "alambic_metadata", "answer", "model_name"]


def test_generator_gives_up_after_max_rounds(caplog: pytest.LogCaptureFixture) -> None:
    # the default fake reply quotes the rewriting prompt, so every rewrite is eliminated
    task = EvolInstructGenerator(name="gen", llm=FakeLLM(), num_instructions=3, max_rounds=2)
    task.load()
    assert list(task.process()) == [([], True)]
    assert "0 of 3 instructions after max_rounds=2" in caplog.text


def test_generator_length_filter() -> None:
    task = EvolInstructGenerator(name="gen", llm=FakeLLM(), num_instructions=1, max_length=5)
    with pytest.raises(ReplyParseError, match="outside 10-5"):
        task.parse_output("A much longer instruction", {"instruction": "x"})
    assert task.format_output("A much longer instruction", {"instruction": "x"}) == {
        "instruction": None
    }

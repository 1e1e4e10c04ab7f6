from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import pytest

from alambic.errors import AlambicUserError
from alambic.llms.fake import FakeLLM
from alambic.llms.typing import GenerateOutput
from alambic.steps.tasks import Magpie, MagpieGenerator
from alambic.steps.tasks.magpie import (
    MAGPIE_MULTI_TURN_SYSTEM_PROMPT,
    PRE_QUERY_TEMPLATES,
    MagpieTemplate,
)


class FakeCompletionLLM(FakeLLM):
    """FakeLLM plus raw completions: replies from ``completions`` in order, records prompts."""

    supports_raw_completion: ClassVar[bool] = True
    completions: list[str] = []
    prompts: list[tuple[str, int]] = []

    def complete(
        self, prompts: Sequence[str], num_generations: int = 1, **kwargs: Any
    ) -> list[GenerateOutput]:
        outs: list[GenerateOutput] = []
        for prompt in prompts:
            self.prompts.append((prompt, num_generations))
            texts: list[str | None] = [
                self.completions.pop(0)
                if self.completions
                else f"question {len(self.prompts)}-{j}<|im_end|>"
                for j in range(num_generations)
            ]
            outs.append(
                {
                    "generations": texts,
                    "statistics": {
                        "input_tokens": [len(prompt)] * num_generations,
                        "output_tokens": [3] * num_generations,
                    },
                }
            )
        return outs


def llm(*completions: str) -> FakeCompletionLLM:
    return FakeCompletionLLM(completions=list(completions), prompts=[])


def test_templates_render_the_pre_query() -> None:
    chatml = PRE_QUERY_TEMPLATES["qwen2"]
    assert chatml.render([]) == "<|im_start|>user\n"
    conversation = [
        {"role": "system", "content": "Be kind."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
    ]
    assert chatml.render(conversation) == (  # type: ignore[arg-type]
        "<|im_start|>system\nBe kind.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\nHello<|im_end|>\n<|im_start|>user\n"
    )
    llama3 = PRE_QUERY_TEMPLATES["llama3"]
    assert llama3.render([{"role": "system", "content": "S"}]) == (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\n"
    )
    assert llama3.cut(" How do I?<|eot_id|><|start_header_id|>assistant") == "How do I?"


def test_chat_only_llm_is_refused_at_load() -> None:
    task = Magpie(name="magpie", llm=FakeLLM())
    with pytest.raises(
        AlambicUserError,
        match=r"FakeLLM \(model 'fake-model'\) only accepts chat.*TransformersLLM.*/v1/completions",
    ):
        task.load()
    gen = MagpieGenerator(name="gen", llm=FakeLLM(), num_rows=2)
    with pytest.raises(AlambicUserError, match="needs raw text completions"):
        gen.load()


def test_custom_string_template_limits() -> None:
    with pytest.raises(AlambicUserError, match="Pass a MagpieTemplate"):
        Magpie(name="m", llm=llm(), pre_query_template="USER:", n_turns=2).load()
    with pytest.raises(ValueError, match="only_instruction=True writes one user message"):
        Magpie(name="m", llm=llm(), only_instruction=True, n_turns=2)


def test_only_instruction_uses_completions(run_task: Callable[..., Any]) -> None:
    fake = llm("  Write a limerick about owls.<|eot_id|>junk")
    task = Magpie(name="magpie", llm=fake, only_instruction=True, system_prompt="You are a poet.")
    rows = run_task(task, [{}])
    assert rows[0]["instruction"] == "Write a limerick about owls."
    prompt, n = fake.prompts[0]
    assert prompt.endswith("You are a poet.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n")
    assert n == 1
    assert fake.history == []  # no chat request: no answer asked for
    assert list(task.get_outputs()) == ["instruction", "model_name"]


def test_multi_turn_conversation(run_task: Callable[..., Any]) -> None:
    fake = llm("First question?<|im_end|>", "Second question?<|im_end|>")
    task = Magpie(
        name="magpie", llm=fake, n_turns=2, pre_query_template="chatml", include_system_prompt=True
    )
    rows = run_task(task, [{"system_prompt": "Be brief."}])
    assert rows[0]["conversation"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "First question?"},
        {"role": "assistant", "content": "fake reply to: First question?"},
        {"role": "user", "content": "Second question?"},
        {"role": "assistant", "content": "fake reply to: Second question?"},
    ]
    second_prompt = fake.prompts[1][0]
    assert (
        "<|im_start|>assistant\nfake reply to: First question?<|im_end|>\n<|im_start|>user\n"
        in second_prompt
    )
    meta = rows[0]["alambic_metadata"]
    assert meta["statistics_magpie"]["output_tokens"] > 0


def test_identical_prompts_are_one_request_with_n(run_task: Callable[..., Any]) -> None:
    fake = llm("Q one<|im_end|>", "Q two<|im_end|>", "Q three<|im_end|>")
    task = Magpie(name="magpie", llm=fake, only_instruction=True, pre_query_template="chatml")
    rows = run_task(task, [{}, {}, {"system_prompt": "S"}])
    assert [r["instruction"] for r in rows] == ["Q one", "Q two", "Q three"]
    assert sorted(n for _, n in fake.prompts) == [1, 2]


def test_empty_user_turn_fails_only_that_row(
    run_task: Callable[..., Any], error_of: Callable[..., Any]
) -> None:
    fake = llm("<|im_end|>", "Fine question<|im_end|>")
    task = Magpie(name="magpie", llm=fake, pre_query_template="chatml", conversation_output=True)
    rows = run_task(task, [{"system_prompt": "A"}, {"system_prompt": "B"}])
    assert rows[0]["conversation"] is None
    assert "empty user message" in error_of(rows[0], "magpie")["message"]
    assert rows[1]["conversation"][-1] == {
        "role": "assistant",
        "content": "fake reply to: Fine question",
    }


def test_bad_system_prompt_column_fails_the_row(
    run_task: Callable[..., Any], error_of: Callable[..., Any]
) -> None:
    rows = run_task(
        Magpie(name="magpie", llm=llm(), conversation_output=True), [{"system_prompt": 3}]
    )
    assert rows[0]["conversation"] is None
    assert error_of(rows[0], "magpie")["type"] == "ColumnTypeError"


def test_format_output_cuts_at_markers() -> None:
    task = Magpie(name="magpie", llm=llm(), pre_query_template="chatml")
    assert task.format_output("What is 2+2?<|im_end|>\n<|im_start|>assistant", {}) == {
        "instruction": "What is 2+2?"
    }
    with pytest.raises(ValueError, match="empty user message"):
        task.parse_output("<|im_end|>", {})


def test_generator_batches_and_system_prompt_draws() -> None:
    fake = llm()
    task = MagpieGenerator(
        name="gen",
        llm=fake,
        num_rows=5,
        batch_size=2,
        only_instruction=True,
        system_prompt=["A", "B", "C"],
        pre_query_template=MagpieTemplate(
            system="[S]{content}\n",
            user="[U]{content}\n",
            assistant="[A]{content}\n",
            user_header="[U]",
            stop=["<|im_end|>"],
        ),
    )
    task.load()
    batches = list(task.process())
    assert [len(rows) for rows, _ in batches] == [2, 2, 1]
    assert [last for _, last in batches] == [False, False, True]
    rows = [r for rows, _ in batches for r in rows]
    assert all(r["instruction"].startswith("question ") for r in rows)
    assert {p.split("\n")[0] for p, _ in fake.prompts} <= {"[S]A", "[S]B", "[S]C"}
    resumed = list(task.process(offset=4))
    assert [len(rows) for rows, _ in resumed] == [1]


# distilabel's output shape (issue 15)


def test_one_turn_gives_instruction_and_response_without_the_system_message(
    run_task: Callable[..., Any],
) -> None:
    fake = llm("Why is the sky blue?<|im_end|>")
    task = Magpie(name="magpie", llm=fake, pre_query_template="chatml")
    assert list(task.get_outputs()) == ["instruction", "response", "model_name"]
    rows = run_task(task, [{"system_prompt": "You explain physics."}])
    assert rows[0]["instruction"] == "Why is the sky blue?"
    assert rows[0]["response"] == "fake reply to: Why is the sky blue?"
    assert "conversation" not in rows[0]
    # the system prompt steered the user turn, but is not part of the output
    assert fake.prompts[0][0].startswith("<|im_start|>system\nYou explain physics.<|im_end|>")


def test_one_turn_failure_gives_none_instruction_and_response(
    run_task: Callable[..., Any], error_of: Callable[..., Any]
) -> None:
    rows = run_task(Magpie(name="magpie", llm=llm("<|im_end|>"), pre_query_template="chatml"), [{}])
    assert (rows[0]["instruction"], rows[0]["response"]) == (None, None)
    assert "empty user message" in error_of(rows[0], "magpie")["message"]


def test_multi_turn_uses_the_multi_turn_system_prompt_and_drops_it_from_the_output(
    run_task: Callable[..., Any],
) -> None:
    fake = llm("First?<|im_end|>", "Second?<|im_end|>")
    task = Magpie(name="magpie", llm=fake, n_turns=2, pre_query_template="chatml")
    assert list(task.get_outputs()) == ["conversation", "model_name"]
    rows = run_task(task, [{}])
    assert [m["role"] for m in rows[0]["conversation"]] == [
        "user",
        "assistant",
        "user",
        "assistant",
    ]
    first_prompt = fake.prompts[0][0]
    assert first_prompt == (
        f"<|im_start|>system\n{MAGPIE_MULTI_TURN_SYSTEM_PROMPT}<|im_end|>\n<|im_start|>user\n"
    )


def test_multi_turn_system_prompt_included_on_request_and_can_be_turned_off(
    run_task: Callable[..., Any],
) -> None:
    task = Magpie(
        name="magpie", llm=llm(), n_turns=2, pre_query_template="chatml", include_system_prompt=True
    )
    rows = run_task(task, [{}])
    assert rows[0]["conversation"][0] == {
        "role": "system",
        "content": MAGPIE_MULTI_TURN_SYSTEM_PROMPT,
    }
    fake = llm()
    off = Magpie(
        name="magpie",
        llm=fake,
        n_turns=2,
        pre_query_template="chatml",
        multi_turn_system_prompt=False,
    )
    run_task(off, [{}])
    assert fake.prompts[0][0] == "<|im_start|>user\n"


def test_end_with_user_stops_before_the_last_answer(run_task: Callable[..., Any]) -> None:
    fake = llm("First?<|im_end|>", "Second?<|im_end|>")
    task = Magpie(
        name="magpie", llm=fake, n_turns=2, pre_query_template="chatml", end_with_user=True
    )
    rows = run_task(task, [{}])
    assert [m["content"] for m in rows[0]["conversation"]] == [
        "First?",
        "fake reply to: First?",
        "Second?",
    ]
    assert len(fake.history) == 1  # one answer asked, not two


def test_generator_one_turn_shape_and_conversation_output_option() -> None:
    gen = MagpieGenerator(name="gen", llm=llm(), num_rows=2, pre_query_template="chatml")
    gen.load()
    rows = [row for batch, _ in gen.process() for row in batch]
    assert [sorted(k for k in row if k != "alambic_metadata") for row in rows] == [
        ["instruction", "model_name", "response"]
    ] * 2
    assert rows[0]["response"] == f"fake reply to: {rows[0]['instruction']}"
    old = MagpieGenerator(
        name="gen", llm=llm(), num_rows=1, pre_query_template="chatml", conversation_output=True
    )
    old.load()
    ((batch, _),) = list(old.process())
    assert [m["role"] for m in batch[0]["conversation"]] == ["user", "assistant"]
    assert list(old.get_outputs()) == ["conversation", "model_name"]

"""CLAIR, URIAL and EvolComplexityGenerator: prompts and parsers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import pytest

from alambic.errors import ColumnTypeError
from alambic.llms.fake import FakeLLM
from alambic.steps.tasks import CLAIR, URIAL, EvolComplexityGenerator
from alambic.steps.tasks._parsing import ReplyParseError
from alambic.steps.tasks.evol_instruct import IN_DEPTH_MUTATIONS


def clair() -> CLAIR:
    return CLAIR(name="clair", llm=FakeLLM())


def test_clair_prompt() -> None:
    messages = clair().format_input({"task": "Add 2 and 2.", "student_solution": "It is 5."})
    assert "minimal" in messages[0]["content"] or "as little as possible" in messages[0]["content"]
    assert "Add 2 and 2." in messages[1]["content"]
    assert "It is 5." in messages[1]["content"]
    with pytest.raises(ColumnTypeError, match="'student_solution'"):
        clair().format_input({"task": "t", "student_solution": None})


@pytest.mark.parametrize(
    ("reply", "revision", "rational"),
    [
        ("## Reasoning\n2 + 2 is 4.\n\n## Corrected answer\nIt is 4.", "It is 4.", "2 + 2 is 4."),
        (
            "Sure, here is my review.\n\n**Reasoning:** wrong sum.\n\n**Corrected Answer:**\nIt is 4.\n",
            "It is 4.",
            "wrong sum.",
        ),
        ("Revision: It is 4.", "It is 4.", ""),
    ],
)
def test_clair_parses_well_formed_and_prosy(reply: str, revision: str, rational: str) -> None:
    assert clair().format_output(reply) == {"revision": revision, "rational": rational}


@pytest.mark.parametrize(
    "reply", ["## Reasoning\n2 + 2 is 4 so the ans", "## Corrected answer\n   ", "lorem ipsum"]
)
def test_clair_rejects_truncated_and_garbage(reply: str) -> None:
    with pytest.raises(ReplyParseError, match="Corrected answer"):
        clair().parse_output(reply)


def urial(llm: Any = None) -> URIAL:
    return URIAL(name="urial", llm=llm or FakeLLM())


def test_urial_prompt_is_plain_text_ending_in_an_open_assistant_turn() -> None:
    prompt = urial().prompt({"instruction": "What is 2+2?"})
    assert prompt.startswith("# Instructions")
    assert prompt.rstrip().endswith("# Assistant:\n```")
    assert "# User:\n```\nWhat is 2+2?\n```" in prompt
    chat = urial().prompt(
        {
            "conversation": [
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello!"},
                {"role": "user", "content": "Bye"},
            ]
        }
    )
    assert chat.index("Hi") < chat.index("Hello!") < chat.index("Bye")
    with pytest.raises(ColumnTypeError, match="'instruction' text or a 'conversation'"):
        urial().prompt({"other": 1})


@pytest.mark.parametrize(
    ("reply", "generation"),
    [
        ("Four.\n```", "Four."),
        ("Four.\n```\n\n# User:\n```\nAnd 3+3?", "Four."),
        ("Four, since 2 + 2 = 4.", "Four, since 2 + 2 = 4."),  # truncated: no closing fence
        ("Four.\n# User:\nmore", "Four."),
    ],
)
def test_urial_cuts_the_answer(reply: str, generation: str) -> None:
    assert urial().format_output(reply) == {"generation": generation}


def test_urial_rejects_an_empty_answer() -> None:
    with pytest.raises(ReplyParseError, match="empty"):
        urial().parse_output("```\n# User: hi")


class RawFake(FakeLLM):
    supports_raw_completion: ClassVar[bool] = True
    prompts: ClassVar[list[str]] = []

    def complete(self, prompts: Any, num_generations: int = 1, **kwargs: Any) -> Any:
        RawFake.prompts.extend(prompts)
        return [
            {
                "generations": ["Paris.\n```\n# User:\n```\nnext"] * num_generations,
                "statistics": {
                    "input_tokens": [3] * num_generations,
                    "output_tokens": [2] * num_generations,
                },
            }
            for _ in prompts
        ]


def test_urial_sends_raw_text_when_the_llm_can(run_task: Callable[..., Any]) -> None:
    rows = run_task(urial(RawFake()), [{"instruction": "Capital of France?"}])
    assert rows[0]["generation"] == "Paris."
    assert RawFake.prompts[-1].endswith("# Assistant:\n```\n")
    meta = rows[0]["alambic_metadata"]
    assert meta["raw_output_urial"].startswith("Paris.")
    # without raw completion, the same prompt goes as one user message
    llm = FakeLLM()
    llm.enqueue("Rome.\n```")
    rows = run_task(urial(llm), [{"instruction": "Capital of Italy?"}])
    assert rows[0]["generation"] == "Rome."
    assert llm.history[0]["messages"][0]["content"].startswith("# Instructions")


def test_evol_complexity_generator_uses_in_depth_mutations_only() -> None:
    task = EvolComplexityGenerator(name="evc", llm=FakeLLM(), num_instructions=2)
    assert task.mutations == IN_DEPTH_MUTATIONS
    assert task.get_outputs() == {"instruction": True, "model_name": True}

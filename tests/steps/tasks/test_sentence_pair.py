from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from pydantic import ValidationError

from alambic.llms.fake import FakeLLM
from alambic.steps.tasks import GenerateSentencePair
from alambic.steps.tasks._parsing import ReplyParseError
from alambic.steps.tasks.sentence_pair import CONTEXT_INTRO


def make(**kwargs: Any) -> GenerateSentencePair:
    kwargs.setdefault("action", "paraphrase")
    return GenerateSentencePair(name="pairs", llm=FakeLLM(), **kwargs)


def test_outputs_follow_triplet() -> None:
    assert make().get_outputs() == {"positive": True, "model_name": True}
    assert list(make(triplet=True).get_outputs()) == ["positive", "negative", "model_name"]


def test_unknown_action_is_rejected() -> None:
    with pytest.raises(ValidationError, match="paraphrase"):
        make(action="summarize")


@pytest.mark.parametrize(
    ("kwargs", "present", "absent"),
    [
        ({"action": "paraphrase"}, ["paraphrase", "## Positive"], ["## Negative", "hard negative"]),
        ({"action": "query", "triplet": True}, ["search query", "## Negative"], ["hard negative"]),
        (
            {"action": "answer", "triplet": True, "hard_negative": True},
            ["an answer to the anchor", "hard negative", "## Negative"],
            [],
        ),
        (
            {"action": "semantically-similar", "context": "Texts are recipes."},
            ["semantically similar", CONTEXT_INTRO.strip()],
            ["Texts are recipes."],
        ),
    ],
)
def test_prompt_follows_settings(
    kwargs: dict[str, Any], present: list[str], absent: list[str]
) -> None:
    messages = make(**kwargs).format_input({"anchor": "The cat sleeps."})
    # the context goes to the user message, as distilabel's template renders it; the system
    # prompt only says that there is one (CONTEXT_INTRO)
    context = f"## Context\n{kwargs['context']}\n\n" if "context" in kwargs else ""
    assert messages[-1] == {"role": "user", "content": f"{context}## Anchor\nThe cat sleeps."}
    system = messages[0]["content"]
    for needle in present:
        assert needle in system
    for needle in absent:
        assert needle not in system


@pytest.mark.parametrize(
    "reply",
    [
        "## Positive\nA feline naps.\n## Negative\nThe dog barks.",
        "Sure!\n\n**Positive:** A feline naps.\n**Negative:** The dog barks.\nHope this helps",
        'Positive: "A feline naps."\nNegative: `The dog barks.`',
    ],
)
def test_format_output_reads_triplets(reply: str) -> None:
    out = make(triplet=True).format_output(reply, {})
    assert out["positive"] == "A feline naps."
    assert out["negative"].startswith("The dog barks.")


def test_pair_ignores_a_negative_section() -> None:
    reply = "## Positive\nA feline naps.\n## Negative\nThe dog barks."
    assert make().format_output(reply, {}) == {"positive": "A feline naps."}


@pytest.mark.parametrize(
    ("reply", "match"),
    [
        ("## Positive\nA feline naps.", "no negative"),  # truncated
        ("I cannot help with that.", "no positive or negative"),
        ("## Positive\n\n## Negative\nx", "no positive"),
    ],
)
def test_format_output_rejects_missing_sections(reply: str, match: str) -> None:
    with pytest.raises(ReplyParseError, match=match):
        make(triplet=True).parse_output(reply, {})


def test_process_rows(run_task: Callable[..., Any], error_of: Callable[..., Any]) -> None:
    task = make(triplet=True, hard_negative=True)
    task.llm.enqueue("## Positive\nA.\n## Negative\nB.", "## Positive\nonly")  # type: ignore[attr-defined]
    rows = run_task(task, [{"anchor": "x"}, {"anchor": "y"}])
    assert (rows[0]["positive"], rows[0]["negative"]) == ("A.", "B.")
    assert (rows[1]["positive"], rows[1]["negative"]) == (None, None)
    assert "no negative" in error_of(rows[1], "pairs")["message"]

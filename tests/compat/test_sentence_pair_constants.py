"""GenerateSentencePair's prompt pieces under distilabel's names (issue 15).

distilabel's ``sentence_transformers`` module keeps its prompt in module constants
(``POSITIVE_SYSTEM_PROMPT``, ``POSITIVE_NEGATIVE_SYSTEM_PROMPT`` with ``str.format``
placeholders, ``GENERATION_ACTION_SENTENCES``, ``NEGATIVE_STYLE``, ``CONTEXT_INTRO``,
``POSITIVE_NEGATIVE_PAIR_REGEX``); user code reads them or replaces them. Here the task
builds its prompt from them at each call, so both work as they do there.
"""

from __future__ import annotations

import re
import string
from typing import Any

import pytest

from alambic.errors import TemplateError
from alambic.llms.fake import FakeLLM
from alambic.pipeline import Pipeline
from alambic.steps import LoadDataFromDicts
from alambic.steps.tasks import GenerateSentencePair
from alambic.steps.tasks import sentence_pair as st


def fields(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def system_of(task: GenerateSentencePair, anchor: str = "Cats sleep a lot.") -> str:
    messages: Any = task.format_input({"anchor": anchor})
    return str(messages[0]["content"])


def test_the_names_and_shapes_are_distilabels() -> None:
    assert set(st.GENERATION_ACTION_SENTENCES) == {
        "paraphrase",
        "semantically-similar",
        "query",
        "answer",
    }
    assert set(st.NEGATIVE_STYLE) == {"negative", "hard-negative"}
    assert fields(st.POSITIVE_SYSTEM_PROMPT) == {"context", "action_sentence"}
    assert fields(st.POSITIVE_NEGATIVE_SYSTEM_PROMPT) == {
        "context",
        "action_sentence",
        "negative_style",
    }
    assert isinstance(st.CONTEXT_INTRO, str)
    assert st.CONTEXT_INTRO.startswith(" ")
    assert st.POSITIVE_NEGATIVE_PAIR_REGEX.groups == 2


@pytest.mark.parametrize(
    ("kwargs", "template", "values"),
    [
        ({"action": "paraphrase"}, "POSITIVE_SYSTEM_PROMPT", ("paraphrase", "", None)),
        (
            {"action": "query", "triplet": True, "context": "Shop FAQ."},
            "POSITIVE_NEGATIVE_SYSTEM_PROMPT",
            ("query", st.CONTEXT_INTRO, "negative"),
        ),
        (
            {"action": "answer", "triplet": True, "hard_negative": True},
            "POSITIVE_NEGATIVE_SYSTEM_PROMPT",
            ("answer", "", "hard-negative"),
        ),
    ],
)
def test_the_system_prompt_is_the_constants_filled_in(
    kwargs: dict[str, Any], template: str, values: tuple[str, str, str | None]
) -> None:
    action, context, style = values
    filled: dict[str, str] = {
        "action_sentence": st.GENERATION_ACTION_SENTENCES[action],
        "context": context,
    }
    if style is not None:
        filled["negative_style"] = st.NEGATIVE_STYLE[style]
    task = GenerateSentencePair(name="s", llm=FakeLLM(), **kwargs)
    assert system_of(task) == getattr(st, template).format(**filled)


def test_replacing_the_constants_changes_the_prompt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(st, "POSITIVE_SYSTEM_PROMPT", "Make it {action_sentence} that.{context}")
    monkeypatch.setattr(st, "CONTEXT_INTRO", " Mind the context.")
    monkeypatch.setitem(st.GENERATION_ACTION_SENTENCES, "paraphrase", "say again")
    task = GenerateSentencePair(name="s", llm=FakeLLM(), action="paraphrase", context="Recipes.")
    assert system_of(task) == "Make it say again that. Mind the context."
    monkeypatch.setattr(
        st,
        "POSITIVE_NEGATIVE_SYSTEM_PROMPT",
        "{action_sentence} / {negative_style}{context}",
    )
    monkeypatch.setitem(st.NEGATIVE_STYLE, "hard-negative", "looks alike")
    triplet = GenerateSentencePair(
        name="t", llm=FakeLLM(), action="paraphrase", triplet=True, hard_negative=True
    )
    assert system_of(triplet) == "say again / looks alike"


def test_a_replaced_prompt_reaches_the_llm_in_a_pipeline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(st, "POSITIVE_SYSTEM_PROMPT", "Pair task: {action_sentence}.{context}")
    llm = FakeLLM(reply_fn=lambda messages, i: "## Positive\nA cat naps often.")
    with Pipeline(name="pair-constants") as pipeline:
        load = LoadDataFromDicts(data=[{"anchor": "Cats sleep a lot."}])
        pairs = GenerateSentencePair(name="pairs", llm=llm, action="query")
        load >> pairs
    row = pipeline.run(use_cache=False, show_progress=False)["default"]["train"][0]
    assert row["positive"] == "A cat naps often."
    sent = row["alambic_metadata"]["raw_input_pairs"]
    assert sent[0] == {
        "role": "system",
        "content": f"Pair task: {st.GENERATION_ACTION_SENTENCES['query']}.",
    }


def test_a_placeholder_the_task_does_not_give_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(st, "POSITIVE_SYSTEM_PROMPT", "About {topic}: {action_sentence}")
    task = GenerateSentencePair(name="s", llm=FakeLLM(), action="answer")
    with pytest.raises(TemplateError, match=r"'topic'.*\['action_sentence', 'context'\]"):
        task.format_input({"anchor": "x"})


def test_replies_are_read_with_the_regex_then_leniently(monkeypatch: pytest.MonkeyPatch) -> None:
    triplet = GenerateSentencePair(name="t", llm=FakeLLM(), action="query", triplet=True)
    reply = "## Positive\nWhere do cats sleep?\n\n## Negative\nWhere do dogs sleep?\n"
    assert st.POSITIVE_NEGATIVE_PAIR_REGEX.match(reply) is not None
    assert triplet.format_output(reply, {}) == {
        "positive": "Where do cats sleep?",
        "negative": "Where do dogs sleep?",
    }
    # a user's regex (distilabel's two groups) reads the form it describes
    monkeypatch.setattr(
        st, "POSITIVE_NEGATIVE_PAIR_REGEX", re.compile(r"P=(.*?);\s*N=(.*)", re.DOTALL)
    )
    assert triplet.format_output("P=a query; N=another", {}) == {
        "positive": "a query",
        "negative": "another",
    }
    # what it does not match still goes through the lenient reader
    assert triplet.format_output("**Positive:** one\n**Negative:** two", {}) == {
        "positive": "one",
        "negative": "two",
    }


def test_the_user_message_renders_context_and_anchor_like_distilabels_template() -> None:
    task = GenerateSentencePair(name="s", llm=FakeLLM(), action="query", context="Shop FAQ.")
    messages: Any = task.format_input({"anchor": "Refunds take 5 days."})
    user = messages[-1]["content"]
    assert user.index("Shop FAQ.") < user.index("Refunds take 5 days.")
    plain = GenerateSentencePair(name="p", llm=FakeLLM(), action="query")
    assert "Shop FAQ." not in str(plain.format_input({"anchor": "Refunds take 5 days."}))

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from alambic.llms.fake import FakeLLM
from alambic.steps.tasks import TextClassification
from alambic.steps.tasks._parsing import ReplyParseError


def make(**kwargs: Any) -> TextClassification:
    kwargs.setdefault("available_labels", ["positive", "negative", "neutral"])
    return TextClassification(name="clf", llm=FakeLLM(), **kwargs)


def test_prompt_lists_labels_descriptions_context_and_text() -> None:
    task = make(
        available_labels={"bug": "something is broken", "feature": "a request for new behaviour"},
        context="These are GitHub issues.",
        query_title="Issue",
        n=2,
    )
    messages, spec = task.format_input({"text": "The app crashes on start."})
    prompt = messages[-1]["content"]
    for needle in (
        "These are GitHub issues.",
        "- bug: something is broken",
        "- feature: a request for new behaviour",
        "Issue:\nThe app crashes on start.",
        "up to 2 labels",
        '"Unclassified"',
        '{"labels":',
    ):
        assert needle in prompt
    assert spec["schema"]["properties"]["labels"]["items"]["enum"] == [
        "bug",
        "feature",
        "Unclassified",
    ]
    assert spec["schema"]["properties"]["labels"]["maxItems"] == 2


def test_without_structured_output_only_messages_are_sent() -> None:
    formatted = make(use_structured_output=False).format_input({"text": "good"})
    assert isinstance(formatted, list)
    assert "one label" in formatted[-1]["content"]


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ('{"labels": ["negative"]}', "negative"),
        ('Sure:\n```json\n{"labels": ["Positive"]}\n```', "positive"),
        ('{"label": "neutral"}', "neutral"),
        ("The sentiment is clearly negative.", "negative"),
        ('{"labels": ["Unclassified"]}', "Unclassified"),
    ],
)
def test_single_label_replies(reply: str, expected: str) -> None:
    assert make().format_output(reply, {}) == {"labels": expected}


def test_multi_label_keeps_known_labels_up_to_n() -> None:
    task = make(n=2)
    assert task.format_output('{"labels": ["positive", "joy", "neutral", "negative"]}', {}) == {
        "labels": ["positive", "neutral"]
    }


@pytest.mark.parametrize(
    ("reply", "match"),
    [
        ('{"labels": ["joy"]}', "none of the labels.*joy"),
        ('{"labels": ["posi', "none of the labels"),  # truncated JSON, no label in text
        ("%$#@!", "none of the labels"),
        ('{"category": 3}', "no 'labels' list"),
    ],
)
def test_bad_replies(reply: str, match: str) -> None:
    with pytest.raises(ReplyParseError, match=match):
        make().parse_output(reply, {})


def test_process_rows_with_schema(
    run_task: Callable[..., Any], error_of: Callable[..., Any]
) -> None:
    task = make()
    task.llm.enqueue('{"labels": ["positive"]}', "no idea")  # type: ignore[attr-defined]
    rows = run_task(task, [{"text": "I love it"}, {"text": "hmm"}])
    assert rows[0]["labels"] == "positive"
    assert rows[1]["labels"] is None
    # the LLM's structured-output layer may reject the reply before format_output sees it
    assert error_of(rows[1], "clf")["type"] in {"ReplyParseError", "StructuredOutputError"}


def test_process_without_schema_uses_the_task_parser(
    run_task: Callable[..., Any], error_of: Callable[..., Any]
) -> None:
    task = make(use_structured_output=False)
    task.llm.enqueue("It is neutral.", "no idea")  # type: ignore[attr-defined]
    rows = run_task(task, [{"text": "ok"}, {"text": "hmm"}])
    assert rows[0]["labels"] == "neutral"
    assert rows[1]["labels"] is None
    error = error_of(rows[1], "clf")
    assert error["type"] == "ReplyParseError"
    assert "none of the labels" in error["message"]


# -- default_label as a list of labels (distilabel accepts one when n > 1) --------------------


def test_a_list_default_is_named_in_the_prompt_and_the_schema() -> None:
    task = make(n=3, default_label=["unknown", "mixed"])
    messages, spec = task.format_input({"text": "Well."})
    prompt = messages[-1]["content"]
    assert 'If nothing fits, use the labels "unknown", "mixed".' in prompt
    assert "['unknown'" not in prompt  # not Python's list repr
    assert task.label_set == ["positive", "negative", "neutral", "unknown", "mixed"]
    assert spec["schema"]["properties"]["labels"]["items"]["enum"] == task.label_set
    assert spec["schema"]["properties"]["labels"]["maxItems"] == 3
    task.load()  # the compiled _template renders it the same way
    assert task.format_input({"text": "Well."})[0][-1]["content"] == prompt


def test_a_list_default_is_parsed_as_labels() -> None:
    task = make(n=2, default_label=["unknown", "mixed"])
    assert task.format_output('{"labels": ["unknown", "mixed"]}', {}) == {
        "labels": ["unknown", "mixed"]
    }
    assert task.format_output('{"labels": ["Mixed", "negative"]}', {}) == {
        "labels": ["mixed", "negative"]
    }
    # replies without JSON: the default labels are found in the text too
    assert task.format_output("Both unknown and mixed, I think.", {}) == {
        "labels": ["unknown", "mixed"]
    }
    # a label listed in available_labels and in the default appears once
    both = make(n=2, default_label=["neutral", "unknown"])
    assert both.label_set == ["positive", "negative", "neutral", "unknown"]


def test_a_list_default_in_open_classification_and_a_pipeline(
    run_task: Callable[..., Any],
) -> None:
    task = TextClassification(
        name="clf", llm=FakeLLM(), n=2, default_label=["misc", "other"], use_structured_output=False
    )
    assert task.label_set == []
    prompt = task.format_input({"text": "x"})[-1]["content"]  # type: ignore[index]
    assert '"misc", "other"' in prompt
    task.llm.enqueue('{"labels": ["misc", "other"]}')  # type: ignore[attr-defined]
    rows = run_task(task, [{"text": "?"}])
    assert rows[0]["labels"] == ["misc", "other"]
    assert rows[0]["model_name"] == task.llm.model_name


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"default_label": ["a", "b"]}, r"has 2 labels but n=1.*give at most 1 default labels"),
        ({"n": 2, "default_label": ["a", "b", "c"]}, "has 3 labels but n=2"),
        ({"n": 2, "default_label": []}, "at least one non-empty label"),
        ({"n": 2, "default_label": ["a", " "]}, "at least one non-empty label"),
    ],
)
def test_a_list_default_that_cannot_fit_is_refused(kwargs: dict[str, Any], match: str) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=match):
        make(**kwargs)


def test_a_one_label_list_default_with_n_1_gives_one_label() -> None:
    task = make(default_label=["unknown"])
    assert task.format_output('{"labels": ["unknown"]}', {}) == {"labels": "unknown"}


@pytest.mark.parametrize("reply", [None, "%$#@!", '{"labels": ["joy"]}'])
def test_format_output_of_an_unusable_reply_has_distilabels_shape(reply: str | None) -> None:
    assert make().format_output(reply, {}) == {"labels": None}
    assert make(n=3).format_output(reply, {}) == {"labels": [None, None, None]}

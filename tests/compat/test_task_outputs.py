"""Built-in tasks answer ``format_output`` the way distilabel's do (issue 15).

Written as distilabel users' scripts call them: directly on stored replies, with ``None`` for
a failed generation, and with ``use_default_structured_output=True`` for JSON replies.
"""

from __future__ import annotations

from typing import Any

import pytest

from alambic.llms.fake import FakeLLM
from alambic.steps.tasks import (
    ComplexityScorer,
    EvolInstruct,
    GenerateSentencePair,
    Genstruct,
    InstructionBacktranslation,
    PairwiseJudge,
    PrometheusEval,
    QualityScorer,
    SelfInstruct,
    StructuredGeneration,
    TextClassification,
    UltraFeedback,
)
from alambic.steps.tasks._lenient import LenientFormatOutput

LLM = FakeLLM()


def _tasks() -> list[tuple[Any, dict[str, Any]]]:
    return [
        (ComplexityScorer(name="c", llm=LLM), {"instructions": ["a", "b"]}),
        (QualityScorer(name="q", llm=LLM), {"instruction": "i", "responses": ["a", "b", "c"]}),
        (UltraFeedback(name="u", llm=LLM), {"instruction": "i", "generations": ["a", "b"]}),
        (
            UltraFeedback(name="u2", llm=LLM, aspect="truthfulness"),
            {"instruction": "i", "generations": ["a", "b"]},
        ),
        (GenerateSentencePair(name="s", llm=LLM, action="paraphrase", triplet=True), {}),
        (TextClassification(name="t", llm=LLM, available_labels=["x", "y"]), {"text": "t"}),
        (InstructionBacktranslation(name="b", llm=LLM), {}),
        (Genstruct(name="g", llm=LLM), {}),
        (SelfInstruct(name="si", llm=LLM), {}),
        (
            StructuredGeneration(name="sg", llm=LLM, add_parsed_generation=True),
            {"structured_output": {"type": "object"}},
        ),
        (PrometheusEval(name="p", llm=LLM, mode="absolute", rubric="helpfulness"), {}),
        (PairwiseJudge(name="pj", llm=LLM), {}),
    ]


EXPECTED_NONE: dict[str, dict[str, Any]] = {
    "c": {"scores": [None, None]},
    "q": {"scores": [None, None, None]},
    "u": {"ratings": [None, None], "rationales": [None, None]},
    "u2": {
        "types": [None, None],
        "rationales": [None, None],
        "ratings": [None, None],
        "rationales-for-ratings": [None, None],
    },
    "s": {"positive": None, "negative": None},
    "t": {"labels": None},
    "b": {"score": None, "reason": None},
    "g": {"user": None, "assistant": None},
    "si": {"instructions": None},
    "sg": {"generation": None, "parsed_generation": None},
    "p": {"feedback": None, "result": None},
    "pj": {"winner": None, "reason": None},
}


@pytest.mark.parametrize("reply", [None, "", "!!! {"])
def test_format_output_never_raises_and_gives_none_columns(reply: str | None) -> None:
    for task, row in _tasks():
        assert isinstance(task, LenientFormatOutput)
        assert task.format_output(reply, row) == EXPECTED_NONE[task.name], task.name


def test_pipeline_path_still_raises_the_reason() -> None:
    scorer = QualityScorer(name="q", llm=LLM)
    with pytest.raises(ValueError, match="Score"):
        scorer.format_output_or_raise("no scores here", {"responses": ["a"]})


def test_a_users_override_of_format_output_is_what_the_pipeline_calls() -> None:
    class MyScorer(QualityScorer):
        def format_output(self, output: str | None, input: dict[str, Any] | None = None) -> Any:
            return {"scores": ["mine"]}

    assert MyScorer(name="m", llm=LLM).format_output_or_raise("x", {}) == {"scores": ["mine"]}


def test_scorers_parse_json_with_use_default_structured_output() -> None:
    row = {"instruction": "i", "responses": ["a", "b"]}
    scorer = QualityScorer(name="q", llm=LLM, use_default_structured_output=True)
    _messages, spec = scorer.format_input(row)
    assert spec["format"] == "json"
    assert spec["schema"]["properties"]["scores"]["items"] == {"type": "integer"}
    assert scorer.format_output('{"scores": [2, 1]}', row) == {"scores": [2, 1]}
    assert scorer.format_output('{"scores": [2]}', row) == {"scores": [2, None]}
    complexity = ComplexityScorer(name="c", llm=LLM, use_default_structured_output=True)
    assert complexity.format_output('{"scores": [1, 3, 2]}', {"instructions": ["a", "b", "c"]}) == {
        "scores": [1, 3, 2]
    }
    # without the flag the format_input is a plain conversation
    assert isinstance(QualityScorer(name="q2", llm=LLM).format_input(row), list)


def test_ultrafeedback_parses_json_and_uses_distilabel_column_names() -> None:
    task = UltraFeedback(
        name="u", llm=LLM, aspect="helpfulness", use_default_structured_output=True
    )
    assert task.outputs == [
        "types",
        "rationales",
        "ratings",
        "rationales-for-ratings",
        "model_name",
    ]
    reply = (
        '{"types": [1, null], "rationales": ["clear", "off"], "ratings": [5, 2], '
        '"rationales_for_ratings": ["good", "bad"]}'
    )
    row = {"instruction": "i", "generations": ["a", "b"]}
    assert task.format_output(reply, row) == {
        "types": [[1], None],
        "rationales": ["clear", "off"],
        "ratings": [5, 2],
        "rationales-for-ratings": ["good", "bad"],
    }
    schema = task.format_input(row)[1]["schema"]
    assert set(schema["required"]) == {"types", "rationales", "ratings", "rationales_for_ratings"}


def test_sentence_pair_parses_json() -> None:
    task = GenerateSentencePair(
        name="s", llm=LLM, action="paraphrase", use_default_structured_output=True
    )
    assert task.format_output('{"positive": "same idea"}', {"anchor": "x"}) == {
        "positive": "same idea"
    }


def test_text_classification_without_available_labels_is_open() -> None:
    task = TextClassification(name="t", llm=LLM)
    prompt = task.format_input({"text": "Messi scored twice."})[0][0]["content"]
    assert "short label" in prompt
    assert task.format_output('{"labels": ["sports"]}', {}) == {"labels": "sports"}
    assert task.format_output("Label: Sports.", {}) == {"labels": "Sports"}
    multi = TextClassification(name="t2", llm=LLM, n=2)
    assert multi.format_output('{"labels": ["sports", "news"]}', {}) == {
        "labels": ["sports", "news"]
    }


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (
            "The score is high because it is precise.\nScore: 5",
            ("The score is high because it is precise.", 5),
        ),
        ("Great answer. Score: 4", ("Great answer.", 4)),
        ("Relevant and polite.\nRating: 3/5", ("Relevant and polite.", 3)),
    ],
)
def test_instruction_backtranslation_keeps_the_whole_reason(
    reply: str, expected: tuple[str, int]
) -> None:
    out = InstructionBacktranslation(name="b", llm=LLM).format_output(reply, {})
    assert (out["reason"], out["score"]) == expected


def test_evol_instruct_keeps_an_unchanged_rewrite_like_distilabel() -> None:
    task = EvolInstruct(name="e", llm=LLM)
    assert task.format_output("Sort a list.", {"instruction": "Sort a list."}) == {
        "rewrite": "Sort a list."
    }


def test_combined_rows_metadata_merged_into_lists_like_distilabel() -> None:
    from alambic.steps.columns import CombineOutputs, GroupColumns, merge_alambic_metadata

    meta = "alambic_metadata"
    left = [{"g1": "x", meta: {"raw_output_a": "up", "raw_output_b": "x"}}]
    right = [{"g2": "z", meta: {"raw_output_a": "up", "raw_output_c": "z"}}]
    (out,) = list(CombineOutputs().process(left, right))
    assert out[0][meta] == {"raw_output_a": ["up", "up"], "raw_output_b": "x", "raw_output_c": "z"}
    (grouped,) = list(GroupColumns(columns=["g1"]).process(left, right))
    assert grouped[0][meta]["raw_output_a"] == ["up", "up"]
    assert merge_alambic_metadata(left[0], right[0], {"no": "metadata"}) == out[0][meta]


def test_expand_columns_decodes_json_encoded_lists() -> None:
    from alambic.steps.columns import ExpandColumns

    step = ExpandColumns(columns=["generations"], encoded=True)
    (out,) = list(step.process([{"q": 1, "generations": '["a", "b"]'}]))
    assert out == [{"q": 1, "generations": "a"}, {"q": 1, "generations": "b"}]
    only = ExpandColumns(columns=["generations", "ids"], encoded=["generations"])
    (out,) = list(only.process([{"generations": '["a"]', "ids": [7]}]))
    assert out == [{"generations": "a", "ids": 7}]
    with pytest.raises(ValueError, match="not JSON"):
        next(step.process([{"generations": "[oops"}]))

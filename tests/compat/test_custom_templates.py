"""A task's ``_template`` replaced in ``load()`` (distilabel's way to customise a built-in
prompt) is what ``format_input`` renders, and what the LLM receives in a pipeline (issue 15)."""

from __future__ import annotations

from typing import Any

import pytest
from jinja2 import Template

from alambic.errors import TemplateError
from alambic.llms.fake import FakeLLM
from alambic.pipeline import Pipeline
from alambic.steps import LoadDataFromDicts
from alambic.steps.tasks import ComplexityScorer, Genstruct, QualityScorer
from alambic.steps.tasks._templates import render

INSTRUCTIONS = ["Say hi.", "Prove it."]


class BracketScorer(ComplexityScorer):
    def load(self) -> None:
        super().load()
        self._template = Template("Score these: {% for i in instructions %}[{{ i }}]{% endfor %}")


def user_text(messages: Any) -> str:
    return str(messages[-1]["content"])


def test_load_puts_the_packaged_template_in_the_slot() -> None:
    scorer = ComplexityScorer(name="c", llm=FakeLLM(), use_default_structured_output=False)
    before = user_text(scorer.format_input({"instructions": INSTRUCTIONS}))
    assert before == render("", "complexity-scorer", instructions=INSTRUCTIONS)
    assert scorer._template is None
    scorer.load()
    assert isinstance(scorer._template, Template)
    assert user_text(scorer.format_input({"instructions": INSTRUCTIONS})) == before


def test_a_template_assigned_in_load_is_rendered() -> None:
    scorer = BracketScorer(name="c", llm=FakeLLM(), use_default_structured_output=False)
    scorer.load()
    assert user_text(scorer.format_input({"instructions": INSTRUCTIONS})) == (
        "Score these: [Say hi.][Prove it.]"
    )


@pytest.mark.parametrize(
    ("task", "row", "expected"),
    [
        (
            QualityScorer,
            {"instruction": "Q", "responses": ["a", "b"]},
            "Q -> a|b|",
        ),
        (Genstruct, {"title": "T", "content": "C"}, "T / C"),
    ],
)
def test_other_tasks_honour_their_template_slot(
    task: type[Any], row: dict[str, Any], expected: str
) -> None:
    sources = {
        QualityScorer: "{{ instruction }} -> {% for r in responses %}{{ r }}|{% endfor %}",
        Genstruct: "{{ title }} / {{ content }}",
    }

    class Custom(task):  # type: ignore[misc,valid-type]
        def load(self) -> None:
            super().load()
            self._template = Template(sources[task])

    kwargs: dict[str, Any] = {"name": "t", "llm": FakeLLM()}
    if task is QualityScorer:
        kwargs["use_default_structured_output"] = False
    step = Custom(**kwargs)
    step.load()
    assert user_text(step.format_input(row)) == expected


def test_template_text_with_an_unknown_variable_names_the_given_ones() -> None:
    class Broken(ComplexityScorer):
        def load(self) -> None:
            super().load()
            self._template = "{{ instruction }}"  # distilabel's variable is `instructions`

    step = Broken(name="c", llm=FakeLLM(), use_default_structured_output=False)
    step.load()
    with pytest.raises(TemplateError, match=r"not given.*\['instructions'\]"):
        step.format_input({"instructions": INSTRUCTIONS})


def test_the_llm_receives_the_custom_prompt_in_a_pipeline() -> None:
    with Pipeline(name="custom-template") as pipeline:
        load = LoadDataFromDicts(data=[{"instructions": INSTRUCTIONS}])
        scorer = BracketScorer(
            name="scorer",
            llm=FakeLLM(reply_fn=lambda messages, i: "[1] 2\n[2] 5"),
            use_default_structured_output=False,
        )
        load >> scorer
    row = pipeline.run(use_cache=False, show_progress=False)["default"]["train"][0]
    assert user_text(row["alambic_metadata"]["raw_input_scorer"]) == (
        "Score these: [Say hi.][Prove it.]"
    )


def test_prometheus_load_fills_the_slot_and_honours_a_replacement() -> None:
    from alambic.steps.tasks import PrometheusEval

    row = {"instruction": "Q", "generation": "A"}
    task = PrometheusEval(name="p", llm=FakeLLM(), mode="absolute", rubric="helpfulness")
    before = user_text(task.format_input(row))
    task.load()
    assert isinstance(task._template, Template)
    assert user_text(task.format_input(row)) == before

    class Mine(PrometheusEval):
        def load(self) -> None:
            super().load()
            self._template = Template("{{ instruction }} | {{ generation }} | {{ rubric[:5] }}")

    mine = Mine(name="p", llm=FakeLLM(), mode="absolute", rubric="helpfulness")
    mine.load()
    assert user_text(mine.format_input(row)).startswith("Q | A | ")

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


# -- TextClassification / TextClustering: TEXT_CLASSIFICATION_TEMPLATE and the slot ------------

DISTILABEL_CLASSIFICATION_VARIABLES = {
    "text",
    "query_title",
    "context",
    "labels_message",
    "available_labels",
    "examples",
    "default_label",
    "labels_format",
}


def test_text_classification_template_takes_distilabels_variables() -> None:
    from jinja2 import Environment, meta

    from alambic.steps.tasks.text_classification import TEXT_CLASSIFICATION_TEMPLATE

    used = meta.find_undeclared_variables(Environment().parse(TEXT_CLASSIFICATION_TEMPLATE))
    assert used == DISTILABEL_CLASSIFICATION_VARIABLES


def test_a_distilabel_style_classification_template_renders_every_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from alambic.steps.tasks import TextClassification, text_classification

    source = "|".join(
        "{{ " + name + " }}" for name in sorted(DISTILABEL_CLASSIFICATION_VARIABLES)
    ).replace("{{ query_title }}", "{{ query_title.lower() }}")
    monkeypatch.setattr(text_classification, "TEXT_CLASSIFICATION_TEMPLATE", source)
    task = TextClassification(
        name="t",
        llm=FakeLLM(),
        available_labels={"bug": "broken"},
        n=2,
        context="Issues.",
        examples=["It crashes"],
        query_title="Issue",
        use_structured_output=False,
    )
    task.load()  # distilabel's load() compiles the constant into _template
    assert isinstance(task._template, Template)
    parts = dict(
        zip(
            sorted(DISTILABEL_CLASSIFICATION_VARIABLES),
            user_text(task.format_input({"text": "Boom"})).split("|"),
            strict=True,
        )
    )
    assert parts["text"] == "Boom"
    assert parts["query_title"] == "issue"
    assert parts["context"] == "\nIssues."  # on a line of its own, as distilabel gives it
    assert "up to 2 labels" in parts["labels_message"]
    assert parts["available_labels"].endswith("- bug: broken")
    assert parts["examples"].strip().endswith("- It crashes")
    assert parts["default_label"] == "Unclassified"
    assert parts["labels_format"] == '["<label>", ...]'


def test_text_classification_honours_its_template_slot() -> None:
    from alambic.steps.tasks import TextClassification

    row = {"text": "The app crashes."}
    kwargs: dict[str, Any] = {
        "name": "t",
        "llm": FakeLLM(),
        "available_labels": ["bug", "feature"],
        "use_structured_output": False,
    }
    plain = TextClassification(**kwargs)
    before = user_text(plain.format_input(row))
    assert plain._template is None
    plain.load()
    assert isinstance(plain._template, Template)
    assert user_text(plain.format_input(row)) == before

    class Mine(TextClassification):
        def load(self) -> None:
            super().load()
            self._template = Template("{{ labels_message }} [{{ text }}]")

    mine = Mine(**kwargs)
    mine.load()
    assert user_text(mine.format_input(row)) == (
        "Choose the one label that fits it best from the list below. [The app crashes.]"
    )
    plain._template = "{{ query_title }} -> {{ text }}"  # set after load(), as text
    assert user_text(plain.format_input(row)) == "Text -> The app crashes."


def test_text_clustering_honours_its_template_slot() -> None:
    from alambic.steps.tasks import TextClustering

    cluster = {"texts": ["Bake bread.", "Boil soup."]}
    plain = TextClustering(name="c", llm=FakeLLM(), n=2)
    before = user_text(plain.format_input(cluster))
    plain.load()
    assert isinstance(plain._template, Template)
    assert (
        user_text(plain.format_input(cluster))
        == before
        == render(
            "text_clustering",
            "user",
            texts=cluster["texts"],
            n=2,
            query_title="Text",
            context="",
        )
    )

    class Mine(TextClustering):
        def load(self) -> None:
            super().load()
            # a template written for distilabel's TextClustering (TextClassification's names)
            self._template = Template("{{ query_title }}s:\n{{ text }}\nAs {{ labels_format }}")

    mine = Mine(name="c", llm=FakeLLM(), n=2)
    mine.load()
    assert user_text(mine.format_input(cluster)) == (
        'Texts:\nText 1:\nBake bread.\n\nText 2:\nBoil soup.\nAs ["<label>", ...]'
    )


def test_a_custom_classification_template_reaches_the_llm_in_a_pipeline() -> None:
    from alambic.steps.tasks import TextClassification

    class Terse(TextClassification):
        def load(self) -> None:
            super().load()
            self._template = Template("Label: {{ text }}")

    with Pipeline(name="custom-classification") as pipeline:
        load = LoadDataFromDicts(data=[{"text": "Crash on start"}])
        terse = Terse(
            name="terse",
            llm=FakeLLM(reply_fn=lambda messages, i: '{"labels": ["bug"]}'),
            available_labels=["bug", "feature"],
            use_structured_output=False,
        )
        load >> terse
    row = pipeline.run(use_cache=False, show_progress=False)["default"]["train"][0]
    assert row["labels"] == "bug"
    assert user_text(row["alambic_metadata"]["raw_input_terse"]) == "Label: Crash on start"

"""UltraFeedback, APIGen and ImprovingTextEmbeddings templates at distilabel's file names with
distilabel's variables, rendered by the tasks themselves (issue 15): what a user renders from
the file is what the LLM gets, and a template assigned in ``load()`` replaces it."""

from __future__ import annotations

import importlib.resources as importlib_resources
from typing import Any

import pytest
from jinja2 import Template

from alambic.llms.fake import FakeLLM
from alambic.steps.tasks import (
    APIGenGenerator,
    APIGenSemanticChecker,
    BitextRetrievalGenerator,
    EmbeddingTaskGenerator,
    GenerateShortTextMatchingData,
    GenerateTextClassificationData,
    GenerateTextRetrievalData,
    MonolingualTripletGenerator,
    UltraFeedback,
)
from alambic.steps.tasks._templates import sandboxed_environment
from alambic.steps.tasks.apigen import SEMANTIC_CHECKER_FORMAT

TEMPLATES = importlib_resources.files("alambic") / "steps" / "tasks" / "templates"
ENV = sandboxed_environment()  # the built-in files use trim_blocks / lstrip_blocks


def from_file(*parts: str, **values: Any) -> str:
    path = TEMPLATES.joinpath(*parts)
    return ENV.from_string(path.read_text(encoding="utf-8")).render(**values).strip()


def user_text(messages: Any) -> str:
    if isinstance(messages, tuple):
        messages = messages[0]
    return str(messages[-1]["content"])


@pytest.mark.parametrize(
    "aspect",
    ["helpfulness", "honesty", "instruction-following", "truthfulness", "overall-rating"],
)
def test_ultrafeedback_aspect_file_is_the_whole_prompt(aspect: str) -> None:
    task = UltraFeedback(
        name="uf", llm=FakeLLM(), aspect=aspect, use_default_structured_output=False
    )
    row = {"instruction": "What is 2+2?", "generations": ["4", "5"]}
    expected = from_file(
        "ultrafeedback",
        f"{aspect}.jinja2",
        instruction="What is 2+2?",
        generations=["4", "5"],
    )
    assert user_text(task.format_input(row)) == expected
    assert "What is 2+2?" in expected
    assert "<text 2>\n5" in expected


def test_ultrafeedback_template_assigned_in_load() -> None:
    class Short(UltraFeedback):
        def load(self) -> None:
            super().load()
            self._template = Template(
                "{{ instruction }}: {% for g in generations %}({{ g }}){% endfor %}"
            )

    task = Short(name="uf", llm=FakeLLM(), use_default_structured_output=False)
    task.load()
    row = {"instruction": "Q", "generations": ["a", None, "b"]}
    assert user_text(task.format_input(row)) == "Q: (a)(b)"  # None generations are not shown


def test_apigen_files_take_distilabels_variables() -> None:
    gen = APIGenGenerator(name="g", llm=FakeLLM(), number=2, is_parallel=True, use_tools=False)
    row = {"examples": "EX", "func_name": "get_weather", "func_desc": "DESC"}
    prompt = user_text(gen.format_input(row))
    # distilabel's variable names: examples, parallel_queries, number, func_name, func_desc,
    # format_inst
    source = TEMPLATES.joinpath("apigen", "generator.jinja2").read_text(encoding="utf-8")
    for name in ("examples", "parallel_queries", "number", "func_name", "func_desc", "format_inst"):
        assert "{{ " + name in source
    assert "EX" in prompt
    assert "get_weather" in prompt
    assert "DESC" in prompt
    assert "JSON list" in prompt  # the format instructions

    class Mine(APIGenGenerator):
        def load(self) -> None:
            super().load()
            self._template = Template(
                "{{ func_name }} x{{ number }} [{{ parallel_queries != '' }}] {{ format_inst[:4] }}"
            )

    mine = Mine(name="g", llm=FakeLLM(), number=3, is_parallel=False, use_tools=False)
    mine.load()
    assert user_text(mine.format_input(row)) == "get_weather x3 [False] Repl"

    checker = APIGenSemanticChecker(name="c", llm=FakeLLM())
    checked = {
        "func_desc": "D",
        "query": "Q?",
        "answers": '[{"name": "f", "arguments": {}}]',
        "execution_result": "ok",
    }
    expected = from_file(
        "apigen",
        "semantic_checker.jinja2",
        func_desc="D",
        query="Q?",
        func_call='[{"name": "f", "arguments": {}}]',
        execution_result="ok",
        format_inst=SEMANTIC_CHECKER_FORMAT,
    )
    assert user_text(checker.format_input(checked)) == expected


@pytest.mark.parametrize(
    ("task", "file"),
    [
        (GenerateTextRetrievalData, "text-retrieval.jinja2"),
        (GenerateShortTextMatchingData, "short-text-matching.jinja2"),
        (GenerateTextClassificationData, "text-classification.jinja2"),
    ],
)
def test_embedding_example_tasks_render_distilabels_files(task: type[Any], file: str) -> None:
    step = task(name="t", llm=FakeLLM(), language="French")
    prompt = user_text(step.format_input({"task": "Find recipes."}))
    values = {"task": "Find recipes.", **step.attributes("Find recipes.")}
    assert prompt == from_file("improving_text_embeddings", file, **values)
    assert "Find recipes." in prompt
    assert "French" in prompt


def test_embedding_generators_render_distilabels_files() -> None:
    for category in (
        "text-retrieval",
        "text-matching-short",
        "text-matching-long",
        "text-classification",
    ):
        brainstorm = EmbeddingTaskGenerator(name="b", llm=FakeLLM(), category=category)
        assert user_text(brainstorm.prompt()) == from_file(
            "improving_text_embeddings", "brainstorming", f"{category}.jinja2"
        )
    triplet = MonolingualTripletGenerator(
        name="m",
        llm=FakeLLM(),
        language="German",
        unit="sentence",
        difficulty="college",
        high_score="5",
        low_score="3",
    )
    assert user_text(triplet.prompt()) == from_file(
        "improving_text_embeddings",
        "monolingual-triplet.jinja2",
        language="German",
        unit="sentence",
        difficulty="college",
        high_score="5",
        low_score="3",
    )
    bitext = BitextRetrievalGenerator(
        name="bt",
        llm=FakeLLM(),
        source_language="English",
        target_language="Spanish",
        unit="phrase",
        difficulty="high school",
        high_score="4",
        low_score="2.5",
    )
    prompt = user_text(bitext.prompt())
    assert prompt == from_file(
        "improving_text_embeddings",
        "bitext-retrieval.jinja2",
        source_language="English",
        target_language="Spanish",
        unit="phrase",
        difficulty="high school",
        high_score="4",
        low_score="2.5",
    )

    class Mine(BitextRetrievalGenerator):
        def load(self) -> None:
            super().load()
            self._template = Template("{{ source_language }}->{{ target_language }}")

    mine = Mine(name="bt", llm=FakeLLM(), target_language="Spanish")
    mine.load()
    assert user_text(mine.prompt()) == "English->Spanish"

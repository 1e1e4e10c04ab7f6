"""The rest of distilabel's public contracts (issue 15), written as distilabel users' code is.

Templates loaded from the package by distilabel's file names and module constants; output
columns with nothing extra; ``get_inputs()`` after mappings; unknown runtime parameters warn;
bad step names raise pydantic's ``ValidationError``; EvolInstructGenerator's counts checked.
"""

from __future__ import annotations

import importlib.resources as importlib_resources
from typing import Any

import pytest
from jinja2 import Template
from pydantic import ValidationError

from alambic.errors import AlambicError, InvalidNameError, RuntimeParameterError
from alambic.llms.fake import FakeLLM
from alambic.pipeline import Pipeline
from alambic.runtime_parameters import UnknownRuntimeParameterWarning
from alambic.steps import FormatChatGenerationDPO, FormatTextGenerationDPO, LoadDataFromDicts
from alambic.steps.tasks import (
    CLAIR,
    URIAL,
    ComplexityScorer,
    EvolInstruct,
    EvolInstructGenerator,
    EvolQuality,
    GenerateSentencePair,
    Genstruct,
    InstructionBacktranslation,
    PrometheusEval,
    QualityScorer,
    SelfInstruct,
    StructuredGeneration,
    TextClassification,
    TextGeneration,
)

LLM = FakeLLM()
TEMPLATES = importlib_resources.files("alambic") / "steps" / "tasks" / "templates"


def _load(name: str) -> Template:
    """What distilabel's tasks (and users overriding them) do in ``load()``."""
    return Template(open(str(TEMPLATES / name)).read())


def _user(messages: Any) -> str:
    if isinstance(messages, tuple):
        messages = messages[0]
    return str(messages[-1]["content"])


# -- 1. templates under distilabel's names ----------------------------------------------------


@pytest.mark.parametrize(
    ("path", "task", "row", "values"),
    [
        (
            "complexity-scorer.jinja2",
            ComplexityScorer(name="c", llm=LLM),
            {"instructions": ["Say hi.", "Prove it."]},
            {"instructions": ["Say hi.", "Prove it."]},
        ),
        (
            "quality-scorer.jinja2",
            QualityScorer(name="q", llm=LLM),
            {"instruction": "Q?", "responses": ["a", "b"]},
            {"instruction": "Q?", "responses": ["a", "b"]},
        ),
        (
            "genstruct.jinja2",
            Genstruct(name="g", llm=LLM),
            {"title": "Tides", "content": "The moon pulls the sea."},
            {"title": "Tides", "content": "The moon pulls the sea."},
        ),
        (
            "instruction-backtranslation.jinja2",
            InstructionBacktranslation(name="b", llm=LLM),
            {"instruction": "Q?", "generation": "A."},
            {"instruction": "Q?", "generation": "A."},
        ),
        (
            "clair.jinja2",
            CLAIR(name="cl", llm=LLM),
            {"task": "Add 2 and 2.", "student_solution": "5"},
            {"task": "Add 2 and 2.", "student_solution": "5"},
        ),
        (
            "generate-sentence-pair.jinja2",
            GenerateSentencePair(name="s", llm=LLM, action="paraphrase"),
            {"anchor": "Cats sleep a lot."},
            {"anchor": "Cats sleep a lot.", "context": None},
        ),
        (
            "prometheus/absolute_without_reference.jinja2",
            PrometheusEval(name="p", llm=LLM, mode="absolute", rubric="helpfulness"),
            {"instruction": "Q?", "generation": "A."},
            {"instruction": "Q?", "generation": "A.", "rubric": None},
        ),
        (
            "prometheus/relative_with_reference.jinja2",
            PrometheusEval(
                name="p2", llm=LLM, mode="relative", rubric="helpfulness", reference=True
            ),
            {"instruction": "Q?", "generations": ["A.", "B."], "reference": "R."},
            {"instruction": "Q?", "generations": ["A.", "B."], "reference": "R.", "rubric": None},
        ),
    ],
)
def test_jinja2_files_at_distilabels_paths_render_with_distilabels_variables(
    path: str, task: Any, row: dict[str, Any], values: dict[str, Any]
) -> None:
    expected = _user(task.format_input(row))
    if "rubric" in values:  # the task's rubric text (relative mode: its first line)
        rubric = task.available_rubrics[task.rubric]
        values["rubric"] = rubric if task.mode == "absolute" else rubric.strip().splitlines()[0]
    rendered = _load(path).render(**values).strip()
    # the task renders that very file (whitespace options aside)
    assert " ".join(rendered.split()) == " ".join(expected.split()), path
    for value in row.values():
        for text in value if isinstance(value, list) else [value]:
            assert text in rendered


def test_prometheus_with_and_without_reference_files_are_one_template() -> None:
    for mode in ("absolute", "relative"):
        with_ref = (TEMPLATES / "prometheus" / f"{mode}_with_reference.jinja2").read_text()
        without = (TEMPLATES / "prometheus" / f"{mode}_without_reference.jinja2").read_text()
        assert with_ref == without
    rendered = _load("prometheus/absolute_without_reference.jinja2").render(
        instruction="Q?", generation="A.", rubric="R"
    )
    assert "A." in rendered
    assert "Reference" not in rendered


def test_self_instruct_and_urial_files() -> None:
    task = SelfInstruct(name="si", llm=LLM, num_instructions=3)
    expected = _user(task.format_input({"input": "Rivers"}))
    rendered = _load("self-instruct.jinja2").render(
        input="Rivers",
        num_instructions=3,
        criteria_for_query_generation=task.criteria_for_query_generation,
        application_description=task.application_description,
    )
    assert " ".join(rendered.split()) == " ".join(expected.split())
    messages = [{"role": "user", "content": "What is a tide?"}]
    prompt = _load("urial.jinja2").render(messages=messages)
    urial = URIAL(name="u", llm=LLM)
    expected = _user(urial.format_input({"instruction": "What is a tide?"}))
    assert " ".join(prompt.split()) == " ".join(expected.split())
    assert "What is a tide?" in prompt


def test_module_constants_under_distilabels_names() -> None:
    from alambic.steps.tasks import clair, magpie, text_classification
    from alambic.steps.tasks.evol_complexity import MUTATION_TEMPLATES as COMPLEXITY
    from alambic.steps.tasks.evol_instruct import (
        GENERATION_MUTATION_TEMPLATES,
        MUTATION_TEMPLATES,
    )
    from alambic.steps.tasks.evol_quality import MUTATION_TEMPLATES as QUALITY

    assert set(MUTATION_TEMPLATES) == {
        "CONSTRAINTS",
        "DEEPENING",
        "CONCRETIZING",
        "INCREASED_REASONING_STEPS",
        "BREADTH",
    }
    assert set(GENERATION_MUTATION_TEMPLATES) == {"FRESH_START", *MUTATION_TEMPLATES}
    assert set(COMPLEXITY) == set(MUTATION_TEMPLATES) - {"BREADTH"}
    assert set(QUALITY) == {"HELPFULNESS", "RELEVANCE", "DEEPENING", "CREATIVITY", "DETAILS"}
    assert all("<PROMPT>" in t for t in [*MUTATION_TEMPLATES.values(), *QUALITY.values()])
    assert all("<RESPONSE>" in t for t in QUALITY.values())
    assert CLAIR(name="c", llm=LLM).system_prompt == clair.SYSTEM_PROMPT
    assert "{{ text }}" in text_classification.TEXT_CLASSIFICATION_TEMPLATE
    assert "follow-up" in magpie.MAGPIE_MULTI_TURN_SYSTEM_PROMPT


def test_mutation_templates_as_distilabel_users_pass_them() -> None:
    from alambic.steps.tasks.evol_instruct import MUTATION_TEMPLATES

    task = EvolInstruct(
        name="e", llm=LLM, mutation_templates={"SHOUT": "Rewrite in capitals: <PROMPT>"}
    )
    assert _user(task.format_input({"instruction": "hi"})) == "Rewrite in capitals: hi"
    default = EvolInstruct(name="e2", llm=LLM, mutation_templates=MUTATION_TEMPLATES)
    assert "Name a city." in _user(default.format_input({"instruction": "Name a city."}))
    quality = EvolQuality(
        name="q", llm=LLM, mutation_templates={"X": "Better answer to <PROMPT>: <RESPONSE>"}
    )
    assert _user(quality.format_input({"instruction": "Q", "response": "R"})) == (
        "Better answer to Q: R"
    )
    with pytest.raises(ValidationError, match=r"mutation_templates\['X'\] lacks \['<PROMPT>'\]"):
        EvolInstruct(name="e3", llm=LLM, mutation_templates={"X": "no placeholder"})
    with pytest.raises(ValidationError, match=r"lacks \['<RESPONSE>'\]"):
        EvolQuality(name="q2", llm=LLM, mutation_templates={"X": "only <PROMPT>"})


def test_replacing_text_classification_template_changes_the_prompt(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from alambic.steps.tasks import text_classification

    monkeypatch.setattr(
        text_classification, "TEXT_CLASSIFICATION_TEMPLATE", "Label this: {{ text }}"
    )
    task = TextClassification(name="t", llm=LLM, use_structured_output=False)
    assert _user(task.format_input({"text": "I love it"})) == "Label this: I love it"


# -- 2. no extra output columns ---------------------------------------------------------------


def test_format_dpo_adds_no_column_unless_asked() -> None:
    rows = [
        {"instruction": "2+2?", "generations": ["4", "5"], "ratings": [5, 1]},
        {"instruction": "Pick", "generations": ["a", "b"], "ratings": [3, 3]},
    ]
    step = FormatTextGenerationDPO(name="dpo")
    assert "pair_status" not in step.outputs
    (out,) = list(step.process([dict(r) for r in rows]))
    assert all("pair_status" not in r for r in out)
    assert "alambic_metadata" not in out[0]  # a paired row is exactly distilabel's columns
    assert out[1]["alambic_metadata"] == {"pair_status_dpo": "tie"}
    assert out[1]["chosen"] is None
    flagged = FormatChatGenerationDPO(name="chat", add_pair_status=True)
    assert flagged.outputs[-1] == "pair_status"


def test_structured_generation_outputs_only_generation() -> None:
    task = StructuredGeneration(name="sg", llm=LLM)
    assert task.outputs == ["generation", "model_name"]
    row = {"instruction": "x", "structured_output": {"type": "object"}}
    assert task.format_output('{"a": 1}', row) == {"generation": '{"a": 1}'}
    assert task.format_output(None, row) == {"generation": None}
    asked = StructuredGeneration(name="sg2", llm=LLM, add_parsed_generation=True)
    assert asked.format_output('{"a": 1}', row)["parsed_generation"] == {"a": 1}


# -- 3. get_inputs() / get_outputs() after mappings -------------------------------------------


def test_get_inputs_and_outputs_honour_mappings() -> None:
    task = TextGeneration(
        name="gen",
        llm=LLM,
        input_mappings={"instruction": "prompt"},
        output_mappings={"generation": "answer"},
    )
    assert task.get_inputs() == {"prompt": True, "system_prompt": False}
    assert task.get_outputs() == {"answer": True, "model_name": True}
    assert task.own_inputs() == {"instruction": True, "system_prompt": False}
    with Pipeline(name="mapped") as pipeline:
        load = LoadDataFromDicts(name="load", data=[{"prompt": "hi"}])
        load >> TextGeneration(
            name="gen",
            llm=FakeLLM(),
            input_mappings={"instruction": "prompt"},
            output_mappings={"generation": "answer"},
        )
    rows = pipeline.run(use_cache=False, show_progress=False)["default"]["train"].to_list()
    assert rows[0]["answer"] is not None
    assert "generation" not in rows[0]


# -- 4. unknown runtime parameters warn ---------------------------------------------------------


def test_unknown_runtime_parameters_warn_with_a_did_you_mean_and_the_run_goes_on() -> None:
    with Pipeline(name="unknown-params") as pipeline:
        load = LoadDataFromDicts(name="load", data=[{"instruction": "hi"}])
        load >> TextGeneration(name="gen", llm=FakeLLM())
    with pytest.warns(UnknownRuntimeParameterWarning) as caught:
        distiset = pipeline.run(
            parameters={
                "gen": {"input_batch_sise": 3, "llm": {"generation_kwargs": {}, "tmp": 1}},
                "genn": {"input_batch_size": 2},
            },
            use_cache=False,
            show_progress=False,
        )
    messages = [str(w.message) for w in caught]
    assert any(
        "'input_batch_sise'" in m and "Did you mean 'input_batch_size'" in m for m in messages
    )
    assert any("'tmp'" in m for m in messages)
    assert any("step 'genn'" in m and "Did you mean 'gen'" in m for m in messages)
    assert len(distiset["default"]["train"]) == 1
    with pytest.raises(RuntimeParameterError, match="input_batch_sise"):
        pipeline.run(
            parameters={"gen": {"input_batch_sise": 3}},
            use_cache=False,
            show_progress=False,
            strict_parameters=True,
        )


# -- 5. invalid names raise pydantic's ValidationError --------------------------------------


def test_invalid_step_names_raise_pydantics_validation_error() -> None:
    with pytest.raises(ValidationError) as info:
        TextGeneration(name="my step", llm=LLM)
    error = info.value
    assert isinstance(error, InvalidNameError)
    assert isinstance(error, AlambicError)
    assert error.errors()[0]["loc"] == ("name",)
    assert error.errors()[0]["input"] == "my step"
    assert "'my_step'" in str(error)  # the fix
    assert error.title == "TextGeneration"
    with pytest.raises(ValidationError, match="Invalid pipeline name 'a/b'"):
        Pipeline(name="a/b")


# -- 7. EvolInstructGenerator's counts --------------------------------------------------------


def test_evol_instruct_generator_refuses_counts_it_cannot_reach() -> None:
    task = EvolInstructGenerator(name="g", llm=LLM, num_instructions=5000, batch_size=10)
    with pytest.raises(
        ValueError,
        match=r"num_instructions=5000 cannot be reached.*= 200.*max_rounds to at least 500",
    ):
        task.load()
    lengths = EvolInstructGenerator(
        name="g2", llm=LLM, num_instructions=2, min_length=50, max_length=20
    )
    with pytest.raises(ValueError, match=r"min_length=50 is above max_length=20"):
        lengths.load()
    empty = EvolInstructGenerator(name="g3", llm=LLM, num_instructions=2, mutations={})
    with pytest.raises(ValueError, match="mutations is empty"):
        next(iter(empty.process()))
    with pytest.raises(ValidationError, match="num_instructions"):
        EvolInstructGenerator(name="g4", llm=LLM, num_instructions=0)

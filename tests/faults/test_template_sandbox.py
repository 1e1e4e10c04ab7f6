"""Templates render in Jinja's sandbox: a template cannot walk attributes to reach ``os``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from alambic.errors import TemplateError
from alambic.llms.fake import FakeLLM
from alambic.pipeline import Pipeline
from alambic.steps import LoadDataFromDicts
from alambic.steps.tasks import TextGeneration
from alambic.steps.tasks._templates import (
    check_template,
    render_checked,
    sandboxed_environment,
)

ATTACKS = [
    "{{ instruction.__class__.__mro__[1].__subclasses__() }}",
    "{{ instruction['__class__'] }}",
    "{% set c = instruction.__class__ %}{{ c }}",
    "{{ instruction|attr('__class__') }}",
]


@pytest.mark.parametrize("template", ATTACKS)
def test_text_generation_refuses_attribute_walks_at_load(template: str) -> None:
    task = TextGeneration(name="gen", llm=FakeLLM(), template=template, columns="instruction")
    with pytest.raises(TemplateError, match=r"Step 'gen' \(TextGeneration\).*private names"):
        task.load()
    assert task.llm.history == []  # type: ignore[attr-defined]


def test_a_walk_the_static_check_cannot_see_is_refused_by_the_sandbox(tmp_path: Path) -> None:
    # the attribute name is built at render time: only the sandbox can stop it
    marker = tmp_path / "pwned"
    template = (
        "{{ (instruction|attr(prefix ~ 'class' ~ prefix)).mro()[1]"
        f"|attr(prefix ~ 'subclasses' ~ prefix) }}}}{{{{ '{marker}' }}}}"
    )
    compiled = check_template(template, owner="Step 'x'")
    with pytest.raises(TemplateError, match=r"refused by the sandbox.*__class__"):
        render_checked(compiled, {"instruction": "hi", "prefix": "__"}, owner="Step 'x'")
    assert not marker.exists()


def test_methods_that_mutate_values_are_refused() -> None:
    compiled = sandboxed_environment().from_string("{{ items.append(3) }}{{ items }}")
    items = [1, 2]
    with pytest.raises(TemplateError, match="append"):
        render_checked(compiled, {"items": items}, owner="Step 'x'")
    assert items == [1, 2]


def test_reaching_os_through_globals_is_refused() -> None:
    compiled = sandboxed_environment().from_string("{{ cycler.__init__.__globals__.os }}")
    with pytest.raises(TemplateError, match="__init__"):
        render_checked(compiled, {}, owner="Step 'x'")


def test_an_attack_in_a_pipeline_fails_before_any_request(tmp_path: Path) -> None:
    marker = tmp_path / "touched"
    llm = FakeLLM()
    with Pipeline(name="sandbox") as pipeline:
        load = LoadDataFromDicts(data=[{"instruction": "hi"}])
        gen = TextGeneration(
            name="gen",
            llm=llm,
            template=(
                "{{ instruction.__class__.__mro__[1].__subclasses__()[0].__init__.__globals__"
                f"['os'].system('touch {marker}') }}}}"
            ),
        )
        load >> gen
    with pytest.raises(TemplateError, match="private names"):
        pipeline.run(use_cache=False, show_progress=False)
    assert not marker.exists()
    assert os.path.exists(tmp_path)


def test_ordinary_templates_still_render() -> None:
    task = TextGeneration(
        name="gen",
        llm=FakeLLM(),
        template="Translate to {{ lang }}:\n{% for w in words %}{{ w|upper }} {% endfor %}",
        columns=["lang", "words"],
    )
    task.load()
    compiled = task._compile()
    text = render_checked(compiled, {"lang": "French", "words": ["a", "b"]}, owner="x")
    assert text == "Translate to French:\nA B "

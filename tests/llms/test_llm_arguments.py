"""A misspelt LLM setting is an error naming the closest real one, and never echoes a key."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from alambic.llms.openai import OpenAILLM
from alambic.steps import UnknownArgumentWarning
from alambic.steps.tasks.text_generation import TextGeneration


def test_an_unknown_llm_argument_is_refused_with_did_you_mean() -> None:
    with pytest.raises(
        ValidationError, match=r"'max_concurency' \(did you mean 'max_concurrency'\?\)"
    ):
        OpenAILLM(model="m", max_concurency=3)


def test_the_error_never_echoes_the_key() -> None:
    with pytest.raises(ValidationError) as caught:
        OpenAILLM(model="m", api_key="sk-secret-value-123", timeot=3)
    assert "did you mean 'timeout'" in str(caught.value)
    assert "sk-secret-value-123" not in str(caught.value)


def test_a_misspelt_step_argument_is_refused_with_did_you_mean() -> None:
    """Issue 11 #11: steps raise for a typo of a real argument, as LLMs do, and the error
    echoes no argument value (the LLM's key)."""
    with pytest.raises(
        ValidationError, match=r"'input_batch_sise' \(did you mean 'input_batch_size'\?\)"
    ) as caught:
        TextGeneration(
            name="t", llm=OpenAILLM(model="m", api_key="sk-secret-value-123"), input_batch_sise=3
        )
    assert "sk-secret-value-123" not in str(caught.value)
    assert "Its arguments are:" in str(caught.value)


def test_an_unknown_step_argument_far_from_every_field_warns_as_the_spec_requires() -> None:
    """The spec's own custom-task example passes an argument its class does not declare
    (``num_instructions``, six edits from ``num_generations``) and must run: it is ignored
    with a warning."""
    with pytest.warns(UnknownArgumentWarning, match=r"'num_instructions'"):
        task = TextGeneration(name="t", llm=OpenAILLM(model="m"), num_instructions=1)
    assert task.num_generations == 1

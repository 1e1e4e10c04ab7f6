"""`--param` parsing in process: typed values, nested components, dict keys merged."""

from __future__ import annotations

import pytest

from alambic.cli._common import CLIError, parse_params
from alambic.errors import RuntimeParameterError
from alambic.llms import FakeLLM
from alambic.pipeline import Pipeline
from alambic.steps import LoadDataFromDicts
from alambic.steps.tasks import TextGeneration


def _pipeline() -> Pipeline:
    with Pipeline(name="params") as pipeline:
        LoadDataFromDicts(data=[{"instruction": "a"}]) >> TextGeneration(
            name="gen", llm=FakeLLM(generation_kwargs={"max_new_tokens": 8})
        )
    return pipeline


def test_values_are_typed_and_dict_keys_merge() -> None:
    pipeline = _pipeline()
    params = parse_params(
        pipeline,
        [
            "gen.input_batch_size=7",
            "gen.llm.generation_kwargs.temperature=0.2",
            "gen.llm.generation_kwargs.stop=[x, y]",
            "gen.llm.max_concurrency=3",
        ],
    )
    assert params == {
        "gen": {
            "input_batch_size": 7,
            "llm": {
                "generation_kwargs": {"max_new_tokens": 8, "temperature": 0.2, "stop": ["x", "y"]},
                "max_concurrency": 3,
            },
        }
    }
    pipeline.apply_parameters(params)
    assert pipeline.get_step("gen").llm.generation_kwargs["temperature"] == 0.2  # type: ignore[attr-defined]


def test_mistakes_name_what_exists() -> None:
    pipeline = _pipeline()
    with pytest.raises(RuntimeParameterError, match=r"Did you mean 'max_concurrency'\?"):
        parse_params(pipeline, ["gen.llm.max_concurency=3"])
    with pytest.raises(CLIError, match=r"STEP\.FIELD=VALUE"):
        parse_params(pipeline, ["gen=3"])
    with pytest.raises(RuntimeParameterError, match="has no runtime parameter 'system_prompt'"):
        parse_params(pipeline, ["gen.system_prompt=hi"])

"""TransformersLLM on the tiny Llama the suite builds: chat template, batching, statistics."""

from __future__ import annotations

from pathlib import Path

import pytest

from alambic.errors import ModelNotAvailableError
from alambic.llms import TransformersLLM
from alambic.pipeline import Pipeline
from alambic.steps import LoadDataFromDicts
from alambic.steps.tasks import TextGeneration


def test_generate_fixed_length_with_statistics(tiny_model_path: Path) -> None:
    llm = TransformersLLM(model=str(tiny_model_path), batch_size=2)
    llm.load()
    prompts = [[{"role": "user", "content": f"say {i}"}] for i in range(3)]
    out = llm.generate(
        prompts, num_generations=2, max_new_tokens=5, min_new_tokens=5, do_sample=False
    )
    assert len(out) == 3
    for item in out:
        assert len(item["generations"]) == 2
        assert all(isinstance(t, str) for t in item["generations"])
        assert item["statistics"]["output_tokens"] == [5, 5]
        assert item["statistics"]["input_tokens"][0] > 3
    assert "<|im_start|>assistant" in llm.prepare_prompt(prompts[0])


def test_greedy_generation_is_deterministic(tiny_model_path: Path) -> None:
    llm = TransformersLLM(
        model=str(tiny_model_path), generation_kwargs={"do_sample": False, "max_new_tokens": 6}
    )
    llm.load()
    a = llm.generate([[{"role": "user", "content": "hello"}]])
    b = llm.generate([[{"role": "user", "content": "hello"}]])
    assert a[0]["generations"] == b[0]["generations"]


def test_unknown_generation_setting_is_an_error(tiny_model_path: Path) -> None:
    llm = TransformersLLM(model=str(tiny_model_path))
    llm.load()
    with pytest.raises(ValueError, match=r"unknown generation settings \['max_tokens'\]"):
        llm.generate([[{"role": "user", "content": "x"}]], max_tokens=3)


def test_missing_model_offline_is_a_clear_error() -> None:
    llm = TransformersLLM(model="nobody/does-not-exist")
    with pytest.raises(
        ModelNotAvailableError, match="Could not download the model 'nobody/does-not-exist'"
    ):
        llm.load()


def test_text_generation_pipeline_on_the_tiny_model(tiny_model_path: Path) -> None:
    with Pipeline(name="tiny") as pipeline:
        load = LoadDataFromDicts(
            data=[{"instruction": f"question {i}"} for i in range(5)], batch_size=2
        )
        task = TextGeneration(
            llm=TransformersLLM(
                model=str(tiny_model_path), generation_kwargs={"max_new_tokens": 4}
            ),
            input_batch_size=3,
        )
        load >> task
    rows = pipeline.run(use_cache=False, show_progress=False)["default"]["train"]
    assert rows["instruction"] == [f"question {i}" for i in range(5)]
    assert all(isinstance(g, str) for g in rows["generation"])

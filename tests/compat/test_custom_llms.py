"""Custom LLMs written as distilabel's guide shows them, run by alambic's machinery."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from alambic.llms import LLM, AsyncLLM
from alambic.llms.typing import FormattedInput, GenerateOutput
from alambic.pipeline import Pipeline
from alambic.steps import LoadDataFromDicts
from alambic.steps.tasks import TextGeneration


class CountingLLM(AsyncLLM):
    """distilabel style: the public ``agenerate`` overridden, plus ``model_name`` and ``load``."""

    calls: int = 0
    in_flight: int = 0
    most_in_flight: int = 0
    fail_on: str | None = None

    @property
    def model_name(self) -> str:
        return "counting"

    def load(self) -> None:
        super().load()

    async def agenerate(  # type: ignore[override]
        self, input: FormattedInput, num_generations: int = 1, **kwargs: Any
    ) -> GenerateOutput:
        type(self).calls += 1
        type(self).in_flight += 1
        type(self).most_in_flight = max(type(self).most_in_flight, type(self).in_flight)
        try:
            await asyncio.sleep(0.02)
            text = str(input[-1]["content"])  # type: ignore[index]
            if text == self.fail_on:
                raise RuntimeError("the backend is down")
            return {
                "generations": [f"re: {text}"] * num_generations,
                "statistics": {
                    "input_tokens": [3] * num_generations,
                    "output_tokens": [4] * num_generations,
                },
            }
        finally:
            type(self).in_flight -= 1


@pytest.fixture(autouse=True)
def _reset() -> None:
    CountingLLM.calls = CountingLLM.in_flight = CountingLLM.most_in_flight = 0


def test_agenerate_override_instantiates_and_answers_standalone() -> None:
    llm = CountingLLM()
    llm.load()
    out = llm.generate([[{"role": "user", "content": "hi"}]], num_generations=2)
    assert out == [
        {
            "generations": ["re: hi", "re: hi"],
            "statistics": {"input_tokens": [3, 3], "output_tokens": [4, 4]},
        }
    ]


def test_agenerate_override_runs_under_the_scheduler_cache_and_failure_handling() -> None:
    llm = CountingLLM(max_concurrency=2, max_retries=0, fail_on="q3")
    with Pipeline(name="custom-async") as pipeline:
        load = LoadDataFromDicts(data=[{"instruction": f"q{i}"} for i in range(6)])
        gen = TextGeneration(name="gen", llm=llm)
        load >> gen
    rows = pipeline.run(use_cache=False)["default"]["train"]
    assert CountingLLM.most_in_flight <= 2  # the scheduler's concurrency limit held
    assert list(rows["generation"]) == ["re: q0", "re: q1", "re: q2", None, "re: q4", "re: q5"]
    error = rows["alambic_metadata"][3]["error_gen"]
    assert "the backend is down" in error["message"]
    assert rows["alambic_metadata"][0]["statistics_gen"] == {"input_tokens": 3, "output_tokens": 4}
    calls = CountingLLM.calls

    with Pipeline(name="custom-async-again") as again:
        load = LoadDataFromDicts(data=[{"instruction": f"q{i}"} for i in range(6)])
        gen = TextGeneration(
            name="gen", llm=CountingLLM(max_concurrency=2, max_retries=0, fail_on="q3")
        )
        load >> gen
    rows = again.run(use_cache=False)["default"]["train"]
    assert list(rows["generation"])[:3] == ["re: q0", "re: q1", "re: q2"]
    # five answers came from the request cache; only the failed request was sent again
    assert CountingLLM.calls == calls + 1


def test_agenerate_returning_a_plain_list_of_texts_is_accepted() -> None:
    class ListLLM(AsyncLLM):
        @property
        def model_name(self) -> str:
            return "list"

        async def agenerate(  # type: ignore[override]
            self, input: FormattedInput, num_generations: int = 1, **kwargs: Any
        ) -> Any:
            return ["a"] * num_generations

    llm = ListLLM()
    llm.load()
    assert llm.generate([[{"role": "user", "content": "x"}]]) == [
        {"generations": ["a"], "statistics": {"input_tokens": [None], "output_tokens": [None]}}
    ]


def test_a_sync_agenerate_override_is_refused_with_the_fix() -> None:
    with pytest.raises(TypeError, match="async def agenerate"):

        class Bad(AsyncLLM):
            @property
            def model_name(self) -> str:
                return "bad"

            def agenerate(self, input: Any, num_generations: int = 1, **kwargs: Any) -> Any:  # type: ignore[override]
                return []


def test_sync_generate_override_keeps_working() -> None:
    class SyncLLM(LLM):
        @property
        def model_name(self) -> str:
            return "sync"

        def load(self) -> None:
            super().load()

        def generate(  # type: ignore[override]
            self, inputs: list[FormattedInput], num_generations: int = 1, **kwargs: Any
        ) -> list[GenerateOutput]:
            return [
                {
                    "generations": ["ok"] * num_generations,
                    "statistics": {"input_tokens": [1], "output_tokens": [1]},
                }
                for _ in inputs
            ]

    with Pipeline(name="custom-sync") as pipeline:
        load = LoadDataFromDicts(data=[{"instruction": "a"}, {"instruction": "b"}])
        load >> TextGeneration(name="gen", llm=SyncLLM())
    rows = pipeline.run(use_cache=False)["default"]["train"]
    assert list(rows["generation"]) == ["ok", "ok"]

"""One request path: raw completions go through the request cache, the scheduler and the
fan-out like chat requests, for API clients and local engines alike (issue 10)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import pytest

from alambic.llms.base import LLM, AsyncLLM
from alambic.llms.openai import OpenAILLM
from alambic.llms.typing import GenerateOutput
from alambic.pipeline.store.request_cache import RequestCacheStore
from alambic.testing.openai_server import OpenAITestServer

pytestmark = pytest.mark.timeout(60)

Factory = Callable[..., OpenAITestServer]


def test_raw_completions_are_answered_from_the_request_cache(
    openai_server_factory: Factory, tmp_path: Path
) -> None:
    server = openai_server_factory()
    cache = RequestCacheStore.open(tmp_path / "requests.sqlite")
    try:
        llm = OpenAILLM(model="test-model", base_url=server.base_url)
        llm.load()
        llm.set_request_cache(cache)
        first = llm.complete(["Once upon", "A B C"], num_generations=2)
        assert [o["generations"] for o in first] == [
            ["reply to: Once upon", "reply to: Once upon #1"],
            ["reply to: A B C", "reply to: A B C #1"],
        ]
        assert server.stats["paths"] == {"/v1/completions": 2}
        again = llm.complete(["Once upon", "A B C"], num_generations=2)
        assert [o["generations"] for o in again] == [o["generations"] for o in first]
        assert server.stats["total_requests"] == 2  # a rerun pays nothing
        # a chat request with the same text is not answered by the raw completion's entry
        chat = llm.generate([[{"role": "user", "content": "Once upon"}]])
        assert chat[0]["generations"] == ["reply to: Once upon"]
        assert server.stats["paths"] == {"/v1/completions": 2, "/v1/chat/completions": 1}
    finally:
        cache.close()


def test_raw_completions_fan_out_for_servers_that_ignore_n(
    openai_server_factory: Factory,
) -> None:
    server = openai_server_factory(honour_n=False)
    llm = OpenAILLM(model="test-model", base_url=server.base_url)
    llm.load()
    out = llm.complete(["go"], num_generations=3)
    assert out[0]["generations"] == ["reply to: go"] * 3
    assert server.stats["paths"] == {"/v1/completions": 3}


class CountingEngine(LLM):
    """A local engine with raw completions, counting what reaches it."""

    supports_raw_completion: ClassVar[bool] = True
    calls: list[list[str]] = []

    @property
    def model_name(self) -> str:
        return "counting"

    def _complete(
        self, prompts: list[str], num_generations: int, **generation_kwargs: Any
    ) -> list[GenerateOutput]:
        self.calls.append(list(prompts))
        return [
            {
                "generations": [f"{p}+{j}" for j in range(num_generations)],
                "statistics": {
                    "input_tokens": [1] * num_generations,
                    "output_tokens": [1] * num_generations,
                },
            }
            for p in prompts
        ]


def test_a_local_engines_complete_is_cached_like_generate(tmp_path: Path) -> None:
    cache = RequestCacheStore.open(tmp_path / "requests.sqlite")
    try:
        engine = CountingEngine(calls=[])
        engine.set_request_cache(cache)
        assert [o["generations"] for o in engine.complete(["a", "b"])] == [["a+0"], ["b+0"]]
        assert [o["generations"] for o in engine.complete(["b", "c"])] == [["b+0"], ["c+0"]]
        assert engine.calls == [["a", "b"], ["c"]]
    finally:
        cache.close()


def test_chat_only_backends_refuse_raw_completions_with_the_fix() -> None:
    class ChatOnly(AsyncLLM):
        @property
        def model_name(self) -> str:
            return "chat"

        async def _agenerate(
            self, input: Any, num_generations: int, **generation_kwargs: Any
        ) -> GenerateOutput:
            raise AssertionError("not called")

    with pytest.raises(NotImplementedError, match="/v1/completions"):
        ChatOnly().complete(["x"])


def test_contract_hooks_for_executors(openai_server_factory: Factory) -> None:
    server = openai_server_factory()
    api = OpenAILLM(model="test-model", base_url=server.base_url, max_concurrency=7)
    engine = CountingEngine(calls=[])
    assert (api.concurrency_hint(), api.answers_concurrently) == (7, True)
    assert (engine.concurrency_hint(), engine.answers_concurrently) == (1, False)
    assert engine.request_counters() is None
    api.load()
    api.generate([[{"role": "user", "content": "x"}]])
    counters = api.request_counters()
    assert counters is not None
    assert counters.requests == 1


def test_a_magpie_rerun_in_another_pipeline_makes_no_request(
    openai_server_factory: Factory,
) -> None:
    from alambic.pipeline import Pipeline
    from alambic.steps import LoadDataFromDicts
    from alambic.steps.tasks import Magpie

    server = openai_server_factory()

    def run(name: str) -> list[Any]:
        llm = OpenAILLM(model="test-model", base_url=server.base_url)
        with Pipeline(name=name) as pipeline:
            load = LoadDataFromDicts(name="load", data=[{"x": i} for i in range(6)])
            load >> Magpie(
                name="magpie", llm=llm, only_instruction=True, pre_query_template="qwen2"
            )
        rows = pipeline.run(show_progress=False)["default"]["train"]
        return list(rows["instruction"])

    first = run("magpie-a")
    completions = server.stats["paths"].get("/v1/completions", 0)
    assert completions > 0
    second = run("magpie-b")  # another run store, the same request cache
    assert second == first
    assert server.stats["paths"].get("/v1/completions", 0) == completions

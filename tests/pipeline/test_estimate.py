"""``Pipeline.estimate`` against what the local OpenAI test server actually receives.

The test server counts whitespace-separated words as tokens, so a word counter is its exact
tokenizer: request counts and input tokens must match exactly; output tokens are an upper
bound (``max_new_tokens``) or, with ``sample=``, within a stated tolerance.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from alambic.llms import OpenAILLM
from alambic.llms.typing import ChatType
from alambic.pipeline import Pipeline
from alambic.steps import LoadDataFromDicts, step
from alambic.steps.tasks import TextGeneration
from alambic.testing.openai_server import OpenAITestServer

SAMPLE_TOLERANCE = 0.30  # output tokens from a sample: within 30% of what the server sends


def words(messages: ChatType) -> int:
    return sum(len(str(m["content"]).split()) for m in messages)


def _rows(n: int) -> list[dict[str, Any]]:
    return [{"instruction": f"question {i} " + "word " * (i % 7)} for i in range(n)]


@step(inputs=["instruction"], outputs=["instruction"])
def KeepEven(inputs: list[dict[str, Any]]) -> Any:
    yield [r for r in inputs if int(r["instruction"].split()[1]) % 2 == 0]


def _two_task_pipeline(base_url: str, *, cap1: int | None, cap2: int, **llm: Any) -> Pipeline:
    def make(cap: int | None) -> OpenAILLM:
        kwargs = {"max_new_tokens": cap} if cap is not None else {}
        return OpenAILLM(
            model="gpt-4o-mini",
            base_url=base_url,
            generation_kwargs=kwargs,
            price_per_million_input=1.5,
            price_per_million_output=6,
            **llm,
        )

    with Pipeline(name="estimate-two") as pipeline:
        load = LoadDataFromDicts(data=_rows(30), batch_size=7)
        keep = KeepEven()
        first = TextGeneration(name="first", llm=make(cap1), num_generations=2)
        second = TextGeneration(
            name="second", llm=make(cap2), input_mappings={"instruction": "generation"}
        )
        load >> keep >> first >> second
    return pipeline


def test_estimate_matches_server_counts_exactly(openai_server: OpenAITestServer) -> None:
    pipeline = _two_task_pipeline(openai_server.base_url, cap1=3, cap2=2)
    estimate = pipeline.estimate(token_counters={"first": words, "second": words})
    assert openai_server.stats["total_requests"] == 0  # estimating sends nothing

    pipeline.run(use_cache=False, show_progress=False, storage=False)
    stats = openai_server.stats
    first, second = estimate.step("first"), estimate.step("second")
    # 15 rows pass the filter; `first` sends n=2 in one request, `second` gets 30 rows.
    assert (first.requests, second.requests) == (15, 30)
    assert estimate.requests == stats["total_requests"] == 45
    assert first.input_tokens + second.input_tokens == stats["prompt_tokens"]
    assert first.input_exact
    assert not second.input_exact
    # every reply is longer than the caps, so the upper bound is exactly what was sent
    assert first.output_tokens + second.output_tokens == stats["completion_tokens"]
    expected_cost = (
        Decimal(stats["prompt_tokens"]) * Decimal("1.5")
        + Decimal(stats["completion_tokens"]) * Decimal(6)
    ) / 1_000_000
    assert estimate.cost == expected_cost
    assert first.batch_cost is not None
    assert first.cost is not None
    assert first.batch_cost == first.cost / 2
    assert "upper bound: max_new_tokens=3" in first.output_basis


def test_sample_calibrates_output_tokens(openai_server: OpenAITestServer) -> None:
    pipeline = _two_task_pipeline(openai_server.base_url, cap1=50, cap2=50, rpm=600)
    estimate = pipeline.estimate(sample=4, token_counters={"first": words, "second": words})
    sampled = openai_server.stats["total_requests"]
    assert sampled > 0  # the sample ran for real
    openai_server.reset()

    pipeline.run(use_cache=False, show_progress=False, storage=False)
    stats = openai_server.stats
    assert estimate.requests == stats["total_requests"]
    first = estimate.step("first")
    assert first.input_tokens == sum(
        words([{"role": "user", "content": r["instruction"]}])
        for r in _rows(30)
        if int(r["instruction"].split()[1]) % 2 == 0
    )
    total_out = sum(s.output_tokens for s in estimate.steps)
    assert (
        abs(total_out - stats["completion_tokens"]) <= SAMPLE_TOLERANCE * stats["completion_tokens"]
    )
    assert "mean of 4 sampled rows" in first.output_basis
    # time: 15 + 30 requests at 600 rpm, slower than the measured latency at concurrency 64
    assert first.seconds == pytest.approx(15 / 600 * 60)
    assert estimate.seconds == pytest.approx(45 / 600 * 60)
    assert "rpm=600" in first.time_basis


def test_unknown_price_and_approximate_tokens_are_said(openai_server: OpenAITestServer) -> None:
    with Pipeline(name="estimate-unknown") as pipeline:
        load = LoadDataFromDicts(data=_rows(5))
        task = TextGeneration(
            name="t", llm=OpenAILLM(model="gpt-4o-mini", base_url=openai_server.base_url)
        )
        load >> task
    llm = task.llm
    estimate = pipeline.estimate()
    assert task.llm is llm  # the real LLM is back in place
    t = estimate.step("t")
    assert t.requests == 5
    assert t.cost is None
    assert estimate.cost is None
    assert not t.input_exact
    assert t.input_method.startswith("approximation")
    assert "assumed 256" in t.output_basis
    assert t.seconds is None
    text = str(estimate)
    assert "unknown" in text
    assert "points at" in text
    assert openai_server.stats["total_requests"] == 0


def test_token_counters_must_name_tasks(openai_server: OpenAITestServer) -> None:
    pipeline = _two_task_pipeline(openai_server.base_url, cap1=3, cap2=2)
    with pytest.raises(ValueError, match=r"\['nope'\].*tasks: \['first', 'second'\]"):
        pipeline.estimate(token_counters={"nope": words})


@pytest.mark.slow
def test_hf_tokenizer_count_is_exact_for_a_local_model(tiny_model_path: Path) -> None:
    from alambic.llms import TransformersLLM

    with Pipeline(name="estimate-local") as pipeline:
        load = LoadDataFromDicts(data=_rows(6))
        load >> TextGeneration(
            name="local",
            llm=TransformersLLM(
                model=str(tiny_model_path), generation_kwargs={"max_new_tokens": 3}
            ),
        )
    estimate = pipeline.estimate().step("local")
    assert estimate.input_exact
    assert "Hugging Face tokenizer" in estimate.input_method
    assert estimate.cost == Decimal(0)
    distiset = pipeline.run(use_cache=False, show_progress=False, storage=False)
    rows = distiset["default"]["train"].to_list()
    seen = [r["alambic_metadata"]["statistics_local"] for r in rows]
    assert estimate.input_tokens == sum(s["input_tokens"] for s in seen)
    assert estimate.output_tokens >= sum(s["output_tokens"] for s in seen)
    assert estimate.requests == 6


def test_batch_api_llm_is_priced_at_the_batch_rate(openai_server: OpenAITestServer) -> None:
    pytest.importorskip("genai_prices")
    with Pipeline(name="estimate-batch") as pipeline:
        load = LoadDataFromDicts(data=_rows(4))
        llm = OpenAILLM(
            model="gpt-4o-mini", use_batch_api=True, generation_kwargs={"max_new_tokens": 10}
        )
        load >> TextGeneration(name="t", llm=llm)
    t = pipeline.estimate(token_counters={"t": words}).step("t")
    assert t.requests == 4
    assert t.price.startswith("$0.15/M input, $0.6/M output (genai-prices")
    standard = (Decimal(t.input_tokens) * Decimal("0.15") + Decimal(40) * Decimal("0.6")) / 10**6
    assert t.cost == t.batch_cost == standard / 2
    assert t.seconds is None
    assert "24 h" in t.time_basis


def test_raw_completion_task_counts_its_requests(openai_server: OpenAITestServer) -> None:
    from alambic.steps.tasks import MagpieGenerator

    with Pipeline(name="estimate-magpie") as pipeline:
        MagpieGenerator(
            name="magpie",
            llm=OpenAILLM(
                model="m", base_url=openai_server.base_url, generation_kwargs={"max_new_tokens": 4}
            ),
            num_rows=5,
            batch_size=2,
            pre_query_template="chatml",
            only_instruction=True,
        )
    estimate = pipeline.estimate().step("magpie")
    assert openai_server.stats["total_requests"] == 0
    pipeline.run(use_cache=False, show_progress=False, storage=False)
    assert estimate.requests == openai_server.stats["total_requests"]
    assert openai_server.stats["paths"] == {"/v1/completions": estimate.requests}

"""Defects of issue 11 at the LLM level, each against a real server on 127.0.0.1 that
misbehaves: empty ``choices``, re-sends after a dropped connection, a wrong key or URL (the
circuit breaker), keys echoed by a server, the timeout's reason, and scattered 429s."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import pytest

from alambic.errors import AlambicUserError, LLMConfigurationError
from alambic.llms.openai import OpenAILLM
from alambic.llms.scheduler import AdaptiveLimit
from alambic.testing.openai_server import OpenAITestServer
from alambic.testing.processes import free_port

pytestmark = pytest.mark.timeout(60)

Factory = Callable[..., OpenAITestServer]


def make_llm(base_url: str, **settings: Any) -> OpenAILLM:
    llm = OpenAILLM(model="test-model", base_url=base_url, **settings)
    llm.load()
    llm.scheduler.limits.backoff_base = 0.01
    return llm


def prompts(n: int) -> list[Any]:
    return [[{"role": "user", "content": f"question {i}"}] for i in range(n)]


def test_an_empty_choices_list_fails_only_its_request_and_is_retried(
    openai_server_factory: Factory,
) -> None:
    server = openai_server_factory(empty_rate=0.1, seed=5)
    llm = make_llm(server.base_url, max_retries=6)
    out = llm.generate(prompts(100))
    assert [o["generations"][0] for o in out] == [f"reply to: question {i}" for i in range(100)]
    counters = llm.scheduler.counters
    assert counters.errors_by_kind.get("invalid_response", 0) > 0
    assert counters.requests == server.stats["total_requests"] == 100 + counters.retries


def test_an_empty_choices_list_without_retries_is_an_invalid_response_row(
    openai_server_factory: Factory,
) -> None:
    server = openai_server_factory(empty_rate=0.2, seed=1)
    llm = make_llm(server.base_url, max_retries=0)
    out = llm.generate(prompts(50))
    failed = [o for o in out if o["generations"][0] is None]
    assert 0 < len(failed) < 50
    for o in failed:
        error = o["errors"][0]  # type: ignore[index]
        assert error is not None
        assert error["kind"] == "invalid_response"
        assert "no choices" in error["message"]


@pytest.mark.parametrize("lean_http", [True, False])
def test_no_request_is_sent_twice_behind_the_schedulers_back(
    openai_server_factory: Factory, lean_http: bool
) -> None:
    # the server reads some requests and then closes the connection without a reply: each of
    # them may have been processed, so none may be re-sent silently (issue 11 #6)
    server = openai_server_factory(drop_rate=0.1, seed=2)
    llm = make_llm(server.base_url, max_retries=0, max_concurrency=16, lean_http=lean_http)
    out = llm.generate(prompts(300))
    failed = sum(o["generations"][0] is None for o in out)
    stats = server.stats
    assert stats["dropped"] > 0
    assert failed == stats["dropped"]
    assert stats["total_requests"] == llm.scheduler.counters.requests == 300


def test_a_retry_after_a_drop_counts_as_an_attempt(openai_server_factory: Factory) -> None:
    server = openai_server_factory(drop_rate=0.1, seed=2)
    llm = make_llm(server.base_url, max_retries=6, max_concurrency=16)
    out = llm.generate(prompts(200))
    assert all(o["generations"][0] is not None for o in out)
    counters = llm.scheduler.counters
    assert server.stats["total_requests"] == counters.requests == 200 + counters.retries


def test_the_lean_transport_honours_the_request_timeout(openai_server_factory: Factory) -> None:
    server = openai_server_factory(latency_s=5.0)
    llm = make_llm(server.base_url, timeout=0.3, max_retries=1)
    started = time.monotonic()
    out = llm.generate(prompts(1))
    assert time.monotonic() - started < 3
    error = out[0]["errors"][0]  # type: ignore[index]
    assert error is not None
    assert error["kind"] == "timeout"
    # which timeout, its value and the setting: not "TimeoutError:  (gave up...)"
    assert "no reply within 0.3 s" in error["message"]
    assert "`timeout` setting" in error["message"]
    assert "gave up after 2 attempts" in error["message"]


def test_a_wrong_key_stops_at_the_first_401(openai_server_factory: Factory) -> None:
    server = openai_server_factory(api_key="the-right-key")
    llm = make_llm(server.base_url, api_key="the-wrong-key-123")
    with pytest.raises(LLMConfigurationError) as info:
        llm.generate(prompts(50))
    assert info.value.setting == "api_key"
    assert info.value.kind.value == "authentication"
    assert "OPENAI_API_KEY" in str(info.value)
    assert server.stats["total_requests"] == 1


def test_an_unknown_model_stops_at_the_first_404(openai_server_factory: Factory) -> None:
    server = openai_server_factory()
    llm = OpenAILLM(model="m", base_url=server.base_url.replace("/v1", "/v2"))
    llm.load()
    with pytest.raises(LLMConfigurationError) as info:
        llm.generate(prompts(20))
    assert info.value.setting == "model"
    assert server.stats["total_requests"] == 1


@pytest.mark.parametrize("lean_http", [True, False])
def test_the_first_request_starts_no_worker_thread(
    openai_server_factory: Factory, lean_http: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The SDK finds the platform it describes in a worker thread on a client's first request
    # unless told; that wait counted as idle time of the first request's grace, and on a
    # loaded machine the requests held behind a refused first one went out too.
    import threading

    server = openai_server_factory()
    llm = make_llm(server.base_url, lean_http=lean_http)
    started: list[str] = []
    start = threading.Thread.start

    def recorded(thread: threading.Thread) -> None:
        started.append(thread.name)
        start(thread)

    monkeypatch.setattr(threading.Thread, "start", recorded)
    out = llm.generate(prompts(1))
    assert out[0]["generations"] == ["reply to: question 0"]
    assert not [name for name in started if name.startswith(("asyncio_", "AnyIO"))], started


@pytest.mark.parametrize("lean_http", [True, False])
def test_a_closed_port_stops_after_three_refused_attempts(lean_http: bool) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    llm = make_llm(url, max_retries=6, lean_http=lean_http)
    started = time.monotonic()
    with pytest.raises(LLMConfigurationError) as info:
        llm.generate(prompts(200))
    assert time.monotonic() - started < 10
    assert info.value.setting == "base_url"
    assert url in str(info.value)
    assert llm.scheduler.counters.requests == 3


def test_a_server_that_goes_away_after_answering_does_not_trip_the_breaker(
    openai_server_factory: Factory,
) -> None:
    server = openai_server_factory()
    llm = make_llm(server.base_url, max_retries=1)

    async def main() -> list[Any]:
        first = await llm.agenerate(prompts(1)[0])
        server.stop()
        later = await asyncio.gather(*(llm.agenerate(p) for p in prompts(5)))
        await llm.aclose()
        return [first, *later]

    outs = asyncio.run(main())
    assert outs[0]["generations"] == ["reply to: question 0"]
    assert all(o["errors"][0]["kind"] == "connection" for o in outs[1:])


def test_not_a_url_is_named_before_the_key() -> None:
    llm = OpenAILLM(model="m", base_url="not a url")
    with pytest.raises(AlambicUserError, match=r"base_url='not a url'.*not an http"):
        llm.load()


def test_a_key_echoed_by_the_server_is_never_stored_or_logged(
    openai_server_factory: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    server = openai_server_factory(api_key="right-key-000", echo_auth=True)
    secret = "sk-test-SECRET-0123456789abcdef"
    llm = make_llm(server.base_url, api_key=secret)
    with (
        caplog.at_level(logging.DEBUG, logger="alambic"),
        pytest.raises(LLMConfigurationError) as info,
    ):
        llm.generate(prompts(3))
    assert secret not in str(info.value)
    assert "[REDACTED]" in str(info.value)
    assert secret not in caplog.text
    llm2 = make_llm(server.base_url, api_key=secret)
    out = llm2.generate(prompts(1))  # the request that trips the breaker fails as a row
    error = out[0]["errors"][0]  # type: ignore[index]
    assert error is not None
    assert error["kind"] == "authentication"
    assert secret not in error["message"]
    assert "[REDACTED]" in error["message"]


def test_scattered_429s_keep_the_concurrency_limit() -> None:
    import random

    # issue 11: 5% of 429s took the limit from 64 to 29, 10% to 7
    for share, lowest_mean in ((0.05, 64.0), (0.10, 60.0)):
        rng = random.Random(7)
        limit = AdaptiveLimit(64)
        now, total = 0.0, 0
        for _ in range(20_000):
            now += 0.001
            if rng.random() < share:
                limit.on_rate_limited(now - 0.5, now)
            else:
                limit.on_success()
            total += limit.limit
        assert total / 20_000 >= lowest_mean, share


def test_an_overload_of_429s_still_halves_the_limit() -> None:
    limit = AdaptiveLimit(64)
    for i in range(60):
        limit.on_rate_limited(float(i), float(i))
    assert limit.limit <= 32

"""The scheduler under faults, through the real OpenAI client against the local test server.

Every row must end with a generation or a failure with its reason, nothing may hang, and the
limits must hold (concurrency, requests per minute).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from alambic.errors import LLMConfigurationError
from alambic.llms.openai import OpenAILLM
from alambic.llms.typing import GenerateOutput
from alambic.steps.tasks.text_generation import TextGeneration
from alambic.testing.openai_server import OpenAITestServer

pytestmark = pytest.mark.timeout(30)

Factory = Callable[..., OpenAITestServer]


def make_llm(server: OpenAITestServer, **settings: Any) -> OpenAILLM:
    settings.setdefault("max_retries", 6)
    llm = OpenAILLM(model="test-model", base_url=server.base_url, **settings)
    llm.load()
    # fast backoff keeps the tests short; the schedule itself is tested in test_scheduler.py
    llm.scheduler.limits.backoff_base = 0.01
    return llm


def prompts(n: int) -> list[Any]:
    return [[{"role": "user", "content": f"question {i}"}] for i in range(n)]


def texts(outputs: list[GenerateOutput]) -> list[str | None]:
    return [o["generations"][0] for o in outputs]


def test_429_with_retry_after_is_retried_after_the_wait(openai_server_factory: Factory) -> None:
    server = openai_server_factory(status_sequence=[429, 429], retry_after_s=0.2)
    llm = make_llm(server)
    out = llm.generate(prompts(1))
    assert texts(out) == ["reply to: question 0"]
    c = llm.scheduler.counters
    assert (c.rate_limited, c.retries, c.failures) == (2, 2, 0)
    arrivals = server.stats["arrivals"]
    assert arrivals[1] - arrivals[0] >= 0.2
    assert arrivals[2] - arrivals[1] >= 0.2


def test_429_without_retry_after_backs_off_and_succeeds(openai_server_factory: Factory) -> None:
    server = openai_server_factory(rate_429=0.3, seed=3)
    llm = make_llm(server, max_concurrency=8, max_retries=20)
    out = llm.generate(prompts(40))
    assert texts(out) == [f"reply to: question {i}" for i in range(40)]
    stats = server.stats
    assert stats["statuses"][429] == llm.scheduler.counters.rate_limited > 0
    assert stats["statuses"][200] == 40
    assert llm.scheduler.concurrency_limit <= 8


def test_500s_are_retried_and_exhausted_retries_become_failed_rows(
    openai_server_factory: Factory,
) -> None:
    server = openai_server_factory(status_sequence=[500, 500, 500])
    llm = make_llm(server, max_concurrency=1, max_retries=1)
    out = llm.generate(prompts(2))
    # request 0: 500, retry 500 -> failed; request 1: 500, retry ok
    assert out[0]["generations"] == [None]
    error = out[0]["errors"][0]  # type: ignore[index]
    assert error is not None
    assert error["kind"] == "server"
    assert "gave up after 2 attempts" in error["message"]
    assert out[1]["generations"] == ["reply to: question 1"]


@pytest.mark.parametrize(
    ("status", "kind"), [(400, "bad_request"), (401, "authentication"), (404, "not_found")]
)
def test_errors_that_cannot_succeed_fail_at_once(
    openai_server_factory: Factory, status: int, kind: str
) -> None:
    server = openai_server_factory(status_sequence=[status])
    llm = make_llm(server)
    out = llm.generate(prompts(1))
    assert out[0]["generations"] == [None]
    assert out[0]["errors"][0]["kind"] == kind  # type: ignore[index]
    assert server.stats["total_requests"] == 1


def test_a_slow_first_answer_holds_the_others_back_only_for_the_grace(
    openai_server_factory: Factory,
) -> None:
    # The first request goes alone, but a model that takes seconds to answer must not keep
    # every other slot idle for that long: the others leave after the probe's grace.
    server = openai_server_factory(latency_s=2.0)
    llm = make_llm(server, max_concurrency=8)
    assert llm.scheduler.limits.probe_grace_s == 0.1
    seen: list[tuple[float, int]] = []
    done = threading.Event()

    def watch() -> None:
        start = time.monotonic()
        while not done.wait(0.02):
            seen.append((time.monotonic() - start, server.stats["in_flight"]))

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        out = llm.generate(prompts(8))
    finally:
        done.set()
        watcher.join()
    assert texts(out) == [f"reply to: question {i}" for i in range(8)]
    assert server.stats["total_requests"] == 8
    # all 8 in flight while the first is still unanswered (it takes 2 s)
    all_out = [t for t, n in seen if n == 8]
    assert all_out, seen[::10]
    assert all_out[0] < 1.5, seen[::10]
    assert max(n for t, n in seen if t < 0.08) <= 1  # the probe alone at first


def test_an_error_answer_keeps_the_first_request_alone_while_it_is_retried(
    openai_server_factory: Factory,
) -> None:
    # the server answers the first request at once, with 500s: it is retried alone for
    # longer than the grace (backoffs of ~0.4 and ~0.8 s), the others wait for it
    server = openai_server_factory(status_sequence=[500, 500], record_requests=True)
    llm = make_llm(server, max_concurrency=8)
    llm.scheduler.limits.backoff_base = 0.4
    out = llm.generate(prompts(5))
    assert texts(out) == [f"reply to: question {i}" for i in range(5)]
    order = [r["body"]["messages"][0]["content"] for r in server.stats["requests"]]
    assert order[:3] == ["question 0"] * 3
    assert sorted(order[3:]) == [f"question {i}" for i in range(1, 5)]


def test_a_wrong_key_on_a_slow_server_still_stops_after_the_grace(
    openai_server_factory: Factory,
) -> None:
    # a server slower to refuse the key than the grace: the queued requests go out after
    # 0.1 s; the first 401 still trips the breaker, and none of the 36 requests waiting
    # behind the concurrency limit is sent after it
    server = openai_server_factory(status_sequence=[401] * 40, latency_s=0.8)
    llm = make_llm(server, max_concurrency=4)
    with pytest.raises(LLMConfigurationError) as info:
        llm.generate(prompts(40))
    assert info.value.setting == "api_key"
    assert server.stats["total_requests"] == 4


def test_hung_requests_time_out_and_are_retried(openai_server_factory: Factory) -> None:
    server = openai_server_factory(hang_rate=0.2, seed=1)
    llm = make_llm(server, timeout=0.3, max_concurrency=16)
    out = llm.generate(prompts(30))
    assert texts(out) == [f"reply to: question {i}" for i in range(30)]
    # every hung request timed out (a slow one on a busy machine may time out too)
    hung = server.stats["hung"]
    assert hung > 0
    assert llm.scheduler.counters.errors_by_kind.get("timeout", 0) >= hung


def test_dropped_connections_malformed_and_truncated_bodies_are_retried(
    openai_server_factory: Factory,
) -> None:
    server = openai_server_factory(drop_rate=0.1, malformed_rate=0.1, truncated_rate=0.1, seed=2)
    llm = make_llm(server, max_concurrency=16, max_retries=10)
    out = llm.generate(prompts(60))
    assert texts(out) == [f"reply to: question {i}" for i in range(60)]
    kinds = llm.scheduler.counters.errors_by_kind
    assert kinds.get("connection", 0) > 0
    assert kinds.get("invalid_response", 0) > 0


def test_every_row_completes_or_fails_with_its_reason(openai_server_factory: Factory) -> None:
    server = openai_server_factory(
        failure_rate=0.3, rate_429=0.1, drop_rate=0.05, malformed_rate=0.05, seed=7
    )
    llm = make_llm(server, max_concurrency=8, max_retries=1)
    task = TextGeneration(llm=llm, name="gen")
    task.load()
    rows = [{"instruction": f"question {i}"} for i in range(50)]
    out = next(task.process(rows))
    assert len(out) == 50
    ok = [r for r in out if r["generation"] is not None]
    failed = [r for r in out if r["generation"] is None]
    assert ok
    assert failed
    for row in ok:
        assert row["generation"] == f"reply to: {row['instruction']}"
    for row in failed:
        error = row["alambic_metadata"]["error_gen"]
        assert error["kind"] in {"server", "rate_limit", "connection", "invalid_response"}
        assert error["message"]
    assert len(failed) == llm.scheduler.counters.failures


def test_never_more_than_max_concurrency_in_flight(openai_server_factory: Factory) -> None:
    server = openai_server_factory(latency_s=0.01)
    llm = make_llm(server, max_concurrency=7)
    llm.generate(prompts(80))
    assert server.stats["max_in_flight"] == 7
    assert llm.scheduler.counters.max_in_flight == 7


def test_rpm_budget_is_respected_over_any_window(openai_server_factory: Factory) -> None:
    # 1,200 requests per minute = 20 per second, enforced by the server over 0.5 s windows.
    server = openai_server_factory(rpm_limit=11, rate_window_s=0.5)
    llm = make_llm(server, rpm=1200, max_concurrency=32)
    out = llm.generate(prompts(30))
    assert texts(out) == [f"reply to: question {i}" for i in range(30)]
    arrivals = sorted(server.stats["arrivals"])
    assert 1.3 <= arrivals[-1] - arrivals[0] <= 3.0  # 1.45 s on an idle machine
    # without the budget, 19 of the 30 would be refused; one is allowed for a stall of the
    # test's own process (the server shares it), which bunches the arrivals it records
    assert server.stats["statuses"].get(429, 0) <= 1


def test_remaining_zero_header_holds_new_requests(openai_server_factory: Factory) -> None:
    # the scheduler reads x-ratelimit-remaining-requests and, at 0, waits for the reset;
    # only requests already on the wire when the header arrives can still hit the limit.
    server = openai_server_factory(rpm_limit=5, rate_window_s=0.3)
    rejected = {}
    for learn in (True, False):
        server.reset()
        llm = make_llm(server, max_concurrency=4)
        llm.scheduler.limits.learn_from_headers = learn
        llm.scheduler.limits.rpm = 1e9  # so the (per-minute) limit header is not learned
        out = llm.generate(prompts(12))
        assert texts(out) == [f"reply to: question {i}" for i in range(12)]
        rejected[learn] = server.stats["statuses"].get(429, 0)
    assert rejected[True] * 2 < rejected[False]

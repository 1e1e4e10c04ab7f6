"""The fault matrix (issue 11): a real pipeline against a real server on 127.0.0.1 that
misbehaves in one way per case. Whatever the fault, every input row comes out exactly once,
with its generation or with the reason it failed; nothing hangs."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from tests.faults.fault_pipeline import run_pipeline

from alambic.testing.openai_server import OpenAITestServer
from alambic.testing.processes import free_port

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]

Factory = Callable[..., OpenAITestServer]
ROWS = 200


def check_exactly_once(rows: list[dict[str, Any]], n: int = ROWS) -> None:
    seen = Counter(r["instruction"] for r in rows)
    assert set(seen) == {f"question {i}" for i in range(n)}  # nothing lost
    assert max(seen.values()) == 1  # nothing duplicated
    for row in rows:
        if row["generation"] is None:
            assert row["error_kind"], row  # a failed row says why
        else:
            assert row["generation"] == f"reply to: {row['instruction']}"


@pytest.mark.parametrize(
    "knobs",
    [
        {"failure_rate": 0.1},
        {"rate_429": 0.1, "retry_after_s": 0.05},
        {"rate_429": 0.1},
        {"malformed_rate": 0.05},
        {"truncated_rate": 0.05},
        {"empty_rate": 0.05},
        {"drop_rate": 0.05},
    ],
    ids=["500", "429-retry-after", "429", "malformed", "truncated", "empty-choices", "dropped"],
)
def test_transient_faults_are_retried_and_every_row_is_answered(
    openai_server_factory: Factory, knobs: dict[str, Any]
) -> None:
    server = openai_server_factory(seed=11, **knobs)
    result = run_pipeline(server.base_url, ROWS)
    assert result["error"] is None
    check_exactly_once(result["rows"])
    assert all(r["generation"] is not None for r in result["rows"])
    stats = server.stats
    assert stats["unique_requests"] == ROWS
    assert stats["total_requests"] > ROWS  # the faults happened and were retried


def test_hanging_requests_end_at_the_timeout_and_are_retried(
    openai_server_factory: Factory,
) -> None:
    server = openai_server_factory(seed=3, hang_rate=0.03)
    started = time.monotonic()
    result = run_pipeline(server.base_url, ROWS, timeout=1.0)
    assert time.monotonic() - started < 60
    check_exactly_once(result["rows"])
    assert all(r["generation"] is not None for r in result["rows"])
    assert server.stats["hung"] > 0


def test_faults_past_the_retry_budget_are_failed_rows_with_their_reason(
    openai_server_factory: Factory,
) -> None:
    server = openai_server_factory(seed=5, failure_rate=0.1, empty_rate=0.05)
    result = run_pipeline(server.base_url, ROWS, max_retries=0)
    rows = result["rows"]
    check_exactly_once(rows)
    kinds = Counter(r["error_kind"] for r in rows if r["generation"] is None)
    assert set(kinds) == {"server", "invalid_response"}
    # one attempt per row: every request the server received was counted, none re-sent
    assert server.stats["total_requests"] == ROWS


def test_a_wrong_key_stops_the_run_after_one_request(openai_server_factory: Factory) -> None:
    server = openai_server_factory(api_key="the-right-key")
    result = run_pipeline(server.base_url, ROWS, api_key="a-wrong-key-0001")
    assert result["error_type"] == "LLMConfigurationError"
    assert "'api_key'" in result["error"]
    assert server.stats["total_requests"] == 1


def test_a_closed_port_stops_the_run_within_seconds() -> None:
    started = time.monotonic()
    result = run_pipeline(f"http://127.0.0.1:{free_port()}/v1", ROWS)
    assert time.monotonic() - started < 15
    assert result["error_type"] == "LLMConfigurationError"
    assert "'base_url'" in result["error"]


def test_a_server_down_for_the_whole_run_is_one_error_not_one_per_row() -> None:
    # the same as a closed port, asked through the documented behaviour: no 3,500 attempts
    url = f"http://127.0.0.1:{free_port()}/v1"
    result = run_pipeline(url, ROWS, max_retries=6)
    assert result["rows"] == []
    assert url in result["error"]

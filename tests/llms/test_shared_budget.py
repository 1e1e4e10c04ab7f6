"""The shared rate budget's bookkeeping, without Ray: one ledger paces every worker."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from alambic.llms.openai import OpenAILLM
from alambic.llms.shared_budget import BudgetLedger, BudgetState, RemoteBudget, budget_key


class _Call:
    def __init__(self, fn: Any) -> None:
        self._fn = fn

    def remote(self, *args: Any) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        future.set_result(self._fn(*args))
        return future


class _LocalHandle:
    """Stands in for a Ray actor handle: ``handle.method.remote(...)`` is awaitable."""

    def __init__(self, ledger: BudgetLedger) -> None:
        self.ledger = ledger

    def __getattr__(self, name: str) -> _Call:
        return _Call(getattr(self.ledger, name))


def test_budget_key_separates_what_providers_count_and_hides_the_key() -> None:
    a = OpenAILLM(model="m", base_url="http://127.0.0.1:1/v1", api_key="sk-secret-1")
    b = OpenAILLM(model="m", base_url="http://127.0.0.1:1/v1", api_key="sk-secret-1")
    c = OpenAILLM(model="m", base_url="http://127.0.0.1:1/v1", api_key="sk-secret-2")
    d = OpenAILLM(model="other", base_url="http://127.0.0.1:1/v1", api_key="sk-secret-1")
    e = OpenAILLM(model="m", base_url="http://127.0.0.1:2/v1", api_key="sk-secret-1")
    assert budget_key(a) == budget_key(b)
    assert len({budget_key(x) for x in (a, c, d, e)}) == 4
    assert "sk-secret" not in budget_key(a)
    assert "http://127.0.0.1:1/v1" in budget_key(a)


def test_one_ledger_paces_the_sum_of_all_workers() -> None:
    """Three workers reserving as fast as they can get one shared pace, not three."""
    state = BudgetState.create(rpm=6000, tpm=None)
    now = time.monotonic()
    waits = [state.reserve(0, now) for _ in range(300)]
    # 300 reservations at 99 per second: the last waits ~3 s, whoever made it
    assert waits[-1] == pytest.approx(299 / 99.0, abs=0.05)
    assert waits == sorted(waits)


def test_a_429_anywhere_slows_everyone_once_per_wave_and_successes_recover() -> None:
    state = BudgetState.create(rpm=6000, tpm=None)
    assert state.requests is not None
    ceiling = state.requests.rate
    now = time.monotonic()
    state.slow_down(0.0, now)
    state.slow_down(0.0, now)  # same wave: no second cut
    assert state.requests.rate == pytest.approx(ceiling * 0.97)
    state.speed_up(25)
    assert state.requests.rate == pytest.approx(ceiling * 0.97 + ceiling * 0.01)
    assert state.rate_limited == 2


def test_limits_learned_from_headers_apply_to_every_worker() -> None:
    ledger = BudgetLedger()
    ledger.register("k", None, None)
    assert ledger.reserve("k", 10) == 0.0  # unlimited until a header says otherwise
    ledger.learn("k", 600, 10_000)
    snap = ledger.snapshot()["k"]
    assert snap["rpm"] == pytest.approx(594.0)
    assert snap["tpm"] == pytest.approx(10_000.0)


def test_remote_budgets_of_two_workers_share_the_ledger() -> None:
    asyncio.run(_two_workers())


async def _two_workers() -> None:
    ledger = BudgetLedger()
    handle = _LocalHandle(ledger)
    first = RemoteBudget(handle, "k", rpm=600, tpm=None)  # 9.9 requests/s
    second = RemoteBudget(handle, "k", rpm=600, tpm=None)
    start = time.monotonic()
    await asyncio.gather(*(b.acquire(0) for b in (first, second) for _ in range(6)))
    elapsed = time.monotonic() - start
    # 12 requests, a burst of one: 11 intervals of 1/9.9 s, shared by both workers
    assert elapsed == pytest.approx(11 / 9.9, abs=0.15)
    assert ledger.snapshot()["k"]["reservations"] == 12


def test_alambic_errors_cross_process_boundaries_intact() -> None:
    """Ray ships exceptions between processes by pickling them."""
    import pickle

    from alambic.errors import ErrorKind, LLMConfigurationError, LLMRequestError

    request = pickle.loads(
        pickle.dumps(LLMRequestError("gave up", kind=ErrorKind.SERVER, retry_after=2.0, attempts=3))
    )
    assert (str(request), request.kind, request.retry_after, request.attempts) == (
        "gave up", ErrorKind.SERVER, 2.0, 3,
    )  # fmt: skip
    config = pickle.loads(
        pickle.dumps(
            LLMConfigurationError("bad key", kind=ErrorKind.AUTHENTICATION, setting="api_key")
        )
    )
    assert (str(config), config.kind, config.setting) == (
        "bad key", ErrorKind.AUTHENTICATION, "api_key",
    )  # fmt: skip

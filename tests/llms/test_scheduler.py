"""The request scheduler on its own, driven by fake request coroutines (no HTTP)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from alambic.errors import ErrorKind, LLMRequestError
from alambic.llms.scheduler import (
    REQUEST_PACE,
    SCATTERED_BACKOFF_S,
    SETTLE_S,
    STALL_CREDIT_S,
    AdaptiveLimit,
    RequestScheduler,
    SchedulerLimits,
    TokenBucket,
    estimate_tokens,
    parse_reset,
    read_rate_limit_headers,
)


class Boom(Exception):
    def __init__(self, kind: ErrorKind, retry_after: float | None = None) -> None:
        super().__init__(kind.value)
        self.kind = kind
        self.retry_after = retry_after


def classify(error: BaseException) -> tuple[ErrorKind, float | None]:
    if isinstance(error, Boom):
        return error.kind, error.retry_after
    return ErrorKind.UNKNOWN, None


def make(**limits: Any) -> RequestScheduler:
    limits.setdefault("backoff_base", 0.001)
    return RequestScheduler(SchedulerLimits(**limits), classify)


def scripted(outcomes: list[Any]) -> Any:
    """An attempt factory that raises or returns the next outcome each call."""
    calls = iter(outcomes)

    async def attempt() -> Any:
        outcome = next(calls)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    return attempt


def test_retries_retryable_errors_then_succeeds() -> None:
    scheduler = make()
    attempt = scripted([Boom(ErrorKind.SERVER), Boom(ErrorKind.CONNECTION), "ok"])
    assert asyncio.run(scheduler.run(attempt)) == "ok"
    c = scheduler.counters
    assert (c.requests, c.retries, c.failures) == (3, 2, 0)
    assert c.errors_by_kind == {"server": 1, "connection": 1}


@pytest.mark.parametrize(
    "kind",
    [
        ErrorKind.BAD_REQUEST,
        ErrorKind.AUTHENTICATION,
        ErrorKind.NOT_FOUND,
        ErrorKind.CONTEXT_LENGTH,
    ],
)
def test_errors_that_cannot_succeed_are_not_retried(kind: ErrorKind) -> None:
    scheduler = make()
    with pytest.raises(LLMRequestError) as info:
        asyncio.run(scheduler.run(scripted([Boom(kind), "never"])))
    assert info.value.kind is kind
    assert info.value.attempts == 1
    assert (scheduler.counters.requests, scheduler.counters.failures) == (1, 1)


def test_gives_up_after_max_retries_with_the_reason() -> None:
    scheduler = make(max_retries=2)
    with pytest.raises(LLMRequestError, match="gave up after 3 attempts") as info:
        asyncio.run(scheduler.run(scripted([Boom(ErrorKind.SERVER)] * 5)))
    assert info.value.kind is ErrorKind.SERVER
    assert scheduler.counters.requests == 3


def test_retry_after_is_honoured() -> None:
    scheduler = make()
    attempt = scripted([Boom(ErrorKind.RATE_LIMIT, retry_after=0.3), "ok"])
    start = time.monotonic()
    assert asyncio.run(scheduler.run(attempt)) == "ok"
    assert 0.3 <= time.monotonic() - start < 1.0  # upper bound loose: a busy CI machine
    assert scheduler.counters.rate_limited == 1


def test_per_attempt_timeout_then_success() -> None:
    scheduler = make(timeout=0.05)
    calls = 0

    async def attempt() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            await asyncio.sleep(10)
        return "ok"

    start = time.monotonic()
    assert asyncio.run(scheduler.run(attempt)) == "ok"
    assert time.monotonic() - start < 2.0  # not the attempt's 10 s
    assert scheduler.counters.errors_by_kind == {"timeout": 1}


def test_never_more_than_max_concurrency_in_flight() -> None:
    scheduler = make(max_concurrency=5)
    in_flight = peak = 0

    async def attempt() -> None:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.002)
        in_flight -= 1

    async def main() -> None:
        await asyncio.gather(*(scheduler.run(attempt) for _ in range(60)))

    asyncio.run(main())
    assert peak == 5
    assert scheduler.counters.max_in_flight == 5
    assert scheduler.counters.requests == 60


def test_rpm_budget_paces_requests() -> None:
    # 1,200 rpm = 20/s; 20 requests need about 1 s (a burst of 1 at the start).
    scheduler = make(rpm=1200)
    stamps: list[float] = []

    async def attempt() -> None:
        stamps.append(time.monotonic())

    async def main() -> None:
        await asyncio.gather(*(scheduler.run(attempt) for _ in range(20)))

    asyncio.run(main())
    elapsed = stamps[-1] - stamps[0]
    assert 0.85 <= elapsed <= 1.6  # the window check below is the strict one
    # in any 0.5 s window, at most 10 requests (+1 burst, +1 that a stalled event loop
    # released on catching up: seen once under a load average of 12)
    for i, t in enumerate(stamps):
        assert sum(1 for s in stamps[i:] if s < t + 0.5) <= 12
    assert scheduler.counters.budget_wait_s > 0.8


def test_tpm_budget_waits_and_is_corrected_by_usage() -> None:
    bucket = TokenBucket(6000, burst=100)  # 100 tokens/s
    now = time.monotonic()
    assert bucket.reserve(100, now) == 0.0
    assert bucket.reserve(50, now) == pytest.approx(0.5, abs=0.01)
    bucket.refund(50)  # the request used 50 fewer tokens than estimated
    assert bucket.reserve(10, now) == pytest.approx(0.1, abs=0.01)


def test_token_estimate_counts_characters_and_max_tokens() -> None:
    messages = [{"role": "user", "content": "x" * 400}]
    assert estimate_tokens(messages, 50) == 100 + 4 + 50


def test_adaptive_limit_halves_on_429_then_probes_back_up() -> None:
    limit = AdaptiveLimit(16)
    for _ in range(3):  # a few 429s are not overload yet
        limit.on_rate_limited(started=0.5, now=1.0)
    assert limit.limit == 16
    limit.on_rate_limited(started=1.0, now=2.0)  # the fourth in a row is
    assert limit.limit == 8
    limit.on_rate_limited(started=1.5, now=2.1)  # same wave: no second cut
    assert limit.limit == 8
    limit.on_rate_limited(started=2.2, now=3.0)
    assert limit.limit == 4
    assert limit.pressure > 0.15
    for _ in range(4):
        limit.on_success()
    assert limit.limit == 5
    for _ in range(5 + 6 + 7 + 8 + 9 + 10 + 11 + 12 + 13 + 14 + 15 + 100):
        limit.on_success()
    assert limit.limit == 16


def test_scattered_429s_do_not_cut_concurrency() -> None:
    limit = AdaptiveLimit(64)
    for i in range(2000):
        if i % 20 == 0:  # 5% of answers
            limit.on_rate_limited(started=float(i), now=float(i))
        else:
            limit.on_success()
    assert limit.limit == 64


def test_a_scattered_429_retries_sooner_than_overload() -> None:
    """A 429 while most answers succeed backs off from SCATTERED_BACKOFF_S (0.05-0.1 s);
    under overload (429s are most answers) and for other errors, from ``backoff_base``."""
    scheduler = RequestScheduler(SchedulerLimits(backoff_base=0.5), classify)
    assert SCATTERED_BACKOFF_S == 0.1
    for _ in range(200):
        assert 0.05 <= scheduler._backoff(1, None, scattered=True) <= 0.1
        assert 0.1 <= scheduler._backoff(2, None, scattered=True) <= 0.2
        assert 0.25 <= scheduler._backoff(1, None) <= 0.5
        assert 2.0 <= scheduler._backoff(1, 2.0, scattered=True) <= 2.1  # Retry-After wins
    # a smaller backoff_base (tests set one) is kept
    fast = RequestScheduler(SchedulerLimits(backoff_base=0.001), classify)
    assert fast._backoff(1, None, scattered=True) <= 0.001

    # which one the scheduler picks: scattered until the adaptive limit sees overload
    picked: list[tuple[ErrorKind, bool]] = []
    backoff = scheduler._backoff

    def record(tries: int, retry_after: float | None, *, scattered: bool = False) -> float:
        picked.append((kinds[len(picked)], scattered))
        return backoff(tries, retry_after, scattered=scattered) / 100

    scheduler._backoff = record  # type: ignore[method-assign]
    kinds = [ErrorKind.RATE_LIMIT, ErrorKind.SERVER]
    asyncio.run(scheduler.run(scripted([Boom(kinds[0]), Boom(kinds[1]), "ok"])))
    assert picked == [(ErrorKind.RATE_LIMIT, True), (ErrorKind.SERVER, False)]
    picked.clear()
    kinds = [ErrorKind.RATE_LIMIT] * 6
    asyncio.run(scheduler.run(scripted([Boom(ErrorKind.RATE_LIMIT)] * 6 + ["ok"])))
    # each 429 raises the pressure by 5% of what is left: from the fourth one on, a 429 is
    # overload (pressure >= 15%), and those back off in full
    assert [s for _, s in picked] == [True, True, True, False, False, False]


def test_scheduler_adapts_concurrency_on_429() -> None:
    scheduler = make(max_concurrency=8)
    attempt = scripted([Boom(ErrorKind.RATE_LIMIT, retry_after=0.0)] * 4 + ["ok"])
    assert asyncio.run(scheduler.run(attempt)) == "ok"
    assert scheduler.concurrency_limit == 4
    assert scheduler.counters.concurrency_limit == 4


def test_cancellation_releases_the_slot() -> None:
    scheduler = make(max_concurrency=1)

    async def slow() -> None:
        await asyncio.sleep(10)

    async def quick() -> str:
        return "ok"

    async def main() -> str:
        task = asyncio.create_task(scheduler.run(slow))
        waiter = asyncio.create_task(scheduler.run(quick))
        await asyncio.sleep(0.01)
        task.cancel()
        return await asyncio.wait_for(waiter, 1)

    assert asyncio.run(main()) == "ok"


def test_reads_openai_and_anthropic_rate_limit_headers() -> None:
    openai_style = read_rate_limit_headers(
        {
            "x-ratelimit-limit-requests": "6000",
            "x-ratelimit-remaining-requests": "0",
            "x-ratelimit-reset-requests": "1m2.5s",
            "x-ratelimit-limit-tokens": "100000",
            "x-ratelimit-remaining-tokens": "99000",
            "x-ratelimit-reset-tokens": "20ms",
        }
    )
    assert openai_style is not None
    assert openai_style.limit_requests == 6000
    assert openai_style.remaining_requests == 0
    assert openai_style.reset_requests_s == pytest.approx(62.5)
    assert openai_style.reset_tokens_s == pytest.approx(0.02)
    anthropic_style = read_rate_limit_headers(
        {
            "anthropic-ratelimit-requests-limit": "50",
            "anthropic-ratelimit-requests-remaining": "49",
            "anthropic-ratelimit-requests-reset": "2030-01-01T00:00:00Z",
        }
    )
    assert anthropic_style is not None
    assert anthropic_style.limit_requests == 50
    assert anthropic_style.reset_requests_s is not None
    assert anthropic_style.reset_requests_s > 0
    assert read_rate_limit_headers({"content-type": "application/json"}) is None
    assert parse_reset("2024-01-01T00:00:10Z", now_epoch=1704067200.0) == pytest.approx(10.0)
    assert parse_reset("garbage") is None


def test_budgets_are_learned_from_headers_unless_configured() -> None:
    learned = make()
    learned.observe_headers({"x-ratelimit-limit-requests": "600"})
    assert learned.request_budget is not None
    assert learned.request_budget.per_minute == pytest.approx(600)
    assert learned.request_budget.rate == pytest.approx(10.0 * REQUEST_PACE)
    configured = make(rpm=60)
    configured.observe_headers({"x-ratelimit-limit-requests": "600"})
    assert configured.request_budget is not None
    assert configured.request_budget.per_minute == pytest.approx(60)


def test_remaining_zero_holds_requests_until_reset() -> None:
    scheduler = make()
    scheduler.observe_headers(
        {
            "x-ratelimit-remaining-requests": "0",
            "x-ratelimit-reset-requests": "200ms",
            "x-ratelimit-limit-requests": "1000000",
        }
    )

    async def attempt() -> str:
        return "ok"

    start = time.monotonic()
    assert asyncio.run(scheduler.run(attempt)) == "ok"
    assert 0.18 <= time.monotonic() - start < 1.0


def test_request_budgets_keep_one_percent_in_hand() -> None:
    # 6,000 a minute paced at 99%: the 100th request after a start waits 100 / 99 s, so a
    # strict "100 in any second" window keeps room for ~10 ms of jitter on the way
    bucket = TokenBucket(6000, burst=1.0, pace=REQUEST_PACE)
    assert bucket.per_minute == pytest.approx(6000)
    now = time.monotonic()
    waits = [bucket.reserve(1, now) for _ in range(101)]
    assert waits[0] == 0.0
    assert waits[100] == pytest.approx(100 / 99, rel=1e-3)
    scheduler = make(rpm=6000)
    assert scheduler.request_budget is not None
    assert scheduler.request_budget.rate == pytest.approx(99.0)
    assert scheduler.counters.requests_per_minute == pytest.approx(5940)
    with pytest.raises(ValueError, match="pace"):
        TokenBucket(60, pace=1.5)


def test_a_stall_is_caught_up_but_idleness_is_not() -> None:
    assert STALL_CREDIT_S >= 0.09  # the numbers below: 100 requests/s, a burst of 5
    bucket = TokenBucket(6000, pace=1.0)
    t = 1000.0
    bucket.stamp = t
    bucket.level = 0.0
    # idle for 2 s: only the burst is saved up
    assert bucket.reserve(1, t + 2.0) == 0.0
    assert bucket.level == pytest.approx(4.0)
    # a request queued for its turn (due 10 ms later), then the loop stalls 80 ms past it:
    # the 8 requests the stall held back may go at once (more than the burst of 5)...
    bucket.level, bucket.stamp = 0.0, t
    assert bucket.reserve(1, t) == pytest.approx(0.01)
    resumed = t + 0.01 + 0.08
    assert bucket.reserve(1, resumed) == 0.0
    # ...one after another, as the queued requests reserve in turn at the same moment
    assert [bucket.reserve(1, resumed) for _ in range(7)] == pytest.approx([0.0] * 7, abs=1e-9)
    assert bucket.reserve(1, resumed) == pytest.approx(0.01)
    # a credit not taken within STALL_CREDIT_S shrinks back to the burst
    bucket.level, bucket.stamp = 0.0, t
    bucket.reserve(1, t)
    bucket.reserve(0, t + 0.09)  # 8 owed
    bucket.reserve(0, t + 0.09 + STALL_CREDIT_S + 0.01)
    assert bucket.level == pytest.approx(5.0)
    # a longer stall is caught up to STALL_CREDIT_S worth only
    bucket.level, bucket.stamp = 0.0, t
    bucket.reserve(1, t)
    bucket.reserve(0, t + 0.01 + 2.0)
    assert bucket.level == pytest.approx(100 * STALL_CREDIT_S)
    # a provider's hold is a debt, not a queue: idle time after it saves the burst only
    bucket = TokenBucket(6000, pace=1.0)
    bucket.level, bucket.stamp = 0.0, t
    bucket.reserve(0, t)
    bucket.level = -50.0  # what RequestScheduler._hold does for a 0.5 s reset
    bucket.reserve(0, t + 2.0)
    assert bucket.level == pytest.approx(5.0)


def test_one_wave_of_429s_lowers_the_pace_once() -> None:
    bucket = TokenBucket(6000, pace=1.0)  # 100/s
    bucket.slow_down(started=10.0, now=10.0)
    assert bucket.rate == pytest.approx(97.0)
    # requests sent after the cut but rejected within SETTLE_S belong to the same wave
    bucket.slow_down(started=10.2, now=10.2)
    bucket.slow_down(started=10.0 + SETTLE_S - 0.01, now=10.0 + SETTLE_S - 0.01)
    assert bucket.rate == pytest.approx(97.0)
    bucket.slow_down(started=10.0 + SETTLE_S, now=10.0 + SETTLE_S + 0.01)
    assert bucket.rate == pytest.approx(97.0 * 0.97)
    for _ in range(25 * 3):  # every 25 successes: +1% of the budget
        bucket.speed_up()
    assert bucket.rate == pytest.approx(97.0 * 0.97 + 3.0)
    for _ in range(25 * 10):
        bucket.speed_up()
    assert bucket.rate == pytest.approx(100.0)  # back to the budget, never above


def _first_fails_once_then_the_others(
    scheduler: RequestScheduler,
    before_failing: Callable[[], Awaitable[None]],
    kind: ErrorKind,
    stall: float = 0,
) -> list[str]:
    """The first request fails once with ``kind`` (after ``before_failing``), a second one
    waits behind it; what ran, in order. ``stall``: the loop blocks that long 5 ms in."""
    order: list[str] = []

    async def probe() -> str:
        order.append(f"probe {len(order) + 1}")
        if len(order) == 1:
            await before_failing()
            raise Boom(kind)
        return "p"

    async def other() -> str:
        order.append("other")
        return "o"

    async def main() -> list[str]:
        first = asyncio.ensure_future(scheduler.run(probe))
        await asyncio.sleep(0)  # the first request is out
        second = asyncio.ensure_future(scheduler.run(other))
        if stall:
            asyncio.get_running_loop().call_later(0.005, time.sleep, stall)
        return list(await asyncio.gather(first, second))

    assert asyncio.run(main()) == ["p", "o"]
    return order


def test_an_error_of_the_first_request_due_with_the_grace_still_holds_the_others() -> None:
    """A loop stalled past the grace (a loaded machine) runs the first request's error and the
    grace's end in one turn: the error is seen first, and the others wait while it is retried
    (else they would all go to a server that has just refused)."""
    scheduler = make(probe_grace_s=0.2)

    async def answer_in_10_ms() -> None:
        await asyncio.sleep(0.01)

    order = _first_fails_once_then_the_others(
        scheduler, answer_in_10_ms, ErrorKind.SERVER, stall=0.3
    )
    assert order == ["probe 1", "probe 2", "other"]


class _LoopCpu:
    """A stand-in for the loop thread's CPU clock in ``alambic.utils.idle``: what
    :meth:`burn` spends counts, in wall time, so that a loaded machine (a busy loop thread
    descheduled now and then) reads the same as a quiet one."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import types

        from alambic.utils import idle

        self.spent = 0.0
        clock = types.SimpleNamespace(monotonic=time.monotonic, thread_time=lambda: self.spent)
        monkeypatch.setattr(idle, "time", clock)

    def burn(self, seconds: float) -> None:
        """Compute on the calling thread (the loop's), as lazy imports on a first call do."""
        start = time.monotonic()
        while time.monotonic() - start < seconds:
            pass
        self.spent += time.monotonic() - start


def test_the_grace_counts_the_loop_idle_not_the_first_calls_own_cpu(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A loaded machine: the first request's own first call (lazy imports, building its
    client) takes longer than the grace in CPU before a refused connection shows. Its error is
    still seen alone: the grace is idle time of the loop, and the others wait while it is
    retried instead of all going to the closed port."""
    cpu = _LoopCpu(monkeypatch)
    scheduler = make(probe_grace_s=0.05)

    async def compute_then_be_refused() -> None:
        cpu.burn(0.15)  # three graces of CPU before the connection is refused
        await asyncio.sleep(0.001)

    order = _first_fails_once_then_the_others(
        scheduler, compute_then_be_refused, ErrorKind.CONNECTION
    )
    assert order == ["probe 1", "probe 2", "other"]


def test_an_idle_timer_waits_for_idle_time_or_its_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    from alambic.utils.idle import IdleTimer

    cpu = _LoopCpu(monkeypatch)

    async def fired_after_busy(seconds: float, cap: float, busy: float) -> float:
        """Seconds from the end of ``busy`` seconds of the loop's CPU to the timer's call."""
        loop = asyncio.get_running_loop()
        fired = loop.create_future()
        IdleTimer(seconds, lambda: fired.set_result(time.monotonic()), cap=cap)
        cpu.burn(busy)
        busy_end = time.monotonic()
        return float(await fired) - busy_end

    async def main() -> list[float]:
        return [
            await fired_after_busy(0.05, 1.0, 0.0),  # idle: the grace as it is
            await fired_after_busy(0.05, 1.0, 0.15),  # busy first: the idle time comes after
            await fired_after_busy(0.3, 0.1, 0.3),  # busy past the cap: the cap decides
        ]

    idle, busy_first, capped = asyncio.run(main())
    # (a loaded machine may make ticks late, which only delays a call, up to the cap)
    assert 0.045 <= idle <= 1.1
    assert 0.045 <= busy_first <= 1.1  # a whole grace of idle time after the CPU
    assert capped < 0.2  # at the first tick after the CPU, not 0.3 s of idle time later


@pytest.mark.parametrize("first_reply_s", [0.01, 0.1])  # before / after the grace ends
def test_the_first_request_announces_its_grace_as_idle_time(first_reply_s: float) -> None:
    """While the first request goes alone the loop waits: the scheduler says so, once, with
    the grace (the executor imports the dataset writer's modules meanwhile), and says when
    the wait is over (0), whichever comes first of the reply and the grace's end."""
    from alambic.utils.idle import on_idle_ahead

    scheduler = make(probe_grace_s=0.05)

    async def attempt() -> str:
        await asyncio.sleep(first_reply_s)
        return "ok"

    async def main() -> tuple[list[str], list[float]]:
        heard: list[float] = []
        stop = on_idle_ahead(asyncio.get_running_loop(), heard.append)
        first = asyncio.ensure_future(scheduler.run(attempt))
        await asyncio.sleep(0)
        rest = [asyncio.ensure_future(scheduler.run(attempt)) for _ in range(5)]
        results = await asyncio.gather(first, *rest)
        await scheduler.run(attempt)  # later requests announce nothing
        stop()
        return list(results), heard

    results, heard = asyncio.run(main())
    assert results == ["ok"] * 6
    assert heard == [0.05, 0.0]

"""The request scheduler every API client shares.

One :class:`RequestScheduler` per LLM decides when each request attempt may start and what to
do when it fails:

- **Concurrency.** At most ``max_concurrency`` attempts in flight. The effective limit adapts
  (AIMD): a 429 halves it (never below 1), and every run of as many successes as the current
  limit raises it by one, back up to ``max_concurrency``.
- **Budgets.** Requests per minute (``rpm``) and tokens per minute (``tpm``) are token buckets
  that refill continuously at ``rpm / 60`` per second and hold only a small burst, so the rate
  stays under the provider's limit over any window. A request reserves its estimated tokens
  before it starts (characters / 4 of the messages plus ``max_tokens``); the estimate is
  corrected from the reply's usage once it is known.
- **Provider headers.** A provider passes its reply headers to :meth:`observe_headers`
  (OpenAI ``x-ratelimit-*``, Anthropic ``anthropic-ratelimit-*``). A budget the user did not
  configure is learned from the ``limit`` header (per minute, as both providers define it), and
  ``remaining: 0`` holds new requests back until the ``reset`` time, whatever the window.
- **Retries.** Rate limits (429), server errors (5xx), timeouts, dropped connections and
  malformed replies are retried with exponential backoff and full jitter, honouring
  ``Retry-After``; errors that cannot succeed (400, 401, 404, context too long) fail at once.
  Every attempt has its own ``timeout``. A request that finally fails raises
  :class:`~alambic.errors.LLMRequestError`, which the LLM turns into a failed generation and the
  task into a failed row: it never crashes the run.

The per-request cost is a few microseconds: no task is created per request, and asyncio
futures are only made when a request actually has to wait for a concurrency slot.

asyncio primitives are bound to the running loop on first use, so one LLM can serve a pipeline
run and, later, a synchronous ``generate`` call without carrying a stale loop.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, TypeVar

from alambic.errors import ErrorKind, LLMRequestError

T = TypeVar("T")

_timeout: Any = getattr(asyncio, "timeout", None)

#: Share of a requests-per-minute budget the scheduler uses (see :class:`TokenBucket`).
REQUEST_PACE = 0.99
#: The longest stall of the event loop whose held-back requests a budget catches up (0.25 s
#: measured the same throughput on W6 with more 429s).
STALL_CREDIT_S = 0.1
#: After a 429 lowers a budget's pace, further 429s within this many seconds do not.
SETTLE_S = 1.0

Classifier = Callable[[BaseException], tuple[ErrorKind, "float | None"]]


@dataclass
class SchedulerCounters:
    """What the scheduler did, for the progress display and the run summary.

    ``requests`` counts attempts sent (retries included); ``rate_limited`` the attempts
    answered 429; ``failures`` the requests that failed for good; ``budget_wait_s`` the time
    requests spent waiting for the rpm/tpm budgets or a provider's reset;
    ``requests_per_minute`` the pace requests are sent at right now (the budget times
    :data:`REQUEST_PACE`, lower for a while after 429s).
    """

    requests: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    retries: int = 0
    rate_limited: int = 0
    failures: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    budget_wait_s: float = 0.0
    concurrency_limit: int = 0
    requests_per_minute: float | None = None
    errors_by_kind: dict[str, int] = field(default_factory=dict)

    def snapshot(self) -> dict[str, object]:
        return {
            "requests": self.requests,
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "retries": self.retries,
            "rate_limited": self.rate_limited,
            "failures": self.failures,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "budget_wait_s": round(self.budget_wait_s, 3),
            "concurrency_limit": self.concurrency_limit,
            "requests_per_minute": self.requests_per_minute,
            "errors_by_kind": dict(self.errors_by_kind),
        }


@dataclass
class SchedulerLimits:
    """The limits of one LLM; ``None`` budgets are unlimited (unless learned from headers)."""

    max_concurrency: int = 64
    timeout: float = 120.0
    max_retries: int = 6
    backoff_base: float = 0.5
    backoff_max: float = 60.0
    rpm: float | None = None
    tpm: float | None = None
    adaptive_concurrency: bool = True
    learn_from_headers: bool = True


class TokenBucket:
    """A budget of ``per_minute`` units that refills continuously and holds ``burst`` at most.

    :meth:`reserve` never blocks: it takes the units at once (the level may go negative) and
    returns how long the caller must wait before starting, so reservations queue up in order
    without a lock and the long-run rate is exactly ``per_minute * pace``. It starts with a
    small burst rather than a full one, so a run does not open with a spike of requests. Idle
    time fills it up to ``burst`` only; time that requests spent queued past their turn (a
    stalled event loop) is caught up to :data:`STALL_CREDIT_S` worth, since the requests it
    held back left a gap of the same size in every window that contains it.

    ``pace`` is the share of the budget actually used. A provider counts a request when it
    arrives, not when it leaves, and enforces its per-minute limit over short windows too
    (6,000 a minute is 100 in any second): at exactly the limit, any request delayed on the way
    puts the next second's count one over, so request budgets keep 1% in hand
    (:data:`REQUEST_PACE`), which absorbs ~10 ms of jitter at 100 requests/s.

    A provider's window and clock never line up exactly with ours, so a 429 despite the budget
    lowers the rate by 3% (at most once per wave of rejections, see :meth:`slow_down`; never
    below half the budget),
    and every 25 successes raise it again by 1% of the budget, up to the paced budget.
    """

    __slots__ = (
        "_credit_until",
        "_last_cut",
        "_queued",
        "_successes",
        "capacity",
        "ceiling",
        "level",
        "pace",
        "rate",
        "stamp",
    )

    def __init__(self, per_minute: float, burst: float | None = None, pace: float = 1.0) -> None:
        if per_minute <= 0:
            raise ValueError(f"a budget must be positive, got {per_minute} per minute")
        if not 0 < pace <= 1:
            raise ValueError(f"pace is the share of the budget to use, in (0, 1]; got {pace}")
        self.pace = pace
        self.rate = self.ceiling = per_minute * pace / 60.0
        self.capacity = burst if burst is not None else max(1.0, self.rate / 20.0)
        self.level = min(self.capacity, 1.0) if burst is None else self.capacity
        self.stamp = time.monotonic()
        self._successes = 0
        self._last_cut = -1.0
        self._queued = False  # the last reservation had to wait its turn
        self._credit_until = 0.0  # a stall's catch-up may be taken until then

    @property
    def per_minute(self) -> float:
        """The budget as given (the rate before ``pace`` and any slow-down)."""
        return self.ceiling * 60.0 / self.pace

    def set_rate(self, per_minute: float) -> None:
        self._refill(time.monotonic())
        self.rate = self.ceiling = per_minute * self.pace / 60.0

    def slow_down(self, started: float, now: float) -> None:
        """A request started at ``started`` was rejected: lower the rate (once per wave).

        A wave is every rejection of a request sent before the last cut or within
        :data:`SETTLE_S` of it: a provider's window holds the arrivals that drew the first 429
        for about that long, and one hiccup (the provider pausing, then counting a backlog of
        arrivals at once) would otherwise cut the pace again for each request it rejects.
        """
        if started < self._last_cut or now - self._last_cut < SETTLE_S:
            return
        self._refill(now)
        self._last_cut = now
        self._successes = 0
        self.rate = max(self.ceiling * 0.5, self.rate * 0.97)

    def speed_up(self) -> None:
        """One more success: creep back towards the budget."""
        self._successes += 1
        if self._successes >= 25:
            self._successes = 0
            self._refill(time.monotonic())
            self.rate = min(self.ceiling, self.rate + self.ceiling * 0.01)

    def _refill(self, now: float) -> None:
        level = self.level + (now - self.stamp) * self.rate
        cap = self.capacity
        if level > cap:
            if self._queued:
                # A request was waiting its turn, so the time past that turn was a stall (the
                # event loop busy elsewhere), not idleness: its share of the budget is owed to
                # the requests queued behind, which may catch it up, up to STALL_CREDIT_S
                # worth, within STALL_CREDIT_S. Safe in any window: the catch-up replaces
                # requests the stall held back. (A debt from a provider's hold or a token
                # estimate that fell short is not a queue and earns no credit.)
                self._credit_until = now + STALL_CREDIT_S
            if now < self._credit_until:
                cap = max(cap, self.rate * STALL_CREDIT_S)
        self.level = level if level < cap else cap
        self.stamp = now

    def reserve(self, amount: float, now: float) -> float:
        """Take ``amount`` units; return the seconds to wait before using them."""
        self._refill(now)
        self.level -= amount
        self._queued = self.level < 0
        return 0.0 if self.level >= 0 else -self.level / self.rate

    def refund(self, amount: float) -> None:
        """Give back (or, negative, take more of) units once the true cost is known."""
        self.level = min(self.capacity, self.level + amount)


class AdaptiveLimit:
    """A concurrency limit that can shrink and grow while requests wait on it.

    ``acquire`` takes a slot without awaiting when one is free (the common case); otherwise it
    parks a future in a FIFO queue that ``release`` wakes.

    Not every 429 means overload (some providers reject a few requests at random), so the
    limit is cut only when the share of 429s among recent answers (a moving average,
    ``pressure``) passes 15%: a run of four 429s does it, 5% scattered 429s do not.
    """

    __slots__ = (
        "_last_decrease",
        "_successes",
        "_waiters",
        "in_flight",
        "limit",
        "maximum",
        "pressure",
    )

    def __init__(self, maximum: int) -> None:
        self.maximum = maximum
        self.limit = maximum
        self.in_flight = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._successes = 0
        self._last_decrease = -1.0
        self.pressure = 0.0

    async def acquire(self) -> None:
        if self.in_flight < self.limit and not self._waiters:
            self.in_flight += 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # the slot was handed over just as we were cancelled
            elif waiter in self._waiters:
                self._waiters.remove(waiter)
            raise

    def release(self) -> None:
        self.in_flight -= 1
        self._wake()

    def _wake(self) -> None:
        waiters = self._waiters
        while waiters and self.in_flight < self.limit:
            waiter = waiters.popleft()
            if not waiter.done():
                self.in_flight += 1
                waiter.set_result(None)

    def on_success(self) -> None:
        self.pressure *= 0.95
        if self.limit >= self.maximum:
            return
        self._successes += 1
        if self._successes >= self.limit:
            self._successes = 0
            self.limit = min(self.maximum, self.limit + 1)
            self._wake()

    def on_rate_limited(self, started: float, now: float) -> None:
        """Halve the limit, once per wave: 429s of attempts started before the last cut
        belong to the same overload and do not cut again."""
        self.pressure = self.pressure * 0.95 + 0.05
        if self.pressure < 0.15 or started < self._last_decrease:
            return
        self._last_decrease = now
        self._successes = 0
        self.limit = max(1, self.limit // 2)


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_reset(value: str | None, now_epoch: float | None = None) -> float | None:
    """Seconds until a budget resets, from ``"20ms"``, ``"1.5s"``, ``"6m0s"``, a bare number of
    seconds, or an RFC 3339 timestamp (Anthropic); ``None`` when unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    parts = _DURATION.findall(value)
    if parts and "".join(n + u for n, u in parts) == value:
        return sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    now = time.time() if now_epoch is None else now_epoch
    return max(0.0, moment.timestamp() - now)


@dataclass(frozen=True, slots=True)
class RateLimitHeaders:
    """The rate-limit state a provider reported with one reply."""

    limit_requests: int | None = None
    remaining_requests: int | None = None
    reset_requests_s: float | None = None
    limit_tokens: int | None = None
    remaining_tokens: int | None = None
    reset_tokens_s: float | None = None


def _int(value: Any) -> int | None:
    if value is None:
        return None
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return None


def read_rate_limit_headers(headers: Mapping[str, str] | Any) -> RateLimitHeaders | None:
    """Rate-limit headers in OpenAI (``x-ratelimit-*``) or Anthropic
    (``anthropic-ratelimit-*``) style; ``None`` when the reply carries none."""
    get = headers.get
    limit = get("x-ratelimit-limit-requests")
    if limit is not None or get("x-ratelimit-limit-tokens") is not None:
        return RateLimitHeaders(
            limit_requests=_int(limit),
            remaining_requests=_int(get("x-ratelimit-remaining-requests")),
            reset_requests_s=parse_reset(get("x-ratelimit-reset-requests")),
            limit_tokens=_int(get("x-ratelimit-limit-tokens")),
            remaining_tokens=_int(get("x-ratelimit-remaining-tokens")),
            reset_tokens_s=parse_reset(get("x-ratelimit-reset-tokens")),
        )
    limit = get("anthropic-ratelimit-requests-limit")
    if limit is not None or get("anthropic-ratelimit-tokens-limit") is not None:
        return RateLimitHeaders(
            limit_requests=_int(limit),
            remaining_requests=_int(get("anthropic-ratelimit-requests-remaining")),
            reset_requests_s=parse_reset(get("anthropic-ratelimit-requests-reset")),
            limit_tokens=_int(get("anthropic-ratelimit-tokens-limit")),
            remaining_tokens=_int(get("anthropic-ratelimit-tokens-remaining")),
            reset_tokens_s=parse_reset(get("anthropic-ratelimit-tokens-reset")),
        )
    return None


def estimate_tokens(messages: Any, max_tokens: Any = None) -> int:
    """A cheap upper-ish estimate of a request's tokens: characters / 4 plus ``max_tokens``."""
    chars = 0
    if isinstance(messages, str):
        chars = len(messages)
    else:
        for message in messages or ():
            content = message.get("content") if isinstance(message, Mapping) else message
            chars += len(content) if isinstance(content, str) else len(str(content))
    extra = max_tokens if isinstance(max_tokens, int) else 256
    return chars // 4 + 4 + extra


class SharedBudget(Protocol):
    """A rate budget shared by several processes (see ``attach_shared_budget``)."""

    async def acquire(self, tokens: int) -> float: ...

    def rate_limited(self, started: float) -> None: ...

    def succeeded(self) -> None: ...

    def refund(self, tokens: int) -> None: ...

    def learn(self, limit_requests: int | None, limit_tokens: int | None) -> None: ...


class RequestScheduler:
    """Runs request attempts under the limits of one LLM (see the module docstring)."""

    def __init__(self, limits: SchedulerLimits, classify: Classifier) -> None:
        self.limits = limits
        self.classify = classify
        self.counters = SchedulerCounters(
            concurrency_limit=limits.max_concurrency,
            requests_per_minute=round(limits.rpm * REQUEST_PACE, 1) if limits.rpm else None,
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._slots: AdaptiveLimit | None = None
        self.request_budget: TokenBucket | None = (
            TokenBucket(limits.rpm, pace=REQUEST_PACE) if limits.rpm else None
        )
        self.token_budget: TokenBucket | None = TokenBucket(limits.tpm) if limits.tpm else None
        self._rpm_learned = False
        self._tpm_learned = False
        self._hold_until = 0.0
        self._probe: asyncio.Event | None = None
        self._warm = False
        self._pace_lock: asyncio.Lock | None = None
        self.shared_budget: SharedBudget | None = None

    def attach_shared_budget(self, budget: SharedBudget | None) -> None:
        """Pace requests by a budget shared with other processes (a distributed run) instead
        of this scheduler's own buckets; 429s, successes, token counts and learned limits are
        reported to it, so every process sharing it slows down and speeds up together."""
        self.shared_budget = budget

    def _bind(self) -> AdaptiveLimit:
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._slots is None:
            self._loop = loop
            self._slots = AdaptiveLimit(self.limits.max_concurrency)
            self._probe = None
            self._warm = False
            self._pace_lock = asyncio.Lock()
        return self._slots

    @property
    def concurrency_limit(self) -> int:
        """The concurrency allowed right now (below ``max_concurrency`` after 429s)."""
        return self._slots.limit if self._slots is not None else self.limits.max_concurrency

    async def _wait_for_budget(self, tokens: int) -> None:
        if self.request_budget is None:
            await self._reserve_and_wait(tokens)
            return
        # Requests are paced one after another from the time each actually leaves: after a
        # stalled event loop, only the bucket's stall credit is released at once, not every
        # request that fell due meanwhile.
        start = time.monotonic()
        assert self._pace_lock is not None
        async with self._pace_lock:
            await self._reserve_and_wait(tokens)
        self.counters.budget_wait_s += time.monotonic() - start

    async def _reserve_and_wait(self, tokens: int) -> None:
        now = time.monotonic()
        wait = self._hold_until - now
        if self.request_budget is not None:
            wait = max(wait, self.request_budget.reserve(1, now))
        if self.token_budget is not None and tokens:
            wait = max(wait, self.token_budget.reserve(tokens, now))
        if wait > 0:
            if self.request_budget is None:
                self.counters.budget_wait_s += wait
            await asyncio.sleep(wait)

    async def run(self, attempt: Callable[[], Awaitable[T]], *, estimated_tokens: int = 0) -> T:
        """Run ``attempt`` until it succeeds, fails for good, or retries are exhausted."""
        slots = self._bind()
        probe = False
        if not self._warm:
            # The first request goes alone: the client's first connection is slow to open,
            # which would otherwise bunch the paced requests queued behind it, and a wrong key
            # or URL fails once instead of once per waiting request.
            if self._probe is None:
                self._probe = asyncio.Event()
                probe = True
            else:
                await self._probe.wait()
        try:
            return await self._run(attempt, slots, estimated_tokens)
        finally:
            if probe:
                self._warm = True
                assert self._probe is not None
                self._probe.set()

    async def _run(
        self, attempt: Callable[[], Awaitable[T]], slots: AdaptiveLimit, estimated_tokens: int
    ) -> T:
        counters = self.counters
        limits = self.limits
        tries = 0
        while True:
            tries += 1
            await slots.acquire()
            try:
                shared = self.shared_budget
                if shared is not None:
                    counters.budget_wait_s += await shared.acquire(estimated_tokens)
                elif (
                    self.request_budget is not None
                    or self.token_budget is not None
                    or self._hold_until
                ):
                    await self._wait_for_budget(estimated_tokens)
                counters.requests += 1
                counters.in_flight += 1
                if counters.in_flight > counters.max_in_flight:
                    counters.max_in_flight = counters.in_flight
                started = time.monotonic()
                try:
                    if _timeout is not None:  # no task per attempt (Python >= 3.11)
                        async with _timeout(limits.timeout):
                            result = await attempt()
                    else:
                        result = await asyncio.wait_for(attempt(), limits.timeout)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    error: BaseException = exc
                else:
                    if limits.adaptive_concurrency:
                        slots.on_success()
                        counters.concurrency_limit = slots.limit
                    if shared is not None:
                        shared.succeeded()
                    budget = self.request_budget
                    if budget is not None and budget.rate < budget.ceiling:
                        budget.speed_up()
                        counters.requests_per_minute = round(budget.rate * 60, 1)
                    return result
                finally:
                    counters.in_flight -= 1
            finally:
                slots.release()
            kind, retry_after = self._classify(error)
            counters.errors_by_kind[kind.value] = counters.errors_by_kind.get(kind.value, 0) + 1
            if kind is ErrorKind.RATE_LIMIT:
                counters.rate_limited += 1
                if self.shared_budget is not None:
                    self.shared_budget.rate_limited(started)
                elif self.request_budget is not None:
                    # under a request budget, 429s mean the pace is a little too fast, not
                    # that too many requests are in flight: slow the pace instead
                    self.request_budget.slow_down(started, time.monotonic())
                    counters.requests_per_minute = round(self.request_budget.rate * 60, 1)
                elif limits.adaptive_concurrency:
                    slots.on_rate_limited(started, time.monotonic())
                    counters.concurrency_limit = slots.limit
            if not kind.retryable or tries > limits.max_retries:
                counters.failures += 1
                given_up = f" (gave up after {tries} attempts)" if kind.retryable else ""
                raise LLMRequestError(
                    f"{type(error).__name__}: {error}{given_up}",
                    kind=kind,
                    retry_after=retry_after,
                    attempts=tries,
                ) from error
            counters.retries += 1
            await asyncio.sleep(self._backoff(tries, retry_after))

    def _classify(self, error: BaseException) -> tuple[ErrorKind, float | None]:
        if isinstance(error, (asyncio.TimeoutError, TimeoutError)):
            return ErrorKind.TIMEOUT, None
        if isinstance(error, LLMRequestError):
            return error.kind, error.retry_after
        response = getattr(error, "response", None)
        if response is not None and self.limits.learn_from_headers:
            self.observe_headers(getattr(response, "headers", None))
        return self.classify(error)

    def _backoff(self, tries: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.limits.backoff_max) + random.uniform(0, 0.1)
        delay = min(self.limits.backoff_max, self.limits.backoff_base * 2 ** (tries - 1))
        return random.uniform(delay / 2, delay)

    def record_tokens(
        self, input_tokens: int | None, output_tokens: int | None, estimated: int = 0
    ) -> None:
        """Count a reply's tokens and correct the token budget by ``estimated - actual``."""
        used = (input_tokens or 0) + (output_tokens or 0)
        self.counters.input_tokens += input_tokens or 0
        self.counters.output_tokens += output_tokens or 0
        if self.token_budget is not None and estimated and used:
            self.token_budget.refund(estimated - used)
        if self.shared_budget is not None and estimated and used:
            self.shared_budget.refund(estimated - used)

    def observe_headers(self, headers: Mapping[str, str] | Any) -> None:
        """Learn from a reply's rate-limit headers (see the module docstring)."""
        if headers is None or not self.limits.learn_from_headers:
            return
        info = read_rate_limit_headers(headers)
        if info is None:
            return
        limits = self.limits
        if self.shared_budget is not None:
            self.shared_budget.learn(
                info.limit_requests if limits.rpm is None else None,
                info.limit_tokens if limits.tpm is None else None,
            )
        if info.limit_requests and limits.rpm is None:
            if self.request_budget is None:
                self.request_budget = TokenBucket(info.limit_requests, pace=REQUEST_PACE)
                self._rpm_learned = True
                self.counters.requests_per_minute = round(self.request_budget.rate * 60, 1)
            elif self._rpm_learned and self.request_budget.per_minute != info.limit_requests:
                self.request_budget.set_rate(info.limit_requests)
        if info.limit_tokens and limits.tpm is None:
            if self.token_budget is None:
                self.token_budget = TokenBucket(info.limit_tokens)
                self._tpm_learned = True
            elif self._tpm_learned and self.token_budget.per_minute != info.limit_tokens:
                self.token_budget.set_rate(info.limit_tokens)
        # remaining 0: nothing may start before the reset. A budget absorbs the hold as debt,
        # which keeps the requests after it paced instead of releasing them all at once.
        # A budget the user configured is trusted as is: pacing at it already keeps the
        # provider's count at its limit, where holding on every "remaining: 0" costs ~30%.
        configured = self.request_budget is not None and not self._rpm_learned
        if info.remaining_requests == 0 and info.reset_requests_s and not configured:
            self._hold(self.request_budget, info.reset_requests_s)
        if info.remaining_tokens == 0 and info.reset_tokens_s:
            self._hold(self.token_budget, info.reset_tokens_s)

    def _hold(self, budget: TokenBucket | None, seconds: float) -> None:
        now = time.monotonic()
        if budget is not None:
            budget._refill(now)
            budget.level = min(budget.level, -seconds * budget.rate)
        else:
            self._hold_until = max(self._hold_until, now + seconds)


def monotonic() -> float:
    return time.monotonic()


__all__ = [
    "REQUEST_PACE",
    "SETTLE_S",
    "STALL_CREDIT_S",
    "AdaptiveLimit",
    "RateLimitHeaders",
    "RequestScheduler",
    "SchedulerCounters",
    "SchedulerLimits",
    "SharedBudget",
    "TokenBucket",
    "estimate_tokens",
    "parse_reset",
    "read_rate_limit_headers",
]

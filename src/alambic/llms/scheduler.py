"""The request scheduler every API client shares.

One :class:`RequestScheduler` per LLM decides when each request attempt may start and what to
do when it fails:

- **Concurrency.** At most ``max_concurrency`` attempts in flight. The effective limit adapts
  to overload only (AIMD): when the last four answers were all 429s and 429s are 15% of the
  recent ones, it halves (never below 1, once per wave), and every run of as many successes
  as the current limit raises it by one, back up to ``max_concurrency``. Scattered 429s (a
  provider rejecting a few requests at random, 5-10%) are retried and practically never lower
  the limit: cutting concurrency for them would cost throughput and fix nothing.
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
  ``Retry-After``. A scattered 429 (the adaptive limit sees no overload: most answers succeed)
  starts its backoff at :data:`SCATTERED_BACKOFF_S` instead of ``backoff_base``: the provider
  turned away one request of many, and half a second per retried row would be a tail that
  costs a third of a short run; under overload the full backoff applies. Errors that cannot succeed (400, 401, 404, context too long) fail at once.
  Every attempt has its own ``timeout``. A request that finally fails raises
  :class:`~alambic.errors.LLMRequestError`, which the LLM turns into a failed generation and the
  task into a failed row: it never crashes the run.
- **Circuit breaker.** Errors that no row can get past stop everything at once: a 401/403 (the
  key), a 404 (the model or the URL path), or a server that refused every connection before
  any request succeeded (three attempts in a row). The request that met it fails with its
  reason; every later request raises the LLM's :class:`~alambic.errors.LLMConfigurationError`
  without being sent, so the step stops with one clear error instead of one failed row per
  request.
- **Not a request error.** A :class:`~alambic.errors.StoreError` raised during an attempt (the
  request cache could not write: disk full) is not retried or turned into a failed row: it
  propagates, and the run stops.

The per-request cost is a few microseconds: no task is created per request, and asyncio
futures are only made when a request actually has to wait for a concurrency slot.

asyncio primitives are bound to the running loop on first use, so one LLM can serve a pipeline
run and, later, a synchronous ``generate`` call without carrying a stale loop.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast

from alambic.errors import ErrorKind, LLMConfigurationError, LLMRequestError, StoreError
from alambic.llms.classify import never_connected
from alambic.llms.limits import (
    OVERLOAD_RUN,
    OVERLOAD_SHARE,
    PRESSURE_WEIGHT,
    REQUEST_PACE,
    SETTLE_S,
    STALL_CREDIT_S,
    AdaptiveLimit,
    StartRamp,
    TokenBucket,
)
from alambic.llms.rate_limit_headers import (
    RateLimitHeaders,
    parse_reset,
    read_rate_limit_headers,
)
from alambic.redaction import redact
from alambic.spending import RunStopping
from alambic.utils.deadline import SUPPORTED as _DEADLINES
from alambic.utils.deadline import deadline
from alambic.utils.idle import IdleTimer, idle_ahead

if TYPE_CHECKING:
    from alambic.budget import Ticket

T = TypeVar("T")

#: The first backoff of a 429 when the adaptive limit sees no overload (at most
#: ``backoff_base``; doubling from there if the same request is refused again).
SCATTERED_BACKOFF_S = 0.1

#: Attempts in a row that could not even connect, before any success, that stop the LLM.
REFUSED_ATTEMPTS_TO_STOP = 3

Classifier = Callable[[BaseException], tuple[ErrorKind, "float | None"]]
Unusable = Callable[[ErrorKind, BaseException], LLMConfigurationError]
_FATAL_KINDS = frozenset({ErrorKind.AUTHENTICATION, ErrorKind.NOT_FOUND})


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
    probe_first: bool = True
    """Send the first request alone (off for batch jobs, where it would be a job of one)."""
    probe_grace_s: float = 0.1
    """How long the first request goes alone at most while no answer came back: the requests
    queued behind it leave when it succeeds or when the event loop has idled this long since
    it started (its own first call's CPU, such as lazy imports, does not count; five times
    this of wall time at most). A wrong URL is refused, and a local server refuses a bad
    key, in far less; a slow model's first answer would otherwise hold every slot idle for
    its whole latency (W7, 1 s +- 0.5 s: 0.5 s of grace cost 2-3 points of the ideal rows/s
    against 0.1 s). An error answer within the grace keeps the others waiting while the first
    request is retried; one that comes later trips the breaker, which stops every request not
    yet sent."""
    record_request_info: bool = False
    """Put the seconds the successful attempt took in its result's ``latency_s``, and the
    failed attempts before it (if any) in ``retries`` (API clients, whose results are
    ``GenerateOutput`` dicts: the rows keep them for the viewer)."""


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

    def __init__(
        self, limits: SchedulerLimits, classify: Classifier, unusable: Unusable | None = None
    ) -> None:
        self.limits = limits
        self.classify = classify
        self.unusable = unusable
        self.stopped: LLMConfigurationError | None = None
        self._succeeded = False
        self._refused_in_a_row = 0
        self.counters = SchedulerCounters(
            concurrency_limit=limits.max_concurrency,
            requests_per_minute=round(limits.rpm * REQUEST_PACE, 1) if limits.rpm else None,
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._slots: AdaptiveLimit | None = None
        self._ramp = StartRamp()
        self.request_budget: TokenBucket | None = (
            TokenBucket(limits.rpm, pace=REQUEST_PACE) if limits.rpm else None
        )
        self.token_budget: TokenBucket | None = TokenBucket(limits.tpm) if limits.tpm else None
        self._rpm_learned = False
        self._tpm_learned = False
        self._hold_until = 0.0
        self._probe: asyncio.Event | None = None
        self._probe_timer: IdleTimer | asyncio.Handle | None = None
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
            self._ramp = StartRamp()
            self._probe = None
            self._probe_timer = None
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

    async def run(
        self,
        attempt: Callable[[], Awaitable[T]],
        *,
        estimated_tokens: int = 0,
        ticket: Ticket | None = None,
    ) -> T:
        """Run ``attempt`` until it succeeds, fails for good, or retries are exhausted.

        With a ``ticket`` (a run budget's claim), each attempt first reserves its worst case
        (raising :class:`~alambic.budget.BudgetExhausted` when it could pass the cap); a
        failed attempt gives it back, a successful one leaves it for the caller to settle."""
        slots = self._bind()
        probe = False
        if not self._warm and self.limits.probe_first:
            # The first request goes alone: the client's first connection is slow to open,
            # which would otherwise bunch the paced requests queued behind it, and a wrong key
            # or URL fails once instead of once per waiting request. Not for longer than the
            # grace: against a model answering in seconds, waiting for its first answer
            # idled every slot for that long (W7: a tenth of the run).
            if self._probe is None:
                self._probe = asyncio.Event()
                grace = self.limits.probe_grace_s  # of idle time (see IdleTimer)
                self._probe_timer = IdleTimer(grace, self._grace_over, cap=5 * grace)
                probe = True
                idle_ahead(self.limits.probe_grace_s)
            else:
                await self._probe.wait()
        try:
            return await self._run(attempt, slots, estimated_tokens, ticket)
        finally:
            if probe:
                self._warm = True
                self._release_waiting()
                if self._probe_timer is not None:
                    self._probe_timer.cancel()
                    self._probe_timer = None

    def _grace_over(self) -> None:
        """The first request's grace ran out: the others leave one turn of the loop later, so
        that an answer already arrived (a loop stalled for the whole grace runs both in one
        turn) is seen first, and an error among them keeps them waiting as it should."""
        assert self._probe is not None
        self._probe_timer = asyncio.get_running_loop().call_soon(self._release_waiting)

    def _release_waiting(self) -> None:
        """The requests held behind the first one go now (once), and the loop's announced
        wait is over."""
        assert self._probe is not None
        if not self._probe.is_set():
            self._probe.set()
            idle_ahead(0.0)

    async def _run(
        self,
        attempt: Callable[[], Awaitable[T]],
        slots: AdaptiveLimit,
        estimated_tokens: int,
        ticket: Ticket | None = None,
    ) -> T:
        counters = self.counters
        limits = self.limits
        tries = 0
        while True:
            tries += 1
            if self.stopped is not None:
                raise self._stopped_error()
            await slots.acquire(first=tries > 1)
            try:
                turn = self._ramp.admit()
                if turn is not None:  # a burst: this one leaves a few turns later
                    await turn
                if self.stopped is not None:  # the breaker tripped while this one waited
                    raise self._stopped_error()
                if ticket is not None and ticket.stopping is not None:
                    # before a pacing wait is booked: a stopping run's waiting rows leave at
                    # once instead of draining at the rate limit's pace
                    raise RunStopping(ticket.stopping)
                if ticket is not None and ticket.remote:  # its round trip before the pacing
                    await ticket.areserve()
                shared = self.shared_budget
                if shared is not None:
                    counters.budget_wait_s += await shared.acquire(estimated_tokens)
                elif (
                    self.request_budget is not None
                    or self.token_budget is not None
                    or self._hold_until
                ):
                    await self._wait_for_budget(estimated_tokens)
                if ticket is not None and not ticket.remote:
                    ticket.reserve()
                counters.requests += 1
                counters.in_flight += 1
                if counters.in_flight > counters.max_in_flight:
                    counters.max_in_flight = counters.in_flight
                started = time.monotonic()
                try:
                    if _DEADLINES:  # no task nor timer per attempt (Python >= 3.11)
                        async with deadline(limits.timeout):
                            result = await attempt()
                    else:
                        result = await asyncio.wait_for(attempt(), limits.timeout)
                except (asyncio.CancelledError, StoreError):
                    if ticket is not None:
                        ticket.release(sent=True)
                    raise
                except Exception as exc:
                    error: BaseException = exc
                    if ticket is not None:
                        ticket.release(sent=True)
                    if self._probe_timer is not None:
                        # an error before the grace ran out (only the probe is out then):
                        # the server answers, but not yet usefully; the others keep waiting
                        # while the probe is retried, as a wrong URL must be found alone
                        self._probe_timer.cancel()
                        self._probe_timer = None
                else:
                    if limits.record_request_info:  # latency: without queueing or retries
                        info = cast("dict[str, Any]", result)
                        info["latency_s"] = time.monotonic() - started
                        if tries > 1:
                            info["retries"] = tries - 1
                    self._succeeded = True
                    self._refused_in_a_row = 0
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
            tripped = self._check_usable(kind, error)
            if tripped or not kind.retryable or tries > limits.max_retries:
                counters.failures += 1
                given_up = f" (gave up after {tries} attempts)" if kind.retryable else ""
                raise LLMRequestError(
                    f"{self._describe(kind, error)}{given_up}",
                    kind=kind,
                    retry_after=retry_after,
                    attempts=tries,
                ) from error
            counters.retries += 1
            scattered = (
                kind is ErrorKind.RATE_LIMIT
                and self.shared_budget is None
                and self.request_budget is None
                and limits.adaptive_concurrency
                and slots.pressure < OVERLOAD_SHARE
            )
            await asyncio.sleep(self._backoff(tries, retry_after, scattered=scattered))

    def _describe(self, kind: ErrorKind, error: BaseException) -> str:
        """The reason a user reads: the error, redacted of keys; for a timeout, which one."""
        text = redact(str(error)).strip()
        if kind is ErrorKind.TIMEOUT:
            detail = f" ({type(error).__name__}: {text})" if text else ""
            return (
                f"no reply within {self.limits.timeout:g} s (the LLM's `timeout` setting, per "
                f"attempt; raise it for slow servers or long generations){detail}"
            )
        return f"{type(error).__name__}: {text}" if text else type(error).__name__

    def _check_usable(self, kind: ErrorKind, error: BaseException) -> bool:
        """The circuit breaker (see the module docstring). Returns whether this error just
        tripped it: that request fails as a row with its own reason, and every request after
        it raises the LLM's :class:`LLMConfigurationError` instead of being sent."""
        if self.unusable is None or self.stopped is not None:
            return False
        if kind is ErrorKind.CONNECTION and not self._succeeded and never_connected(error):
            self._refused_in_a_row += 1
            if self._refused_in_a_row < REFUSED_ATTEMPTS_TO_STOP:
                return False
        elif kind not in _FATAL_KINDS:
            return False
        self.stopped = self.unusable(kind, _Redacted(self._describe(kind, error)))
        return True

    def _stopped_error(self) -> LLMConfigurationError:
        stopped = self.stopped
        assert stopped is not None
        return LLMConfigurationError(str(stopped), kind=stopped.kind, setting=stopped.setting)

    def _classify(self, error: BaseException) -> tuple[ErrorKind, float | None]:
        if isinstance(error, (asyncio.TimeoutError, TimeoutError)):
            return ErrorKind.TIMEOUT, None
        if isinstance(error, LLMRequestError):
            return error.kind, error.retry_after
        response = getattr(error, "response", None)
        if response is not None and self.limits.learn_from_headers:
            self.observe_headers(getattr(response, "headers", None))
        return self.classify(error)

    def _backoff(self, tries: int, retry_after: float | None, *, scattered: bool = False) -> float:
        """Seconds to wait before the next attempt: what ``Retry-After`` said, else
        exponential from ``backoff_base`` (from :data:`SCATTERED_BACKOFF_S` for a scattered
        429) with full jitter, at most ``backoff_max``."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.limits.backoff_max) + random.uniform(0, 0.1)
        base = self.limits.backoff_base
        if scattered:
            base = min(base, SCATTERED_BACKOFF_S)
        delay = min(self.limits.backoff_max, base * 2 ** (tries - 1))
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


class _Redacted(Exception):
    """An error's redacted text, for messages built from it."""


def monotonic() -> float:
    return time.monotonic()


__all__ = [
    "OVERLOAD_RUN",
    "OVERLOAD_SHARE",
    "PRESSURE_WEIGHT",
    "REFUSED_ATTEMPTS_TO_STOP",
    "REQUEST_PACE",
    "SCATTERED_BACKOFF_S",
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

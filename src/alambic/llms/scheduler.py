"""The request scheduler every API client shares.

It bounds concurrency, applies a per-request timeout, and retries what can succeed (rate
limits, server errors, timeouts, dropped connections) with exponential backoff and jitter,
honouring ``Retry-After``. Errors that cannot succeed (bad request, authentication, unknown
model, context too long) fail at once. A request that finally fails raises
:class:`~alambic.errors.LLMRequestError`, which the task turns into a failed row.

asyncio primitives are created for the running loop on first use, so one LLM can serve a
pipeline run and, later, a synchronous ``generate`` call without carrying a stale loop.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from alambic.errors import ErrorKind, LLMRequestError

T = TypeVar("T")

Classifier = Callable[[BaseException], tuple[ErrorKind, "float | None"]]


@dataclass
class SchedulerCounters:
    """What the scheduler did, for the progress display and the run summary."""

    requests: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    retries: int = 0
    rate_limited: int = 0
    failures: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    budget_wait_s: float = 0.0
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
            "errors_by_kind": dict(self.errors_by_kind),
        }


@dataclass
class SchedulerLimits:
    max_concurrency: int = 64
    timeout: float = 120.0
    max_retries: int = 6
    backoff_base: float = 0.5
    backoff_max: float = 60.0


class RequestScheduler:
    """Runs request attempts under the limits of one LLM."""

    def __init__(self, limits: SchedulerLimits, classify: Classifier) -> None:
        self.limits = limits
        self.classify = classify
        self.counters = SchedulerCounters()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._semaphore: asyncio.Semaphore | None = None

    def _bind(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._semaphore is None:
            self._loop = loop
            self._semaphore = asyncio.Semaphore(self.limits.max_concurrency)
        return self._semaphore

    async def run(self, attempt: Callable[[], Awaitable[T]], *, estimated_tokens: int = 0) -> T:
        """Run ``attempt`` until it succeeds, fails for good, or retries are exhausted."""
        semaphore = self._bind()
        counters = self.counters
        tries = 0
        while True:
            tries += 1
            async with semaphore:
                counters.requests += 1
                counters.in_flight += 1
                counters.max_in_flight = max(counters.max_in_flight, counters.in_flight)
                try:
                    return await asyncio.wait_for(attempt(), self.limits.timeout)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    error = exc
                finally:
                    counters.in_flight -= 1
            kind, retry_after = self._classify(error)
            counters.errors_by_kind[kind.value] = counters.errors_by_kind.get(kind.value, 0) + 1
            if kind is ErrorKind.RATE_LIMIT:
                counters.rate_limited += 1
            if not kind.retryable or tries > self.limits.max_retries:
                counters.failures += 1
                raise LLMRequestError(
                    f"{type(error).__name__}: {error}" + (
                        f" (gave up after {tries} attempts)" if kind.retryable else ""
                    ),
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
        return self.classify(error)

    def _backoff(self, tries: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.limits.backoff_max) + random.uniform(0, 0.1)
        delay = min(self.limits.backoff_max, self.limits.backoff_base * 2 ** (tries - 1))
        return random.uniform(delay / 2, delay)

    def record_tokens(self, input_tokens: int | None, output_tokens: int | None) -> None:
        self.counters.input_tokens += input_tokens or 0
        self.counters.output_tokens += output_tokens or 0


def monotonic() -> float:
    return time.monotonic()

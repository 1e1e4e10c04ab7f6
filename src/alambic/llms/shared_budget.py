"""One rate budget for every Ray worker that calls the same API.

A provider limits requests and tokens per minute for an organisation's key, not per process:
with N replicas of a task on N workers, each with its own scheduler, the provider would see
N times the configured ``rpm``. A distributed executor therefore keeps every
budget once, in one :class:`BudgetLedger` it hosts for the whole run (on Ray: an actor on the
driver's node), keyed by what the provider counts against (:func:`budget_key`: the client
class, base URL, model and a hash of the key, never the key).

A worker's scheduler asks the actor before each attempt (:class:`RemoteBudget`); the actor
books the request on the shared token buckets and answers how long to wait, so reservations
from every worker queue in one order, at one pace. A 429 on any worker slows the shared pace
(once per wave, as locally), successes bring it back, and limits learned from rate-limit
headers on one worker apply to all. One reservation costs one actor call (~1 ms on one
machine), which is small next to the requests it paces (a budget of 6,000 requests per
minute is one request every 10 ms).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass
from typing import Any

from alambic.llms.limits import REQUEST_PACE, TokenBucket


def budget_key(llm: Any) -> str:
    """What a provider counts a rate limit against: client class, base URL, model, key hash."""
    parts = [type(llm).__module__ + "." + type(llm).__qualname__]
    resolve_url = getattr(llm, "resolved_base_url", None)
    parts.append(str(resolve_url() if callable(resolve_url) else getattr(llm, "base_url", "")))
    parts.append(str(getattr(llm, "model_name", "")))
    key = ""
    resolve_key = getattr(llm, "resolved_api_key", None)
    if callable(resolve_key):
        try:
            key = str(resolve_key() or "")
        except Exception:  # no key configured: the key part stays empty
            key = ""
    parts.append(hashlib.sha256(key.encode()).hexdigest()[:16] if key else "")
    return "|".join(parts)


@dataclass
class BudgetState:
    """The shared buckets of one key (pure Python: tested without Ray)."""

    requests: TokenBucket | None = None
    tokens: TokenBucket | None = None
    requests_learned: bool = False
    tokens_learned: bool = False
    rate_limited: int = 0
    reservations: int = 0

    @classmethod
    def create(cls, rpm: float | None, tpm: float | None) -> BudgetState:
        return cls(
            requests=TokenBucket(rpm, pace=REQUEST_PACE) if rpm else None,
            tokens=TokenBucket(tpm) if tpm else None,
        )

    def reserve(self, tokens: int, now: float) -> float:
        self.reservations += 1
        wait = 0.0
        if self.requests is not None:
            wait = self.requests.reserve(1, now)
        if self.tokens is not None and tokens:
            wait = max(wait, self.tokens.reserve(tokens, now))
        return wait

    def slow_down(self, started_ago: float, now: float) -> None:
        self.rate_limited += 1
        if self.requests is not None:
            self.requests.slow_down(now - started_ago, now)

    def speed_up(self, successes: int) -> None:
        if self.requests is None:
            return
        for _ in range(successes):
            if self.requests.rate >= self.requests.ceiling:
                return
            self.requests.speed_up()

    def refund(self, tokens: int) -> None:
        if self.tokens is not None and tokens:
            self.tokens.refund(tokens)

    def learn(self, limit_requests: int | None, limit_tokens: int | None) -> None:
        if limit_requests:
            if self.requests is None:
                self.requests = TokenBucket(limit_requests, pace=REQUEST_PACE)
                self.requests_learned = True
            elif self.requests_learned and self.requests.per_minute != limit_requests:
                self.requests.set_rate(limit_requests)
        if limit_tokens:
            if self.tokens is None:
                self.tokens = TokenBucket(limit_tokens)
                self.tokens_learned = True
            elif self.tokens_learned and self.tokens.per_minute != limit_tokens:
                self.tokens.set_rate(limit_tokens)

    def snapshot(self) -> dict[str, Any]:
        return {
            "rpm": None if self.requests is None else round(self.requests.rate * 60, 1),
            "tpm": None if self.tokens is None else round(self.tokens.rate * 60, 1),
            "rate_limited": self.rate_limited,
            "reservations": self.reservations,
        }


class BudgetLedger:
    """Every key's :class:`BudgetState`; the body of the Ray actor."""

    def __init__(self) -> None:
        self._states: dict[str, BudgetState] = {}

    def register(self, key: str, rpm: float | None, tpm: float | None) -> None:
        """Create the key's buckets on first use (every replica registers the same limits)."""
        if key not in self._states:
            self._states[key] = BudgetState.create(rpm, tpm)

    def reserve(self, key: str, tokens: int) -> float:
        return self._states[key].reserve(tokens, time.monotonic())

    def slow_down(self, key: str, started_ago: float) -> None:
        self._states[key].slow_down(started_ago, time.monotonic())

    def speed_up(self, key: str, successes: int) -> None:
        self._states[key].speed_up(successes)

    def refund(self, key: str, tokens: int) -> None:
        self._states[key].refund(tokens)

    def learn(self, key: str, limit_requests: int | None, limit_tokens: int | None) -> None:
        self._states[key].learn(limit_requests, limit_tokens)

    def snapshot(self) -> dict[str, dict[str, Any]]:
        return {key: state.snapshot() for key, state in self._states.items()}

    def call(self, method: str, *args: Any) -> Any:
        """One entry point for a remote host to forward to (see :class:`RemoteBudget`)."""
        if method not in self.METHODS:
            raise ValueError(f"BudgetLedger has no method {method!r}: use one of {self.METHODS}")
        return getattr(self, method)(*args)

    METHODS = ("register", "reserve", "slow_down", "speed_up", "refund", "learn", "snapshot")


def remote_budget_for(llm: Any, ledger: Any) -> RemoteBudget:
    """The shared budget of an API client, on the executor's ledger host."""
    return RemoteBudget(
        ledger, budget_key(llm), rpm=getattr(llm, "rpm", None), tpm=getattr(llm, "tpm", None)
    )


class RemoteBudget:
    """A worker's handle on one key of the shared ledger, used by its request scheduler.

    ``ledger`` is the executor's host of the :class:`BudgetLedger`: anything with
    ``ledger.call.remote(method_name, *args)`` returning an awaitable (a Ray actor handle of a
    host that forwards ``call`` to the ledger's method).
    """

    SUCCESS_REPORT_EVERY = 25

    def __init__(self, ledger: Any, key: str, *, rpm: float | None, tpm: float | None) -> None:
        self._ledger = ledger
        self.key = key
        self._registered = ledger.call.remote("register", key, rpm, tpm)
        self._successes = 0

    async def acquire(self, tokens: int) -> float:
        """Book one request (and its estimated tokens); wait its turn. Returns the wait."""
        if self._registered is not None:
            await self._registered
            self._registered = None
        wait = float(await self._ledger.call.remote("reserve", self.key, tokens))
        if wait > 0:
            await asyncio.sleep(wait)
        return wait

    def rate_limited(self, started: float) -> None:
        self._ledger.call.remote("slow_down", self.key, max(0.0, time.monotonic() - started))

    def succeeded(self) -> None:
        self._successes += 1
        if self._successes >= self.SUCCESS_REPORT_EVERY:
            self._ledger.call.remote("speed_up", self.key, self._successes)
            self._successes = 0

    def refund(self, tokens: int) -> None:
        if tokens:
            self._ledger.call.remote("refund", self.key, tokens)

    def learn(self, limit_requests: int | None, limit_tokens: int | None) -> None:
        self._ledger.call.remote("learn", self.key, limit_requests, limit_tokens)


__all__ = ["BudgetLedger", "BudgetState", "RemoteBudget", "budget_key", "remote_budget_for"]

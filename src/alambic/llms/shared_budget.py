"""One rate budget for every Ray worker that calls the same API.

A provider limits requests and tokens per minute for an organisation's key, not per process:
with N replicas of a task on N workers, each with its own scheduler, the provider would see
N times the configured ``rpm``. A distributed executor therefore keeps every
budget once, in one :class:`BudgetLedger` it hosts for the whole run (on Ray: an actor on the
driver's node), keyed by what the provider counts against (:func:`budget_key`: the client
class, base URL, model and a hash of the key, never the key).

A worker's scheduler asks the actor before each attempt (:class:`RemoteBudget`); the actor
books the request on the shared token buckets and answers *when* it may leave, as a time on
the ledger's clock, so reservations from every worker queue in one order, at one pace. Each
worker measures once how its clock differs from the ledger's (the best of a few round trips)
and sleeps until that instant: the round trip's own jitter never moves a send time, which is
what keeps N workers together under a provider's strict 1 s window (a relative wait, applied
when the reply arrives, let the reply's delay bunch requests). A request that wakes well past
its instant (its worker's event loop was busy) books a new one instead of adding to the
requests of the workers that kept time. A worker also never sends two
requests much closer than the shared pace (:data:`SPACING_SHARE`): a stall of its event loop
releases the requests it held back one by one, not all at once. A 429 on any worker slows the
shared pace (once per wave, as locally), successes bring it back, and limits learned from
rate-limit headers on one worker apply to all. One reservation costs one actor call (~1 ms on one machine), which is small next
to the requests it paces (a budget of 6,000 requests per minute is one request every 10 ms).

The same ledger keeps a run's spending cap for a distributed run (``run(budget=...)``, see
:class:`~alambic.budget.SharedRunBudget`): one :class:`~alambic.budget.RunBudget`, with its journal, in the
ledger's process, so replicas together send exactly what the cap allows.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass
from typing import Any

from alambic.budget import BudgetExhausted, RunBudget, Spend
from alambic.llms.limits import REQUEST_PACE, TokenBucket

#: Round trips a worker makes to measure how its clock differs from the ledger's.
CLOCK_PINGS = 5
#: A request that wakes more than this (or one interval of the pace, if longer) after its
#: instant books a new one (at most :data:`REBOOKS` times): sent late, it would join the next
#: instants' requests in a window.
LATE_S = 0.02
REBOOKS = 3
#: Two requests of one worker are never closer than this share of the shared pace's gap:
#: requests a stall held back leave one by one, and a wake-up a little late is caught up.
SPACING_SHARE = 0.9


def machine_id() -> str | None:
    """This boot of this machine (Linux), or None where it cannot be told."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip() or None
    except OSError:
        return None


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


class SharedBucket(TokenBucket):
    """A token bucket kept for several workers: idle time refills only its small burst.

    A worker's own bucket lets requests that a stalled event loop held back catch up (its
    stall credit); the ledger has no such stall to make up for (a worker's stall is that
    worker's, and its requests' send times were already handed out), and the credit would
    release a burst after any pause in reservations (while first requests connect, or the
    driver is slow to send rows), straight into a strict window's limit."""

    __slots__ = ()

    def reserve(self, amount: float, now: float) -> float:
        wait = super().reserve(amount, now)
        self._queued = False  # never earns a stall credit
        return wait


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
        requests = SharedBucket(rpm, pace=REQUEST_PACE) if rpm else None
        if requests is not None:
            # empty at first: the first second then holds the pace, not the pace plus one
            # (one over a strict window's limit, with every worker starting at once)
            requests.level = 0.0
        return cls(requests=requests, tokens=SharedBucket(tpm) if tpm else None)

    def reserve(self, tokens: int, now: float) -> float:
        self.reservations += 1
        wait = 0.0
        if self.requests is not None:
            wait = self.requests.reserve(1, now)
        if self.tokens is not None and tokens:
            wait = max(wait, self.tokens.reserve(tokens, now))
        return wait

    @property
    def interval(self) -> float:
        """The shortest gap between two requests at the shared pace (0: no request limit)."""
        return 1.0 / self.requests.rate if self.requests is not None else 0.0

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
                self.requests = SharedBucket(limit_requests, pace=REQUEST_PACE)
                self.requests_learned = True
            elif self.requests_learned and self.requests.per_minute != limit_requests:
                self.requests.set_rate(limit_requests)
        if limit_tokens:
            if self.tokens is None:
                self.tokens = SharedBucket(limit_tokens)
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
        self.run_budget: RunBudget | None = None

    def register(self, key: str, rpm: float | None, tpm: float | None) -> None:
        """Create the key's buckets on first use (every replica registers the same limits)."""
        if key not in self._states:
            self._states[key] = BudgetState.create(rpm, tpm)

    def reserve(self, key: str, tokens: int) -> float:
        """Book one request; the seconds to wait from now (kept for in-process callers)."""
        return self._states[key].reserve(tokens, time.monotonic())

    def clock(self) -> tuple[float, str | None]:
        """The ledger's clock, which :meth:`reserve_at` answers in, and its machine's boot
        id (processes of one boot share one monotonic clock)."""
        return time.monotonic(), machine_id()

    def reserve_at(self, key: str, tokens: int) -> tuple[float, float] | None:
        """Book one request; when it may leave on the ledger's clock, and the shared pace's
        interval. ``None``: the key has no limit (yet), send at once."""
        state = self._states[key]
        if state.requests is None and state.tokens is None:
            state.reservations += 1
            return None
        now = time.monotonic()
        return now + state.reserve(tokens, now), state.interval

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

    # -- a run's spending cap (run(budget=...)), kept here for every worker -----------------

    def spend_reserve(self, key: tuple[str, str], worst: Spend, price: str) -> str | None:
        """Claim one request's worst case; the reason when the cap refuses it, else None.
        The journal is written before this returns, so before the request leaves."""
        assert self.run_budget is not None, "the ledger keeps no run budget"
        try:
            self.run_budget.reserve_worst(key, worst, price)
        except BudgetExhausted as exc:
            return str(exc)
        return None

    def spend_release(self, key: tuple[str, str], worst: Spend, sent: bool) -> None:
        assert self.run_budget is not None
        self.run_budget.release_worst(key, worst, sent=sent)

    def spend_settle(self, key: tuple[str, str], worst: Spend, used: Spend) -> None:
        assert self.run_budget is not None
        self.run_budget.settle_worst(key, worst, used)

    def spend_report(self) -> dict[str, Any] | None:
        """The run budget's report, exhaustion and accounts (after writing its journal)."""
        budget = self.run_budget
        if budget is None:
            return None
        budget.flush()
        return {
            "report": budget.report(),
            "exhausted": budget.exhausted,
            "accounts": sorted(budget.accounts),
        }

    def call(self, method: str, *args: Any) -> Any:
        """One entry point for a remote host to forward to (see :class:`RemoteBudget`)."""
        if method not in self.METHODS:
            raise ValueError(f"BudgetLedger has no method {method!r}: use one of {self.METHODS}")
        return getattr(self, method)(*args)

    METHODS = (
        "register",
        "reserve",
        "clock",
        "reserve_at",
        "slow_down",
        "speed_up",
        "refund",
        "learn",
        "snapshot",
        "spend_reserve",
        "spend_release",
        "spend_settle",
        "spend_report",
    )


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
        self._offset: float | None = None  # the ledger's clock minus this process's
        self._last_sent = 0.0  # when this worker's last request left (or will)
        self.rebooked = 0  # instants missed by more than LATE_S, booked again

    async def _measure_clock(self) -> float:
        """The ledger's clock minus ours: 0 on the same machine (one monotonic clock for
        every process of a kernel), else from the round trip that took least time (its error
        is at most half that round trip)."""
        best: tuple[float, float] | None = None
        for _ in range(CLOCK_PINGS):
            asked = time.monotonic()
            theirs, machine = await self._ledger.call.remote("clock")
            back = time.monotonic()
            if machine is not None and machine == machine_id():
                return 0.0
            if best is None or back - asked < best[0]:
                best = (back - asked, float(theirs) - (asked + back) / 2)
        assert best is not None
        return best[1]

    async def acquire(self, tokens: int) -> float:
        """Book one request (and its estimated tokens); wait its turn. Returns the wait."""
        if self._registered is not None:
            await self._registered
            self._registered = None
            self._offset = await self._measure_clock()
        asked = time.monotonic()
        for booking in range(REBOOKS + 1):
            answer = await self._ledger.call.remote("reserve_at", self.key, tokens)
            if answer is None:  # no limit known for this key
                return time.monotonic() - asked
            at, interval = answer
            assert self._offset is not None
            send = float(at) - self._offset  # the ledger's instant, on our clock
            wait = send - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if time.monotonic() - send <= max(LATE_S, interval) or booking == REBOOKS:
                break
            # woken well past its instant (this worker's event loop was busy): sending now
            # would add to the requests of the workers that kept time; book a new instant
            self.rebooked += 1
        # requests a stall held back (and still within LATE_S) leave one by one, at
        # (nearly) the shared pace, and a wake-up a little late is caught up
        now = time.monotonic()
        leave = max(now, self._last_sent + float(interval) * SPACING_SHARE)
        self._last_sent = leave  # taken before sleeping: the next request queues behind
        if leave > now:
            await asyncio.sleep(leave - now)
        return time.monotonic() - asked

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


__all__ = [
    "BudgetLedger",
    "BudgetState",
    "RemoteBudget",
    "budget_key",
    "remote_budget_for",
]

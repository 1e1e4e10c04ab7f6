"""The limits of the request scheduler: a token bucket for per-minute budgets
(:class:`TokenBucket`), a concurrency limit that shrinks under overload (:class:`AdaptiveLimit`)
and the spreading of a burst of starts over turns of the event loop (:class:`StartRamp`). See
:mod:`alambic.llms.scheduler` for how they are used."""

from __future__ import annotations

import asyncio
import time
from collections import deque

#: Share of a requests-per-minute budget the scheduler uses (see :class:`TokenBucket`).
REQUEST_PACE = 0.99
#: The longest stall of the event loop whose held-back requests a budget catches up (0.25 s
#: measured the same throughput on W6 with more 429s).
STALL_CREDIT_S = 0.1
#: After a 429 lowers a budget's pace, further 429s within this many seconds do not.
SETTLE_S = 1.0

#: Weight of each answer in the moving share of 429s (about the last 1 / weight answers).
PRESSURE_WEIGHT = 0.05
#: Share of 429s among recent answers that, with :data:`OVERLOAD_RUN`, means overload.
OVERLOAD_SHARE = 0.15
#: 429s in a row, with no success between them, that (with the share) mean overload.
OVERLOAD_RUN = 4
#: Requests that may start in one turn of the event loop (see :class:`StartRamp`): about
#: 20 ms of building requests and opening connections at W7's ~400 us a first request.
STARTS_PER_TURN = 48


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
    limit is cut only when both the share of 429s among recent answers (a moving average,
    ``pressure``) reaches :data:`OVERLOAD_SHARE` and the last :data:`OVERLOAD_RUN` answers were
    all 429s: an overloaded server rejects nearly everything, while 5% of scattered 429s give
    four in a row about once in 160,000 answers (10%: once in 10,000, and the limit is back
    at its maximum a few thousand answers later).
    """

    __slots__ = (
        "_last_decrease",
        "_rejected_in_a_row",
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
        self._rejected_in_a_row = 0
        self.pressure = 0.0

    async def acquire(self, first: bool = False) -> None:
        """Take a slot, waiting in line when none is free; ``first`` goes to the front of
        the line (a retry: its row already waited, and its batch waits on it)."""
        if self.in_flight < self.limit and not self._waiters:
            self.in_flight += 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if first:
            self._waiters.appendleft(waiter)
        else:
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
        self.pressure *= 1 - PRESSURE_WEIGHT
        self._rejected_in_a_row = 0
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
        self.pressure = self.pressure * (1 - PRESSURE_WEIGHT) + PRESSURE_WEIGHT
        self._rejected_in_a_row += 1
        if (
            self.pressure < OVERLOAD_SHARE
            or self._rejected_in_a_row < OVERLOAD_RUN
            or started < self._last_decrease
        ):
            return
        self._last_decrease = now
        self._successes = 0
        self.limit = max(1, self.limit // 2)


class StartRamp:
    """Lets at most ``per_turn`` requests start in one turn of the event loop; the rest of a
    burst waits in waves of ``per_turn``, one wave a turn, in the order they came.

    A burst (the requests held behind the first one, or the first rows of a run) otherwise
    runs in a single turn: every request is built and its connection opened before the loop
    gets to send any of them. At 2,000 in flight that is ~0.9 s of CPU during which the
    server sees none of them, and then answers that all come back at once. In waves, the
    first requests are out a few turns later and their answers come back while the rest are
    still being built. Outside bursts (each answer starting the next request) nothing waits.

    Each waiting request has a future of its own, so a cancelled one (Ctrl-C) leaves the
    others of its wave alone.
    """

    __slots__ = ("_ticking", "_waves", "deferred", "per_turn", "started_this_turn")

    def __init__(self, per_turn: int | None = None) -> None:
        self.per_turn = per_turn or STARTS_PER_TURN
        self.started_this_turn = 0
        self.deferred = 0
        """Requests that waited for a later turn (a burst's tail), since this ramp began."""
        self._waves: deque[list[asyncio.Future[None]]] = deque()
        self._ticking = False

    def admit(self) -> asyncio.Future[None] | None:
        """``None`` when the request may start now, else the future to await first."""
        if not self._waves and self.started_this_turn < self.per_turn:
            self.started_this_turn += 1
            if not self._ticking:
                self._tick_soon()
            return None
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.deferred += 1
        waves = self._waves
        if not waves or len(waves[-1]) >= self.per_turn:
            waves.append([])
        waves[-1].append(waiter)
        if not self._ticking:
            self._tick_soon()
        return waiter

    def _tick_soon(self) -> None:
        self._ticking = True
        asyncio.get_running_loop().call_soon(self._tick)

    def _tick(self) -> None:
        """A new turn: release the next wave (its requests run in the turn after this)."""
        self._ticking = False
        self.started_this_turn = 0
        if not self._waves:
            return
        for waiter in self._waves.popleft():
            if not waiter.done():
                waiter.set_result(None)
                self.started_this_turn += 1
        self._tick_soon()


__all__ = [
    "OVERLOAD_RUN",
    "OVERLOAD_SHARE",
    "PRESSURE_WEIGHT",
    "REQUEST_PACE",
    "SETTLE_S",
    "STALL_CREDIT_S",
    "STARTS_PER_TURN",
    "AdaptiveLimit",
    "StartRamp",
    "TokenBucket",
]

"""A run's spending cap, and what each step and model spent.

``pipeline.run(budget=5.0)`` caps a run at 5 USD; ``Budget(tokens=...)`` and
``Budget(requests=...)`` cap tokens (input + output) or requests sent. Before a request
leaves, the scheduler reserves its worst case (its prompt counted generously, its reply at
``max_new_tokens``); when the next request could pass the cap, nothing more is sent and the
run stops like a Ctrl-C: everything answered is committed, and a rerun with a higher budget
goes on from there. When a reply comes back, the reservation becomes its real usage.

Spending is journaled before each request leaves (in the run store's folder), so a run
started again counts what earlier runs of the same pipeline spent, including the worst
case of requests that were in flight when a run was killed.
"""

from __future__ import annotations

import contextvars
import logging
import threading
from collections.abc import Awaitable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol

from alambic.spending import (
    Budget,
    BudgetExhausted,
    RunStopping,
    Spend,
    amount_of,
    format_usd,
)

if TYPE_CHECKING:
    from alambic.llms.base import LLM
    from alambic.llms.pricing import Pricing

__all__ = [
    "Budget",
    "BudgetExhausted",
    "RunBudget",
    "RunStopping",
    "SharedRunBudget",
    "Spend",
    "Ticket",
    "current_budget",
    "current_step",
    "format_usd",
]

logger = logging.getLogger("alambic")

_BUDGET: contextvars.ContextVar[RunBudget | None] = contextvars.ContextVar(
    "alambic_budget", default=None
)
_STEP: contextvars.ContextVar[str] = contextvars.ContextVar("alambic_step", default="")


def current_budget() -> RunBudget | None:
    """The budget of the run this code executes in, if the run has one."""
    return _BUDGET.get()


def current_step() -> contextvars.ContextVar[str]:
    """The step an executor is running (set by the executor for each step's work)."""
    return _STEP


class Journal(Protocol):
    """Where spending survives the process (see ``alambic.pipeline.store.spend``)."""

    def load(self) -> dict[tuple[str, str], Spend]: ...

    def save(self, entries: dict[tuple[str, str], tuple[Spend, Spend]]) -> None: ...


@dataclass
class _Account:
    settled: Spend = field(default_factory=Spend)
    in_flight: Spend = field(default_factory=Spend)
    llm: Any = None
    price: str = ""  # the pricing's description, where the LLM is in another process


class Ticket:
    """One request's claim on the budget: reserved before each attempt, then settled."""

    __slots__ = ("_budget", "_held", "batch", "key", "pricing", "worst")

    def __init__(
        self,
        budget: RunBudget,
        key: tuple[str, str],
        pricing: Pricing | None,
        worst: Spend,
        batch: bool = False,
    ) -> None:
        self._budget = budget
        self.key = key
        self.pricing = pricing
        self.worst = worst
        self.batch = batch
        self._held = False

    @property
    def stopping(self) -> str | None:
        """Why the run is stopping (its budget was halted: a first Ctrl-C), or None."""
        return self._budget.halted

    @property
    def remote(self) -> bool:
        """Whether the budget is kept in another process (claimed with :meth:`areserve`)."""
        return self._budget.remote

    def reserve(self) -> None:
        """Claim the worst case before an attempt; raises :class:`BudgetExhausted`."""
        self._budget._reserve(self)
        self._held = True

    async def areserve(self) -> None:
        """:meth:`reserve` for a budget kept in another process (one round trip)."""
        await self._budget._areserve(self)
        self._held = True

    def release(self, *, sent: bool) -> None:
        """An attempt failed: drop the claim (a sent request still counts as a request)."""
        if self._held:
            self._held = False
            self._budget._release(self, sent=sent)

    def settle(
        self, input_tokens: int | None, output_tokens: int | None, cached_tokens: int | None = None
    ) -> None:
        """The reply came back: the claim becomes its real usage (``cached_tokens``: the part
        of the input the provider served from its prompt cache)."""
        if self._held:
            self._held = False
            self._budget._settle(self, input_tokens, output_tokens, cached_tokens or 0)


class CountingTicket(Ticket):
    """A ticket of a run without a cap: nothing is reserved, the reply's usage is counted.

    It is on every request's path, so it does the least: no worst case is computed unless
    the reply reports no usage, and nothing is held in flight (only a stop is checked).
    """

    __slots__ = ("_max_out", "_messages")

    def __init__(
        self, budget: RunBudget, key: tuple[str, str], messages: Any, max_out: int
    ) -> None:
        self._budget = budget
        self.key = key
        self.pricing = None
        self.batch = False
        self._messages = messages
        self._max_out = max_out
        self._held = False

    @property
    def worst(self) -> Spend:  # type: ignore[override]
        return Spend(1, _prompt_bytes(self._messages), self._max_out)

    def reserve(self) -> None:
        budget = self._budget
        if budget.halted is not None:
            raise RunStopping(budget.halted)
        if budget.exhausted is not None:
            raise BudgetExhausted(budget.exhausted)
        self._held = True

    def release(self, *, sent: bool) -> None:
        if self._held:
            self._held = False
            if sent:
                with self._budget._lock:
                    self._budget.accounts[self.key].settled.requests += 1

    def settle(
        self, input_tokens: int | None, output_tokens: int | None, cached_tokens: int | None = None
    ) -> None:
        if not self._held:
            return
        self._held = False
        if input_tokens is None:
            input_tokens = _prompt_bytes(self._messages)
        if output_tokens is None:
            output_tokens = self._max_out
        with self._budget._lock:
            settled = self._budget.accounts[self.key].settled
            settled.requests += 1
            settled.input_tokens += input_tokens
            settled.output_tokens += output_tokens
            if cached_tokens:
                settled.cached_tokens += cached_tokens


class RunBudget:
    """The budget of one run, shared by every LLM in it (thread-safe)."""

    remote = False
    """Kept in another process (a distributed run: see ``alambic.llms.shared_budget``)."""

    def __init__(self, limit: Budget | None, journal: Journal | None = None) -> None:
        self.limit = limit or Budget()
        self.journal = journal
        self.earlier = Spend()
        self.accounts: dict[tuple[str, str], _Account] = {}
        self.exhausted: str | None = None
        self.halted: str | None = None
        self._pricing: dict[int, Pricing] = {}
        self._dirty: set[tuple[str, str]] = set()
        self._lock = threading.Lock()
        if journal is not None:
            for spend in journal.load().values():
                self.earlier.add(spend)

    def halt(self, reason: str) -> None:
        """Refuse every request from now on (the executor calls this on a first Ctrl-C): a
        request waiting for a free slot or retrying after a backoff is not sent."""
        if self.halted is None:
            self.halted = reason

    @property
    def capped(self) -> bool:
        """Whether a cap is set (otherwise spending is only counted, for the summary)."""
        limit = self.limit
        return limit.usd is not None or limit.tokens is not None or limit.requests is not None

    # -- entering and leaving a run --------------------------------------------------------

    def activate(self) -> contextvars.Token[RunBudget | None]:
        return _BUDGET.set(self)

    @staticmethod
    def deactivate(token: contextvars.Token[RunBudget | None]) -> None:
        _BUDGET.reset(token)

    # -- tickets ---------------------------------------------------------------------------

    def ticket(self, llm: LLM, messages: Any, n: int, max_tokens: Any) -> Ticket:
        """The worst case of one request: prompt bytes (a byte-level tokenizer never makes
        more tokens than bytes) and ``max_tokens`` per reply."""
        key = (_STEP.get() or "?", llm.model_name)
        if key not in self.accounts:
            with self._lock:
                self.accounts.setdefault(key, _Account(llm=llm))
        if max_tokens is None and (self.limit.usd is not None or self.limit.tokens is not None):
            raise BudgetExhausted(
                f"{type(llm).__name__}(model={llm.model_name!r}) in step {key[0]!r} has no "
                "max_new_tokens, so the worst case of its replies is unbounded and a USD or "
                "token budget cannot be kept: set generation_kwargs={'max_new_tokens': ...}."
            )
        batch = bool(getattr(llm, "use_batch_api", False))
        if not self.capped:  # only counted: priced once, at the end (off the hot path)
            return CountingTicket(self, key, messages, n * int(max_tokens or 0))
        input_tokens = _prompt_bytes(messages)
        output_tokens = n * int(max_tokens or 0)
        pricing = self._pricing_of(llm)
        usd = pricing.cost(input_tokens, output_tokens, batch=batch)
        return Ticket(self, key, pricing, Spend(1, input_tokens, output_tokens, usd), batch)

    def _pricing_of(self, llm: LLM) -> Pricing:
        from alambic.llms.pricing import pricing_for

        pricing = self._pricing.get(id(llm))
        if pricing is None:
            pricing = self._pricing[id(llm)] = pricing_for(llm)
        return pricing

    def _reserve(self, ticket: Ticket) -> None:
        price = ticket.pricing.describe() if ticket.pricing is not None else ""
        self.reserve_worst(ticket.key, ticket.worst, price)

    def _areserve(self, ticket: Ticket) -> Awaitable[None]:
        self._reserve(ticket)
        return _done()

    def reserve_worst(self, key: tuple[str, str], worst: Spend, price: str = "") -> None:
        """Claim ``worst`` for a request of ``key`` (step, model); raises
        :class:`BudgetExhausted`. ``price`` describes the model's pricing, for the error
        when it has no price and the cap is in USD."""
        with self._lock:
            if self.halted is not None:
                raise RunStopping(self.halted)
            if self.exhausted is not None:
                raise BudgetExhausted(self.exhausted)
            if worst.usd is None and self.limit.usd is not None:
                self.exhausted = (
                    f"step {key[0]!r} ({key[1]}) has an {price}"
                    f"; a USD budget cannot be kept without it"
                )
                raise BudgetExhausted(self.exhausted)
            total = self.total()
            total.add(worst)
            over = self._over(total)
            if over:
                self.exhausted = (
                    f"budget {self.limit.describe()} reached: the next request could bring "
                    f"the {over} to {amount_of(total, over)}"
                )
                raise BudgetExhausted(self.exhausted)
            account = self.accounts.get(key)
            if account is None:
                account = self.accounts[key] = _Account(price=price)
            account.in_flight.add(worst)
            if self.journal is not None:
                self._dirty.add(key)
                self._flush_locked()  # durable before the request leaves

    def _release(self, ticket: Ticket, *, sent: bool) -> None:
        self.release_worst(ticket.key, ticket.worst, sent=sent)

    def release_worst(self, key: tuple[str, str], worst: Spend, *, sent: bool) -> None:
        with self._lock:
            account = self.accounts[key]
            account.in_flight.add(worst, -1)
            if sent:
                account.settled.requests += 1
            if self.journal is not None:
                self._dirty.add(key)

    def _settle(
        self, ticket: Ticket, input_tokens: int | None, output_tokens: int | None, cached: int
    ) -> None:
        used = self.usage(ticket, input_tokens, output_tokens, cached)
        self.settle_worst(ticket.key, ticket.worst, used)

    @staticmethod
    def usage(
        ticket: Ticket, input_tokens: int | None, output_tokens: int | None, cached: int = 0
    ) -> Spend:
        """What a settled request really cost (its worst case where the reply says nothing)."""
        worst = ticket.worst
        used_in = worst.input_tokens if input_tokens is None else input_tokens
        used_out = worst.output_tokens if output_tokens is None else output_tokens
        usd = (
            Decimal(0)
            if ticket.pricing is None
            else ticket.pricing.cost(used_in, used_out, cached_tokens=cached, batch=ticket.batch)
        )
        return Spend(1, used_in, used_out, usd, cached)

    def settle_worst(self, key: tuple[str, str], worst: Spend, used: Spend) -> None:
        with self._lock:
            account = self.accounts[key]
            account.in_flight.add(worst, -1)
            account.settled.add(used)
            if self.journal is not None:
                self._dirty.add(key)

    # -- totals ----------------------------------------------------------------------------

    def _over(self, total: Spend) -> str | None:
        limit = self.limit
        if limit.requests is not None and total.requests > limit.requests:
            return "requests"
        if limit.tokens is not None and total.tokens > limit.tokens:
            return "tokens"
        if limit.usd is not None and total.usd is not None and total.usd > Decimal(str(limit.usd)):
            return "usd"
        return None

    def spent(self) -> Spend:
        """Settled spending of this run (requests in flight not included)."""
        total = Spend()
        for account in self.accounts.values():
            total.add(account.settled)
        return total

    def total(self) -> Spend:
        """Everything counted against the budget: earlier runs, this run, in flight."""
        total = Spend()
        total.add(self.earlier)
        for account in self.accounts.values():
            total.add(account.settled)
            total.add(account.in_flight)
        return total

    def flush(self) -> None:
        with self._lock:
            self._flush_locked()

    def _flush_locked(self) -> None:
        if self.journal is None or not self._dirty:
            self._dirty.clear()
            return
        entries = {
            key: (self.accounts[key].settled, self.accounts[key].in_flight) for key in self._dirty
        }
        self.journal.save(entries)
        self._dirty.clear()

    def report(self) -> dict[str, Any]:
        """What the run summary, the progress display and the dataset card show."""
        with self._lock:
            total = self.total()
            remaining: dict[str, Any] = {}
            if self.limit.usd is not None and total.usd is not None:
                remaining["usd"] = max(0.0, self.limit.usd - float(total.usd))
            if self.limit.tokens is not None:
                remaining["tokens"] = max(0, self.limit.tokens - total.tokens)
            if self.limit.requests is not None:
                remaining["requests"] = max(0, self.limit.requests - total.requests)
            accounts = [
                {"step": step, "model": model, **self._priced(account)}
                for (step, model), account in sorted(self.accounts.items())
            ]
            by_step = {
                f"{a['step']} ({a['model']})": {
                    k: v for k, v in a.items() if k not in ("step", "model")
                }
                for a in accounts
            }
            this_run = self.spent().to_dict()
            if not self.capped:  # priced at the end: the sum of the accounts' prices
                usds = [entry["usd"] for entry in by_step.values()]
                this_run["usd"] = None if None in usds else sum(usds)
                total = self.spent()
                total.usd = None if this_run["usd"] is None else Decimal(str(this_run["usd"]))
            return {
                "limit": self.limit.model_dump(exclude_none=True),
                "earlier_runs": self.earlier.to_dict(),
                "this_run": this_run,
                "total": total.to_dict(),
                "remaining": remaining,
                "stopped": self.exhausted,
                "by_step": by_step,
                "accounts": accounts,
            }

    def live(self) -> list[tuple[str, str, Spend]]:
        """What each (step, model) has spent so far, priced (the live progress display).
        Requests in flight are not included; ``usd`` is ``None`` where a price is unknown."""
        with self._lock:
            items = [
                (key, Spend(**vars(account.settled)), account.llm)
                for key, account in sorted(self.accounts.items())
            ]
        out = []
        for (step, model), spend, llm in items:
            if not self.capped and llm is not None:  # counted only: price the totals now
                try:
                    pricing = self._pricing_of(llm)
                except ValueError:  # a half-set price: the run's report says so at the end
                    spend.usd = None
                else:
                    spend.usd = pricing.cost(
                        spend.input_tokens,
                        spend.output_tokens,
                        cached_tokens=spend.cached_tokens,
                        batch=bool(getattr(llm, "use_batch_api", False)),
                    )
            out.append((step, model, spend))
        return out

    def _priced(self, account: _Account) -> dict[str, Any]:
        out = account.settled.to_dict()
        if account.llm is None:
            if account.price:
                out["price"] = account.price
            return out
        pricing = self._pricing_of(account.llm)
        if not self.capped:  # counted only: price the totals now
            settled = account.settled
            usd = pricing.cost(
                settled.input_tokens,
                settled.output_tokens,
                cached_tokens=settled.cached_tokens,
                batch=bool(getattr(account.llm, "use_batch_api", False)),
            )
            out["usd"] = None if usd is None else float(usd)
        out["price"] = pricing.describe()
        return out


class SharedRunBudget(RunBudget):
    """A worker's side of a run budget kept by the ledger (a distributed run's
    ``run(budget=...)``): tickets are priced here, and each claim, release and settlement
    goes to the one :class:`RunBudget` in the ledger's process
    (``alambic.llms.shared_budget``), which journals it. A claim is one round trip, made
    before the request's pacing wait (see :class:`~alambic.llms.scheduler.RequestScheduler`);
    releases and settlements are sent
    without waiting (an actor runs one caller's calls in order)."""

    remote = True

    def __init__(self, limit: Any, ledger: Any) -> None:
        super().__init__(limit)
        self._ledger = ledger

    async def _areserve(self, ticket: Ticket) -> None:
        if self.exhausted is None:  # once refused, every later claim is refused here
            price = ticket.pricing.describe() if ticket.pricing is not None else ""
            reason = await self._ledger.call.remote(
                "spend_reserve", ticket.key, ticket.worst, price
            )
            if reason is None:
                return
            self.exhausted = reason
        raise BudgetExhausted(self.exhausted)

    def _reserve(self, ticket: Ticket) -> None:
        raise RuntimeError("a shared run budget is claimed with Ticket.areserve (one round trip)")

    def _release(self, ticket: Ticket, *, sent: bool) -> None:
        self._ledger.call.remote("spend_release", ticket.key, ticket.worst, sent)

    def _settle(
        self, ticket: Ticket, input_tokens: int | None, output_tokens: int | None, cached: int
    ) -> None:
        used = self.usage(ticket, input_tokens, output_tokens, cached)
        self._ledger.call.remote("spend_settle", ticket.key, ticket.worst, used)


async def _done() -> None:
    return None


def _prompt_bytes(messages: Any) -> int:
    if isinstance(messages, str):
        return len(messages.encode()) + 8
    total = 8
    for message in messages or ():
        content = message.get("content") if isinstance(message, dict) else message
        text = content if isinstance(content, str) else str(content)
        total += len(text.encode()) + 8
    return total

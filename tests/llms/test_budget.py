"""RunBudget: worst case reserved before a request, settled to real usage, journaled."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from alambic.budget import Budget, BudgetExhausted, RunBudget, current_step
from alambic.llms import OpenAILLM
from alambic.pipeline.store.spend import SpendJournal


def _llm(**kwargs: object) -> OpenAILLM:
    return OpenAILLM(
        model="m",
        base_url="http://127.0.0.1:9/v1",
        price_per_million_input=1,
        price_per_million_output=2,
        **kwargs,  # type: ignore[arg-type]
    )


MESSAGES = [{"role": "user", "content": "x" * 92}]  # 92 bytes + 8 + 8 framing = 108


def test_budget_of_accepts_usd_dicts_and_budgets() -> None:
    assert Budget.of(2.5) == Budget(usd=2.5)
    assert Budget.of({"requests": 3}) == Budget(requests=3)
    with pytest.raises(ValueError, match="not a budget"):
        Budget.of("lots")  # type: ignore[arg-type]


def test_requests_budget_allows_exactly_k() -> None:
    budget = RunBudget(Budget(requests=3))
    llm = _llm()
    for _ in range(3):
        ticket = budget.ticket(llm, MESSAGES, 1, 10)
        ticket.reserve()
        ticket.settle(5, 7)
    with pytest.raises(BudgetExhausted, match="3 requests reached"):
        budget.ticket(llm, MESSAGES, 1, 10).reserve()
    report = budget.report()
    assert report["this_run"] == {
        "requests": 3,
        "input_tokens": 15,
        "output_tokens": 21,
        "usd": pytest.approx((15 * 1 + 21 * 2) / 1e6),
    }
    assert report["remaining"] == {"requests": 0}
    assert "requests" in report["stopped"]


def test_usd_budget_reserves_the_worst_case_then_settles() -> None:
    llm = _llm()
    worst = Decimal(108 * 1 + 100 * 2) / 1_000_000  # prompt bytes + max_tokens
    budget = RunBudget(Budget(usd=float(worst * 2)))
    first = budget.ticket(llm, MESSAGES, 1, 100)
    assert first.worst.usd == worst
    first.reserve()
    second = budget.ticket(llm, MESSAGES, 1, 100)
    second.reserve()  # exactly at the cap: allowed
    with pytest.raises(BudgetExhausted):
        budget.ticket(llm, MESSAGES, 1, 100).reserve()
    first.settle(10, 10)
    assert budget.spent().usd == Decimal(10 + 20) / 1_000_000
    second.release(sent=True)  # a failed attempt: the request counts, its tokens do not
    assert budget.spent().requests == 2


def test_usd_budget_needs_a_price_and_max_tokens() -> None:
    unpriced = OpenAILLM(model="m", base_url="http://127.0.0.1:9/v1")
    budget = RunBudget(Budget(usd=1))
    with pytest.raises(BudgetExhausted, match="unknown price"):
        budget.ticket(unpriced, MESSAGES, 1, 10).reserve()
    with pytest.raises(BudgetExhausted, match="max_new_tokens"):
        RunBudget(Budget(tokens=100)).ticket(_llm(), MESSAGES, 1, None)


def test_journal_carries_spend_to_the_next_run(tmp_path: Path) -> None:
    llm = _llm()
    token = current_step().set("gen")
    try:
        journal = SpendJournal(tmp_path)
        budget = RunBudget(Budget(requests=5), journal)
        done = budget.ticket(llm, MESSAGES, 1, 10)
        done.reserve()
        done.settle(4, 6)
        killed = budget.ticket(llm, MESSAGES, 1, 10)
        killed.reserve()  # journaled before it leaves; the process dies here
        journal.close()

        again = RunBudget(Budget(requests=5), SpendJournal(tmp_path))
        assert again.earlier.requests == 2  # the one in flight counts at its worst case
        assert again.earlier.input_tokens == 4 + 108
        assert again.earlier.output_tokens == 6 + 10
        for _ in range(3):
            t = again.ticket(llm, MESSAGES, 1, 10)
            t.reserve()
            t.settle(1, 1)
        with pytest.raises(BudgetExhausted):
            again.ticket(llm, MESSAGES, 1, 10).reserve()
        again.flush()
        third = RunBudget(None, SpendJournal(tmp_path))
        assert third.earlier.requests == 5
        assert RunBudget(None, SpendJournal(tmp_path, fresh=True)).earlier.requests == 0
    finally:
        current_step().reset(token)
    assert budget.report()["by_step"]["gen (m)"]["requests"] == 1


def test_a_run_without_a_cap_counts_usage_and_prices_it_at_the_end() -> None:
    """No cap: tickets reserve nothing, replies are counted (the worst case stands in for a
    reply without usage), the report prices the totals, and a stop still stops sending."""
    budget = RunBudget(None)
    llm = _llm()
    current_step().set("gen")
    answered = budget.ticket(llm, MESSAGES, 1, 10)
    answered.reserve()
    answered.settle(5, 7)
    no_usage = budget.ticket(llm, MESSAGES, 1, 10)
    no_usage.reserve()
    no_usage.settle(None, None)  # counted as its worst case: 108 prompt bytes, 10 tokens
    failed = budget.ticket(llm, MESSAGES, 1, 10)
    failed.reserve()
    failed.release(sent=True)  # a sent request that failed counts as a request only
    report = budget.report()
    assert report["this_run"] == {
        "requests": 3,
        "input_tokens": 5 + 108,
        "output_tokens": 7 + 10,
        "usd": pytest.approx(((5 + 108) * 1 + (7 + 10) * 2) / 1e6),
    }
    assert report["by_step"]["gen (m)"]["requests"] == 3
    budget.exhausted = "interrupted"
    with pytest.raises(BudgetExhausted, match="interrupted"):
        budget.ticket(llm, MESSAGES, 1, 10).reserve()


def test_a_halted_run_refuses_every_request_capped_or_not() -> None:
    """A first Ctrl-C halts the run's budget: requests waiting for a slot or a retry are
    refused (RunStopping, which the executor treats as 'left for the next run')."""
    from alambic.budget import RunStopping

    for limit in (None, Budget(requests=100)):
        budget = RunBudget(limit)
        llm = _llm()
        budget.ticket(llm, MESSAGES, 1, 10).reserve()
        budget.halt("interrupted (Ctrl-C)")
        budget.halt("something later")  # the first reason stays
        with pytest.raises(RunStopping, match=r"interrupted \(Ctrl-C\)"):
            budget.ticket(llm, MESSAGES, 1, 10).reserve()
        assert budget.exhausted is None  # not a spent budget: a rerun needs no higher cap

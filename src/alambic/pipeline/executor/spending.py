"""A run's spending: its budget (``run(budget=...)``) and what each step and model spent.

The executor opens a :class:`~alambic.budget.RunBudget` for every run (without a cap it
only counts), makes it current while the loop runs, names the step each worker serves (so
spending is per step and model), and reports it in the summary and the Distiset's card.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from alambic.budget import Budget, RunBudget

if TYPE_CHECKING:
    from alambic.pipeline.base import Pipeline
    from alambic.pipeline.store import RunStore

logger = logging.getLogger("alambic")


def open_budget(limit: Any, store: RunStore | None, *, use_cache: bool) -> RunBudget:
    """The run's budget; with a cap and a run store, its journal beside the store
    (``use_cache=False`` forgets what earlier runs spent)."""
    if limit is None:  # spending is still counted, for the summary
        return RunBudget(None)
    from alambic.pipeline.store.spend import SpendJournal

    journal = SpendJournal(store.run_dir, fresh=not use_cache) if store is not None else None
    return RunBudget(Budget.of(limit), journal)


def report_budget(pipeline: Pipeline, budget: RunBudget) -> list[dict[str, Any]]:
    """Put the spending in ``pipeline.last_summary`` (``spend``, and ``budget`` with a cap)
    and say, when the cap stopped the run, what was spent and what remains. Returns what
    each (step, model) spent in this run, for the run store (``alambic runs``)."""
    budget.flush()
    if not budget.accounts:
        return []
    report = budget.report()
    accounts: list[dict[str, Any]] = report["accounts"]
    if pipeline.last_summary is not None:
        pipeline.last_summary["spend"] = report["by_step"]
        if budget.capped:
            pipeline.last_summary["budget"] = report
    if not budget.capped:
        return accounts
    spent, remaining = report["total"], report["remaining"]
    if budget.exhausted is not None:
        logger.warning(
            "Budget: %s. Spent %s (this run: %s); remaining %s. Run again with a higher budget "
            "to go on: what was answered is reused, not paid again.",
            budget.exhausted,
            spent,
            report["this_run"],
            remaining,
        )
    else:
        logger.info("Budget %s: spent %s; remaining %s.", budget.limit.describe(), spent, remaining)
    return accounts


__all__ = ["open_budget", "report_budget"]

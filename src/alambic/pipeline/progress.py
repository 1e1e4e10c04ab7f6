"""Progress of a run: a live table on a terminal, plain lines elsewhere, and a summary.

Per step: rows received and produced, rows/s, failures; per API LLM: requests in flight,
retries, rate-limited answers (from its request scheduler's counters); per step and per
model: tokens in / out / cached and what they cost (from the run's budget, which counts every
request's usage; ``unknown`` where a price is, never 0).

Piped (stderr is not a terminal: a file, a CI log): one plain line every
``ALAMBIC_PROGRESS_INTERVAL`` seconds (default 5) on stderr, and the run summary at the end,
always, so a log shows how far a run got and how it ended.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from alambic import settings
from alambic.budget import Spend, format_usd

if TYPE_CHECKING:
    from alambic.budget import RunBudget

logger = logging.getLogger("alambic")


@dataclass
class StepProgress:
    name: str
    llm: Any = None
    rows_in: int = 0
    rows_out: int = 0
    failures: int = 0
    finished: bool = False
    started: float = field(default_factory=time.monotonic)
    ended: float | None = None
    #: the step's task replicas, whose failed generations count as failed rows
    tasks: list[Any] = field(default_factory=list)
    #: rows the step's workers finished, emitted or not (set by an executor whose workers
    #: report while a batch is in flight, such as Ray's actors); None: not reported
    computed: int | None = None
    _baseline: int = 0

    def __post_init__(self) -> None:
        self._baseline = self._task_failures()

    def _task_failures(self) -> int:
        return sum(int(getattr(task, "failures", 0)) for task in self.tasks)

    @property
    def failed(self) -> int:
        """Rows that failed in this run: whole batches the step raised on, plus a task's failed
        generations (each its own row, or one entry of a row with ``group_generations``)."""
        return self.failures + self._task_failures() - self._baseline

    def rate(self, now: float) -> float:
        elapsed = (self.ended or now) - self.started
        return self.rows_out / elapsed if elapsed > 0 else 0.0

    def batch_jobs(self) -> dict[str, Any] | None:
        """The LLM's batch jobs (submitted, in progress, done, requests answered, seconds
        waited) when it sends batch jobs; None otherwise."""
        progress = getattr(self.llm, "last_batch_progress", None)
        return progress() if callable(progress) else None

    def llm_counters(self) -> dict[str, Any]:
        if self.llm is None:
            return {}
        counters: dict[str, Any] = self.llm.scheduler.counters.snapshot()
        return counters


class ProgressReporter:
    """Shows progress while a run goes; call ``start``/``stop`` around it."""

    def __init__(
        self,
        pipeline_name: str,
        *,
        show: bool | None = None,
        interval: float = 0.25,
        budget: RunBudget | None = None,
    ) -> None:
        self.pipeline_name = pipeline_name
        self.budget = budget
        self.steps: list[StepProgress] = []
        self.interactive = sys.stderr.isatty() if show is None else show
        self.quiet = show is False
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._live: Any = None
        self.started = time.monotonic()
        # read here, so a bad value fails before the run starts rather than in the thread
        self._piped_interval = settings.progress_interval() if not self.quiet else 0.0

    def add_step(self, name: str, llm: Any, tasks: list[Any] | None = None) -> StepProgress:
        progress = StepProgress(name=name, llm=llm, tasks=list(tasks or []))
        self.steps.append(progress)
        return progress

    def start(self) -> None:
        self.started = time.monotonic()
        for step in self.steps:
            step.started = self.started
        if self.quiet:
            return
        if self.interactive:
            from rich.console import Console
            from rich.live import Live

            # on stderr, as the piped lines are (and as the terminal check looks at): a
            # script's stdout, redirected to a file, gets none of the display's frames
            self._live = Live(
                self._table(),
                console=Console(stderr=True),
                refresh_per_second=4,
                transient=False,
                redirect_stderr=False,
            )
            self._live.start()
        self._thread = threading.Thread(target=self._loop, name="alambic-progress", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        period = self.interval if self.interactive else self._piped_interval
        while not self._stop.wait(period):
            if self._live is not None:
                self._live.update(self._table())
            else:
                _emit(self._line())

    def stop(self) -> None:
        now = time.monotonic()
        for step in self.steps:
            step.ended = step.ended or now
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        if self._live is not None:
            self._live.update(self._table())
            self._live.stop()
        elif not self.quiet:
            _emit(self._line())
            _emit(self.summary_text())

    def summary_text(self) -> str:
        """The run summary as plain lines (what a piped run prints at the end)."""
        data = self.summary()
        failed = sum(s["failed_rows"] for s in data["steps"].values())
        lines = [
            f"[{self.pipeline_name}] run summary: {data['elapsed_s']:.1f} s, {failed} failed row(s)"
        ]
        for name, s in data["steps"].items():
            text = (
                f"  {name}: {s['rows_in']} rows in, {s['rows_out']} out "
                f"({s['rows_per_s']}/s), {s['failed_rows']} failed"
            )
            llm = s.get("llm")
            if llm:
                text += (
                    f"; {llm.get('requests', 0)} requests, {llm.get('retries', 0)} retries, "
                    f"{llm.get('rate_limited', 0)} rate-limited, tokens "
                    f"{llm.get('input_tokens', 0)} in / {llm.get('output_tokens', 0)} out"
                )
            spend = s.get("spend")
            if spend:
                text += f"; {_tokens(spend)} tokens in/out/cached, cost {format_usd(spend['usd'])}"
            if s.get("batch_jobs"):
                text += f"; {_batch_jobs(s['batch_jobs'])}"
            lines.append(text)
        models = data.get("spend_by_model") or {}
        for model, spend in models.items():
            lines.append(
                f"  model {model}: {spend['requests']} requests, {_tokens(spend)} tokens "
                f"in/out/cached, cost {format_usd(spend['usd'])}"
            )
        if models:
            lines.append(f"  total cost: {format_usd(data['cost_usd'])}")
        return "\n".join(lines)

    def spending(self) -> tuple[dict[str, Spend], dict[str, Spend]]:
        """What each step and each model spent so far, priced (``usd`` None: unknown)."""
        by_step: dict[str, Spend] = {}
        by_model: dict[str, Spend] = {}
        if self.budget is None:
            return by_step, by_model
        for step, model, spend in self.budget.live():
            by_step.setdefault(step, Spend()).add(spend)
            by_model.setdefault(model, Spend()).add(spend)
        return by_step, by_model

    def _line(self) -> str:
        now = time.monotonic()
        by_step, by_model = self.spending()
        parts = []
        for s in self.steps:
            text = f"{s.name}: {s.rows_out} rows ({s.rate(now):.0f}/s)"
            if s.computed is not None:
                text += f", {s.computed} computed"
            if failed := s.failed:
                text += f", {failed} failed"
            counters = s.llm_counters()
            if counters:
                text += f", {counters['in_flight']} in flight, {counters['retries']} retries"
            spend = by_step.get(s.name)
            if spend is not None:
                text += f", tokens {_tokens(spend.to_dict())}, {format_usd(spend.usd)}"
            jobs = s.batch_jobs()
            if jobs:
                text += f", {_batch_jobs(jobs)}"
            parts.append(text)
        for model, spend in by_model.items():
            parts.append(
                f"model {model}: {spend.requests} requests, tokens {_tokens(spend.to_dict())}, "
                f"{format_usd(spend.usd)}"
            )
        elapsed = now - self.started
        return f"[{self.pipeline_name}] {elapsed:.0f}s " + " | ".join(parts)

    def _table(self) -> Any:
        from rich.table import Table

        now = time.monotonic()
        table = Table(title=f"alambic · {self.pipeline_name} · {now - self.started:.1f}s")
        for column in (
            "step",
            "rows in",
            "rows out",
            "rows/s",
            "in flight/limit",
            "requests",
            "retries",
            "429s",
            "failed",
            "tokens in/out/cached",
            "cost",
        ):
            table.add_column(column, justify="right" if column != "step" else "left")
        by_step, by_model = self.spending()
        for s in self.steps:
            c = s.llm_counters()
            spend = by_step.get(s.name)
            table.add_row(
                s.name + (" ✓" if s.finished else ""),
                str(s.rows_in),
                str(s.rows_out) if s.computed is None else f"{s.rows_out} ({s.computed} done)",
                f"{s.rate(now):.0f}",
                _in_flight(c),
                str(c.get("requests", "")),
                str(c.get("retries", "")),
                str(c.get("rate_limited", "")),
                str(s.failed),
                _tokens(spend.to_dict()) if spend is not None else "",
                format_usd(spend.usd) if spend is not None else "",
            )
        for model, spend in by_model.items():  # per model, under the steps
            table.add_row(
                f"model {model}",
                *[""] * 4,
                str(spend.requests),
                *[""] * 3,
                _tokens(spend.to_dict()),
                format_usd(spend.usd),
                style="dim",
            )
        jobs = [(s.name, s.batch_jobs()) for s in self.steps]
        lines = [f"{name}: {_batch_jobs(j)}" for name, j in jobs if j]
        if lines:  # under the table: a job's life is not a row's
            table.caption = "\n".join(lines)
        return table

    def summary(self) -> dict[str, Any]:
        now = time.monotonic()
        by_step, by_model = self.spending()
        summary: dict[str, Any] = {
            "pipeline": self.pipeline_name,
            "elapsed_s": round(now - self.started, 3),
            "steps": {
                s.name: {
                    "rows_in": s.rows_in,
                    "rows_out": s.rows_out,
                    "rows_per_s": round(s.rate(now), 1),
                    "failed_rows": s.failed,
                    **({"rows_computed": s.computed} if s.computed is not None else {}),
                    **({"llm": s.llm_counters()} if s.llm is not None else {}),
                    **({"spend": by_step[s.name].to_dict()} if s.name in by_step else {}),
                    **({"batch_jobs": jobs} if (jobs := s.batch_jobs()) else {}),
                }
                for s in self.steps
            },
        }
        if by_model:
            total = Spend()
            for spend in by_model.values():
                total.add(spend)
            summary["spend_by_model"] = {m: s.to_dict() for m, s in by_model.items()}
            summary["cost_usd"] = total.to_dict()["usd"]
        return summary


def _tokens(spend: dict[str, Any]) -> str:
    """``120/40/0``: input, output and cached input tokens."""
    return (
        f"{spend.get('input_tokens', 0)}/{spend.get('output_tokens', 0)}/"
        f"{spend.get('cached_tokens', 0)}"
    )


def _batch_jobs(jobs: dict[str, Any]) -> str:
    """``batch jobs 2 submitted + 1 from an earlier run, 1 in progress, 2 done; 150 requests
    answered; waited 42s``."""
    adopted = jobs.get("jobs_adopted", 0)
    return (
        f"batch jobs {jobs.get('jobs_submitted', 0)} submitted"
        + (f" + {adopted} from an earlier run" if adopted else "")
        + f", {jobs.get('jobs_in_progress', 0)} in progress, {jobs.get('jobs_done', 0)} done; "
        f"{jobs.get('requests_answered', 0)} requests answered; "
        f"waited {jobs.get('waited_s', 0):.0f}s"
    )


def _in_flight(counters: dict[str, Any]) -> str:
    """``"12/64"``: requests in flight and the concurrency limit allowed now (lower than
    ``max_concurrency`` only while a provider is overloaded)."""
    if "in_flight" not in counters:
        return ""
    limit = counters.get("concurrency_limit")
    return f"{counters['in_flight']}/{limit}" if limit else str(counters["in_flight"])


def _emit(text: str) -> None:
    print(text, file=sys.stderr, flush=True)

"""What an API client with a batch API adds: the ``use_batch_api`` settings, one batcher per
event loop, and a scheduler that lets a whole job's requests wait at once."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from pydantic import Field, PrivateAttr, model_validator

from alambic.llms.provider import ProviderLLM
from alambic.llms.scheduler import SchedulerLimits

__all__ = ["BatchAPILLM"]

_BATCH_FIELDS = frozenset(
    {"use_batch_api", "batch_max_requests", "batch_collect_s", "batch_poll_s", "batch_poll_max_s"}
)


class BatchAPILLM(ProviderLLM):
    """A provider client that can send its requests as batch jobs (``use_batch_api=True``).

    Subclasses set ``batch_max_requests``'s bound to the provider's limit and implement
    ``_new_batcher``; the settings change neither the request cache key nor the signature."""

    use_batch_api: bool = Field(
        default=False,
        description="Send requests as batch jobs (about half the price, answers within 24 "
        "hours) instead of one HTTP call each. See docs/cost.md.",
    )
    batch_max_requests: int = Field(
        default=50_000, gt=0, description="Most requests in one batch job."
    )
    batch_collect_s: float = Field(
        default=2.0, ge=0, description="Seconds requests are collected before a job is sent."
    )
    batch_poll_s: float = Field(default=10.0, gt=0, description="First wait between polls.")
    batch_poll_max_s: float = Field(default=300.0, gt=0, description="Longest wait between polls.")

    batch_max_bytes: ClassVar[int | None] = None
    """The provider's size limit for one job (requests as sent), if it has one."""

    _cache_exclude: ClassVar[frozenset[str]] = ProviderLLM._cache_exclude | _BATCH_FIELDS
    signature_exclude: ClassVar[frozenset[str]] = ProviderLLM.signature_exclude | _BATCH_FIELDS
    _batchers: dict[int, Any] = PrivateAttr(default_factory=dict)
    _closed_batch_progress: dict[str, Any] | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _batch_concurrency(self) -> BatchAPILLM:
        # a batch job holds thousands of requests at once: let that many wait on it
        if self.use_batch_api and "max_concurrency" not in self.model_fields_set:
            self.__dict__["max_concurrency"] = self.batch_max_requests
        return self

    def _scheduler_limits(self) -> SchedulerLimits:
        limits = super()._scheduler_limits()
        if self.use_batch_api:  # one "attempt" waits for a whole job: hours, not seconds
            limits.timeout = 48 * 3600.0
            # the job was the attempt: a request it did not answer is not sent again in this
            # run (a rerun retries passing failures, as for any request)
            limits.max_retries = 0
            limits.probe_first = False
            limits.adaptive_concurrency = False
        return limits

    def batch_journal_endpoint(self) -> str:
        """The server the journal files jobs under (jobs of another server are not ours)."""
        return f"{type(self).__name__}:{self.resolved_base_url() or 'default'}"

    def _new_batcher(self, journal: Any, limits: dict[str, Any]) -> Any:
        """The provider's :class:`~alambic.llms.batch.base.Batcher` (with its own client)."""
        raise NotImplementedError(f"{type(self).__name__} has no batch API")

    def _batcher(self) -> Any:
        from alambic.llms.batch.journal import BatchJobJournal
        from alambic.settings import cache_dir

        loop_id = id(asyncio.get_running_loop())
        batcher = self._batchers.get(loop_id)
        if batcher is None:
            limits = {
                "max_requests": self.batch_max_requests,
                "max_bytes": self.batch_max_bytes,
                "collect_s": self.batch_collect_s,
                "poll_s": self.batch_poll_s,
                "poll_max_s": self.batch_poll_max_s,
            }
            journal = BatchJobJournal(cache_dir(), self.batch_journal_endpoint())
            batcher = self._batchers[loop_id] = self._new_batcher(journal, limits)
        return batcher

    def batch_progress(self) -> dict[str, Any] | None:
        """Jobs submitted / in progress / done, requests answered and seconds waited, summed
        over this LLM's event loops; None when it sends no batch jobs."""
        if not self._batchers:
            return None
        total: dict[str, Any] = {}
        for batcher in self._batchers.values():
            for name, value in batcher.progress().items():
                total[name] = total.get(name, 0) + value
        return total

    def last_batch_progress(self) -> dict[str, Any] | None:
        """:meth:`batch_progress` while batchers are open, else the totals of the ones this LLM
        closed last (for the run summary, written after the step closed its clients)."""
        return self.batch_progress() or self._closed_batch_progress

    async def aclose(self) -> None:
        from alambic.llms.provider import close_client

        batcher = self._batchers.pop(id(asyncio.get_running_loop()), None)
        if batcher is not None:
            closed = dict(self._closed_batch_progress or {})
            for name, value in batcher.progress().items():
                closed[name] = closed.get(name, 0) + value
            self._closed_batch_progress = closed
            await batcher.aclose()
            batcher.journal.close()
            await close_client(batcher.client)
        await super().aclose()

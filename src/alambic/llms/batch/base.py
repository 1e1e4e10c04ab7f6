"""Provider batch APIs behind ``use_batch_api=True``: half the price, hours later.

Each request a task sends becomes one request of a batch job instead of an HTTP call.
Requests are collected for ``batch_collect_s`` (or until the provider's count or size limit
for one job), the job is sent, and it is polled with a backoff from ``batch_poll_s`` up to
``batch_poll_max_s``. As a job ends, its answers resolve the waiting requests (which then
reach the request cache and the rows, like any other reply); a request the provider refused
becomes a failed row with the provider's reason.

Nothing is paid twice. Before anything is sent, the job and the content key of every
request it holds are written to the journal (:mod:`alambic.llms.batch.journal`); the job's
id as soon as it is known. A run started again looks each request up there before queueing
it: a request held by a live or finished job waits for that job (a job whose id was never
written is found again on the provider's list of jobs, by a tag where the API keeps one),
and only the unanswered requests of expired or cancelled jobs are submitted again.

A provider is an adapter: :class:`Batcher` subclasses implement ``create_job``,
``find_job``, ``poll_job`` and ``read_results`` with the provider's SDK.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from alambic.errors import TRANSIENT_KINDS, ErrorKind, LLMRequestError
from alambic.llms.batch.journal import BatchJobJournal, JobRecord, request_content_key

__all__ = ["Batcher", "JobView", "refusal"]

logger = logging.getLogger("alambic")


@dataclass
class JobView:
    """What one poll says about a job."""

    status: str
    """The provider's word for the job's state."""
    finished: bool
    """Whether the job will change no more (its results can be read)."""
    resubmit: bool = False
    """Expired or cancelled: its unanswered requests are submitted again."""
    outcome: str = "completed"
    """completed, expired, cancelled or failed: what the journal keeps (a rerun submits
    again the requests of expired, cancelled and failed jobs that got no answer)."""
    raw: Any = None
    """The provider's job object, for ``read_results``."""
    reason: str = ""
    """Why a job failed as a whole, in the provider's words."""


def refusal(message: str, status: int | None = None) -> LLMRequestError:
    """A request the provider answered with an error: a failed row with its reason."""
    kind = ErrorKind.BAD_REQUEST if status is not None and status < 500 else ErrorKind.SERVER
    return LLMRequestError(f"batch request refused: {message}", kind=kind)


@dataclass
class _Waiting:
    body: dict[str, Any]
    futures: list[asyncio.Future[Any]] = field(default_factory=list)


class Batcher:
    """Collects, submits and polls the jobs of one LLM on one event loop."""

    provider = "batch"

    def __init__(
        self,
        client: Any,
        journal: BatchJobJournal,
        *,
        max_requests: int,
        collect_s: float,
        poll_s: float,
        poll_max_s: float,
        max_bytes: int | None = None,
    ) -> None:
        self.client = client
        self.journal = journal
        self.max_requests = max_requests
        self.max_bytes = max_bytes
        self.collect_s = collect_s
        self.poll_s = poll_s
        self.poll_max_s = poll_max_s
        self.waiting: dict[str, _Waiting] = {}  # in a job (or about to be): key -> futures
        self.buffer: list[str] = []
        self.buffer_bytes = 0
        self.flusher: asyncio.TimerHandle | None = None
        self.tasks: set[asyncio.Task[None]] = set()
        self.watched: set[str] = set()
        self.done_jobs: set[str] = set()
        # what finished jobs said, for requests that arrive after their job was read
        self.outcomes: dict[str, Any] = {}
        self.counts = {
            "jobs_submitted": 0,
            "jobs_adopted": 0,
            "jobs_done": 0,
            "requests_answered": 0,
        }
        self.waited_s = 0.0

    # -- what a provider implements ---------------------------------------------------------

    async def create_job(self, local_id: str, items: list[tuple[str, dict[str, Any]]]) -> str:
        """Send a job holding ``items`` (content key, request body); the provider's job id.

        May record an intermediate id (``self.journal.set(local_id, file_id=...)``)."""
        raise NotImplementedError

    async def find_job(self, record: JobRecord, keys: list[str]) -> str | None:
        """The id of a job an earlier run sent but never recorded, or None if never created."""
        raise NotImplementedError

    async def poll_job(self, batch_id: str) -> JobView:
        raise NotImplementedError

    async def read_results(self, view: JobView) -> list[tuple[str, Any]]:
        """(content key, answer) per request the ended job answered; the answer is the
        provider's reply, or an :class:`LLMRequestError` (see :func:`refusal`) for a refusal."""
        raise NotImplementedError

    def request_bytes(self, key: str, body: dict[str, Any]) -> int:
        """About how many bytes this request adds to a job (for the provider's size limit)."""
        return len(json.dumps(body, ensure_ascii=False).encode()) + len(key) + 64

    # -- the request path -----------------------------------------------------------------

    async def submit(self, body: dict[str, Any]) -> Any:
        """Answer one request through a batch job: the provider's reply."""
        key = request_content_key(body)
        known = self.outcomes.get(key)
        if isinstance(known, BaseException):
            raise known
        if known is not None:
            return known
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        waiting = self.waiting.get(key)
        if waiting is not None:
            waiting.futures.append(future)
            return await future
        self.waiting[key] = _Waiting(body, [future])
        job = await asyncio.to_thread(self.journal.live_job_of, key)
        if job is not None and job.local_id not in self.done_jobs:
            self._watch(job)
        else:
            self._queue(key)
        return await future

    def progress(self) -> dict[str, Any]:
        """Jobs submitted (this run) and adopted (from an earlier run), in progress, done;
        requests answered; seconds waited on jobs."""
        started = self.counts["jobs_submitted"] + self.counts["jobs_adopted"]
        return {
            **self.counts,
            "jobs_in_progress": started - self.counts["jobs_done"],
            "waited_s": round(self.waited_s, 3),
        }

    # -- collecting and submitting ---------------------------------------------------------

    def _queue(self, key: str) -> None:
        size = self.request_bytes(key, self.waiting[key].body) if self.max_bytes else 0
        if self.buffer and self.max_bytes and self.buffer_bytes + size > self.max_bytes:
            self._flush()
        self.buffer.append(key)
        self.buffer_bytes += size
        if len(self.buffer) >= self.max_requests:
            self._flush()
        elif self.flusher is None:
            loop = asyncio.get_running_loop()
            self.flusher = loop.call_later(self.collect_s, self._flush)

    def _flush(self) -> None:
        if self.flusher is not None:
            self.flusher.cancel()
            self.flusher = None
        keys, self.buffer, self.buffer_bytes = self.buffer, [], 0
        if keys:
            self._spawn(self._submit(keys))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _submit(self, keys: list[str]) -> None:
        local_id = uuid.uuid4().hex
        try:
            await asyncio.to_thread(self.journal.begin_job, local_id, keys)
            items = [(key, self.waiting[key].body) for key in keys]
            batch_id = await self.create_job(local_id, items)
            await asyncio.to_thread(self.journal.set, local_id, batch_id=batch_id, status="sent")
        except Exception as exc:
            self._fail(keys, exc, f"submitting a {self.provider} batch job failed")
            return
        self.counts["jobs_submitted"] += 1
        logger.info(
            "%s batch job %s submitted with %d requests (%s).",
            self.provider,
            batch_id,
            len(keys),
            self._jobs_line(),
        )
        await self._poll(local_id, batch_id, keys)

    # -- watching jobs ---------------------------------------------------------------------

    def _watch(self, record: JobRecord) -> None:
        if record.local_id in self.watched:
            return
        self.watched.add(record.local_id)
        self._spawn(self._adopt(record))

    async def _adopt(self, record: JobRecord) -> None:
        """A job an earlier run submitted: find its id if it was never written, then poll."""
        local_id = record.local_id
        keys = await asyncio.to_thread(self.journal.keys_of, local_id)
        batch_id = record.batch_id
        try:
            if batch_id is None:
                batch_id = await self.find_job(record, keys)
                if batch_id is not None:
                    await asyncio.to_thread(self.journal.set, local_id, batch_id=batch_id)
        except Exception as exc:
            self._fail(keys, exc, f"looking for {self.provider} batch job {local_id} failed")
            return
        if batch_id is None:  # killed before the job was created: submit its requests
            await asyncio.to_thread(self.journal.set, local_id, status="abandoned")
            self.done_jobs.add(local_id)
            for key in keys:
                if key in self.waiting:
                    self._queue(key)
            return
        self.counts["jobs_adopted"] += 1
        logger.info(
            "%s batch job %s from an earlier run holds %d requests: polling it (%s).",
            self.provider,
            batch_id,
            len(keys),
            self._jobs_line(),
        )
        await self._poll(local_id, batch_id, keys)

    async def _poll(self, local_id: str, batch_id: str, keys: list[str]) -> None:
        delay = self.poll_s
        started = time.monotonic()
        try:
            while True:
                view = await self.poll_job(batch_id)
                if view.finished:
                    break
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.poll_max_s)
            self.waited_s += time.monotonic() - started
            results = await self.read_results(view)
            await asyncio.to_thread(self.journal.set, local_id, status=view.outcome)
            # a request refused for a passing reason (a server error) is not this job's any
            # more: a rerun submits it again (it was not answered, so it is not paid twice)
            passing = [
                k
                for k, a in results
                if isinstance(a, LLMRequestError) and a.kind in TRANSIENT_KINDS
            ]
            if passing:
                await asyncio.to_thread(self.journal.release, local_id, passing)
        except Exception as exc:
            self._fail(keys, exc, f"polling {self.provider} batch job {batch_id} failed")
            return
        # bookkeeping first: once the last answer is out, the run may close this batcher
        answered = {key for key, _ in results}
        self.counts["jobs_done"] += 1
        self.counts["requests_answered"] += len(answered)
        self.done_jobs.add(local_id)
        unanswered = [k for k in keys if k not in answered and k in self.waiting]
        logger.info(
            "%s batch job %s %s: %d of %d requests answered after %.1f s (%s; this run "
            "waited %.1f s on jobs in all).",
            self.provider,
            batch_id,
            view.status,
            len(answered),
            len(keys),
            time.monotonic() - started,
            self._jobs_line(),
            self.waited_s,
        )
        self._collect(results)
        if unanswered and view.resubmit:
            logger.info(
                "%s batch job %s %s with %d of %d requests unanswered: submitting those again.",
                self.provider,
                batch_id,
                view.status,
                len(unanswered),
                len(keys),
            )
            for key in unanswered:
                self._queue(key)
        elif unanswered:
            reason = f"{self.provider} batch job {batch_id} ended {view.status!r} without an answer"
            if view.reason:
                reason += f": {view.reason}"
            error = LLMRequestError(reason, kind=ErrorKind.SERVER)
            self.outcomes.update(dict.fromkeys(unanswered, error))
            self._fail(unanswered, error, reason)

    def _jobs_line(self) -> str:
        p = self.progress()
        return (
            f"jobs: {p['jobs_submitted'] + p['jobs_adopted']} submitted, "
            f"{p['jobs_in_progress']} in progress, {p['jobs_done']} done; "
            f"{p['requests_answered']} requests answered"
        )

    def _collect(self, results: list[tuple[str, Any]]) -> None:
        """Resolve the requests an ended job answered (or refused)."""
        for key, answer in results:
            if isinstance(answer, BaseException):
                self.outcomes[key] = answer
                self._fail([key], answer, "")
            else:
                self._resolve(key, answer)

    def _resolve(self, key: str, answer: Any) -> None:
        self.outcomes[key] = answer
        waiting = self.waiting.pop(key, None)
        if waiting is None:
            return
        for future in waiting.futures:
            if not future.done():
                future.set_result(answer)

    def _fail(self, keys: list[str], exc: BaseException, why: str) -> None:
        if why:
            logger.warning("%s: %s", why, exc)
        for key in keys:
            waiting = self.waiting.pop(key, None)
            for future in waiting.futures if waiting else []:
                if not future.done():
                    future.set_exception(exc)

    async def aclose(self) -> None:
        if self.flusher is not None:
            self.flusher.cancel()
            self.flusher = None
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

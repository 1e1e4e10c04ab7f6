"""OpenAI's Batch API behind ``OpenAILLM(use_batch_api=True)``: half the price, hours later.

Each request a task sends becomes one line of a JSONL job instead of an HTTP call. Lines are
collected for ``batch_collect_s`` (or until ``batch_max_requests``), uploaded, the job is
created, and it is polled with a backoff from ``batch_poll_s`` up to ``batch_poll_max_s``.
As a job finishes, its answers resolve the waiting requests (which then reach the request
cache and the rows, like any other reply).

Nothing is paid twice. Before a file is uploaded, the job and the content key of every
request it holds are written to ``batch_jobs.sqlite`` in the cache folder; the file id and
the job id are written as soon as they are known. A run started again looks a request up
there before queueing it: a request held by a live or finished job waits for that job (a
job whose id was never written is found again by the ``alambic_job`` tag in its metadata),
and only requests of expired or cancelled jobs that got no answer are submitted again.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from alambic.errors import ErrorKind, LLMRequestError

__all__ = ["BatchJobJournal", "OpenAIBatcher", "request_content_key"]

logger = logging.getLogger("alambic")

JOURNAL_FILENAME: Final = "batch_jobs.sqlite"
_FINISHED: Final = frozenset({"completed", "expired", "cancelled", "failed"})
_RESUBMIT: Final = frozenset({"expired", "cancelled"})

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS jobs (
        local_id TEXT PRIMARY KEY, endpoint TEXT NOT NULL, file_id TEXT, batch_id TEXT,
        status TEXT NOT NULL, created REAL NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS job_requests (
        key TEXT NOT NULL, local_id TEXT NOT NULL, PRIMARY KEY (key, local_id))""",
    "CREATE INDEX IF NOT EXISTS job_requests_key ON job_requests (key)",
)


def request_content_key(body: dict[str, Any]) -> str:
    """The ``custom_id`` of a request: a hash of everything it sends."""
    blob = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


class BatchJobJournal:
    """Jobs and the requests they hold, per server (``endpoint``), in one SQLite file."""

    def __init__(self, folder: Path, endpoint: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / JOURNAL_FILENAME
        self.endpoint = endpoint
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA busy_timeout=10000")
        for statement in _SCHEMA:
            self._conn.execute(statement)

    def _write(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.executemany(sql, rows)
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def begin_job(self, local_id: str, keys: list[str]) -> None:
        """Written before the upload: the job exists and holds these requests."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.execute(
                    "INSERT INTO jobs VALUES (?, ?, NULL, NULL, 'submitting', ?)",
                    (local_id, self.endpoint, time.time()),
                )
                self._conn.executemany(
                    "INSERT OR IGNORE INTO job_requests VALUES (?, ?)",
                    [(k, local_id) for k in keys],
                )
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def set(self, local_id: str, **values: Any) -> None:
        columns = ", ".join(f"{k} = ?" for k in values)
        self._write(f"UPDATE jobs SET {columns} WHERE local_id = ?", [(*values.values(), local_id)])

    def live_job_of(self, key: str) -> tuple[str, str | None, str | None, str] | None:
        """The newest job of this server holding ``key`` that may still answer it."""
        with self._lock:
            row = self._conn.execute(
                "SELECT j.local_id, j.file_id, j.batch_id, j.status FROM job_requests r "
                "JOIN jobs j ON j.local_id = r.local_id WHERE r.key = ? AND j.endpoint = ? "
                "AND j.status NOT IN ('expired', 'cancelled', 'abandoned') "
                "ORDER BY j.created DESC LIMIT 1",
                (key, self.endpoint),
            ).fetchone()
        return None if row is None else (row[0], row[1], row[2], row[3])

    def keys_of(self, local_id: str) -> list[str]:
        with self._lock:
            return [
                r[0]
                for r in self._conn.execute(
                    "SELECT key FROM job_requests WHERE local_id = ?", (local_id,)
                )
            ]

    def close(self) -> None:
        with self._lock:
            self._conn.close()


@dataclass
class _Waiting:
    body: dict[str, Any]
    futures: list[asyncio.Future[dict[str, Any]]] = field(default_factory=list)


class OpenAIBatcher:
    """Collects, submits and polls jobs for one LLM on one event loop."""

    def __init__(
        self,
        client: Any,
        journal: BatchJobJournal,
        *,
        max_requests: int,
        collect_s: float,
        poll_s: float,
        poll_max_s: float,
        endpoint: str = "/v1/chat/completions",
    ) -> None:
        self.client = client
        self.endpoint = endpoint
        self.journal = journal
        self.max_requests = max_requests
        self.collect_s = collect_s
        self.poll_s = poll_s
        self.poll_max_s = poll_max_s
        self.waiting: dict[str, _Waiting] = {}  # in a job (or about to be): key -> futures
        self.buffer: list[str] = []
        self.flusher: asyncio.TimerHandle | None = None
        self.tasks: set[asyncio.Task[None]] = set()
        self.watched: set[str] = set()
        self.done_jobs: set[str] = set()
        # what finished jobs said, for requests that arrive after their job was read
        self.outcomes: dict[str, dict[str, Any] | BaseException] = {}
        self.counts = {"jobs_submitted": 0, "jobs_done": 0, "requests_answered": 0}
        self.waited_s = 0.0

    async def submit(self, body: dict[str, Any]) -> dict[str, Any]:
        """Answer one chat request through a batch job: the chat-completion body."""
        key = request_content_key(body)
        known = self.outcomes.get(key)
        if isinstance(known, BaseException):
            raise known
        if known is not None:
            return known
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        waiting = self.waiting.get(key)
        if waiting is not None:
            waiting.futures.append(future)
            return await future
        self.waiting[key] = _Waiting(body, [future])
        job = await asyncio.to_thread(self.journal.live_job_of, key)
        if job is not None and job[0] not in self.done_jobs:
            self._watch(job[0], job[1], job[2])
        else:
            self._queue(key)
        return await future

    # -- collecting and submitting ---------------------------------------------------------

    def _queue(self, key: str) -> None:
        self.buffer.append(key)
        if len(self.buffer) >= self.max_requests:
            self._flush()
        elif self.flusher is None:
            loop = asyncio.get_running_loop()
            self.flusher = loop.call_later(self.collect_s, self._flush)

    def _flush(self) -> None:
        if self.flusher is not None:
            self.flusher.cancel()
            self.flusher = None
        keys, self.buffer = self.buffer, []
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
            lines = [
                json.dumps(
                    {
                        "custom_id": key,
                        "method": "POST",
                        "url": self.endpoint,
                        "body": self.waiting[key].body,
                    },
                    ensure_ascii=False,
                )
                for key in keys
            ]
            data = ("\n".join(lines) + "\n").encode()
            uploaded = await self.client.files.create(
                file=(f"alambic-{local_id}.jsonl", data), purpose="batch"
            )
            await asyncio.to_thread(self.journal.set, local_id, file_id=uploaded.id)
            job = await self.client.batches.create(
                input_file_id=uploaded.id,
                endpoint=self.endpoint,
                completion_window="24h",
                metadata={"alambic_job": local_id},
            )
            await asyncio.to_thread(self.journal.set, local_id, batch_id=job.id, status=job.status)
        except Exception as exc:
            self._fail(keys, exc, "submitting a batch job failed")
            return
        self.counts["jobs_submitted"] += 1
        logger.info("Batch job %s submitted with %d requests.", job.id, len(keys))
        await self._poll(local_id, job.id, keys)

    # -- watching jobs ---------------------------------------------------------------------

    def _watch(self, local_id: str, file_id: str | None, batch_id: str | None) -> None:
        if local_id in self.watched:
            return
        self.watched.add(local_id)
        self._spawn(self._adopt(local_id, file_id, batch_id))

    async def _adopt(self, local_id: str, file_id: str | None, batch_id: str | None) -> None:
        """A job an earlier run submitted: find its id if it was never written, then poll."""
        keys = await asyncio.to_thread(self.journal.keys_of, local_id)
        if batch_id is None:
            batch_id = await self._find(local_id, file_id)
            if batch_id is None:  # killed before the job was created: submit its requests
                await asyncio.to_thread(self.journal.set, local_id, status="abandoned")
                self.done_jobs.add(local_id)
                for key in keys:
                    if key in self.waiting:
                        self._queue(key)
                return
            await asyncio.to_thread(self.journal.set, local_id, batch_id=batch_id)
        await self._poll(local_id, batch_id, keys)

    async def _find(self, local_id: str, file_id: str | None) -> str | None:
        async for job in self.client.batches.list(limit=100):
            tag = (job.metadata or {}).get("alambic_job")
            if tag == local_id or (file_id is not None and job.input_file_id == file_id):
                found: str = job.id
                return found
        return None

    async def _poll(self, local_id: str, batch_id: str, keys: list[str]) -> None:
        delay = self.poll_s
        started = time.monotonic()
        try:
            while True:
                job = await self.client.batches.retrieve(batch_id)
                if job.status in _FINISHED:
                    break
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.poll_max_s)
            self.waited_s += time.monotonic() - started
            answered = await self._collect(job)
            await asyncio.to_thread(self.journal.set, local_id, status=job.status)
        except Exception as exc:
            self._fail(keys, exc, f"polling batch job {batch_id} failed")
            return
        self.counts["jobs_done"] += 1
        self.done_jobs.add(local_id)
        logger.info(
            "Batch job %s %s: %d of %d requests answered after %.1f s (jobs: %d submitted, "
            "%d done; this run waited %.1f s on jobs in all).",
            batch_id,
            job.status,
            len(answered),
            len(keys),
            time.monotonic() - started,
            self.counts["jobs_submitted"],
            self.counts["jobs_done"],
            self.waited_s,
        )
        unanswered = [k for k in keys if k not in answered and k in self.waiting]
        if job.status in _RESUBMIT:
            logger.info(
                "Batch job %s %s with %d of %d requests unanswered: submitting those again.",
                batch_id,
                job.status,
                len(unanswered),
                len(keys),
            )
            for key in unanswered:
                self._queue(key)
        elif unanswered:
            reason = f"batch job {batch_id} ended {job.status!r} without an answer"
            self._fail(unanswered, LLMRequestError(reason, kind=ErrorKind.SERVER), reason)

    async def _collect(self, job: Any) -> set[str]:
        """Resolve the requests a finished job answered (or refused); their keys."""
        done: set[str] = set()
        for file_id in (job.output_file_id, job.error_file_id):
            if not file_id:
                continue
            content = await self.client.files.content(file_id)
            for line in content.text.splitlines():
                if not line.strip():
                    continue
                item = json.loads(line)
                key = item.get("custom_id")
                response = item.get("response") or {}
                status = response.get("status_code")
                if status == 200:
                    self._resolve(key, response.get("body") or {})
                    done.add(key)
                elif response:  # the provider refused this request: a failed row, its reason
                    error = (response.get("body") or {}).get("error") or {}
                    message = error.get("message") or f"status {status}"
                    kind = ErrorKind.BAD_REQUEST if status and status < 500 else ErrorKind.SERVER
                    refused = LLMRequestError(f"batch request refused: {message}", kind=kind)
                    self.outcomes[key] = refused
                    self._fail([key], refused, "")
                    done.add(key)
        self.counts["requests_answered"] += len(done)
        return done

    def _resolve(self, key: str, body: dict[str, Any]) -> None:
        self.outcomes[key] = body
        waiting = self.waiting.pop(key, None)
        if waiting is None:
            return
        for future in waiting.futures:
            if not future.done():
                future.set_result(body)

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

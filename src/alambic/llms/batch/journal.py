"""The journal of batch jobs: which jobs were sent to which server and which requests each
holds, in ``batch_jobs.sqlite`` in the cache folder (beside the run store).

A job and the content key of every request it holds are written before anything is sent;
the file id (where the provider takes an uploaded file) and the job id as soon as they are
known; the job's final status when it ends. A run started again looks each request up here
before queueing it (see :mod:`alambic.llms.batch.base`).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Final, NamedTuple

__all__ = ["BatchJobJournal", "JobRecord", "request_content_key"]

JOURNAL_FILENAME: Final = "batch_jobs.sqlite"

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


class JobRecord(NamedTuple):
    """A job as the journal knows it."""

    local_id: str
    file_id: str | None
    batch_id: str | None
    status: str
    created: float


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

    def live_job_of(self, key: str) -> JobRecord | None:
        """The newest job of this server holding ``key`` that may still answer it."""
        with self._lock:
            row = self._conn.execute(
                "SELECT j.local_id, j.file_id, j.batch_id, j.status, j.created "
                "FROM job_requests r JOIN jobs j ON j.local_id = r.local_id WHERE r.key = ? AND j.endpoint = ? "
                "AND j.status NOT IN ('expired', 'cancelled', 'failed', 'abandoned') "
                "ORDER BY j.created DESC LIMIT 1",
                (key, self.endpoint),
            ).fetchone()
        return None if row is None else JobRecord(row[0], row[1], row[2], row[3], row[4])

    def batch_ids(self) -> frozenset[str]:
        """The provider ids of every job of this server the journal knows."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT batch_id FROM jobs WHERE endpoint = ? AND batch_id IS NOT NULL",
                (self.endpoint,),
            ).fetchall()
        return frozenset(r[0] for r in rows)

    def release(self, local_id: str, keys: list[str]) -> None:
        """These requests are no longer held by this job (a rerun may submit them again)."""
        self._write(
            "DELETE FROM job_requests WHERE local_id = ? AND key = ?", [(local_id, k) for k in keys]
        )

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

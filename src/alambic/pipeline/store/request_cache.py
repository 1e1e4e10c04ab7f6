"""``RequestCacheStore``: every answered LLM request, on disk, shared across runs.

The file (by default ``<cache_dir>/requests.sqlite``) maps a request key (see
:mod:`alambic.llms.cache`: a hash of backend identity without secrets, model, messages,
schema, generation settings, plus the generation index) to the reply text, its token
counts, the request's latency and retries (API clients), and the reasoning the backend
returned beside the reply (if any). Nothing else is stored: no API
key, no headers, no URL with credentials.

Several processes may use one file at once (two different pipelines running side by side):
SQLite serialises their writes. Each process holds a shared ``flock`` on ``<file>.lock`` while
the file is open, so :func:`alambic.pipeline.runs.clear_cache` can refuse to delete it under
a running pipeline.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

from alambic.errors import StoreError
from alambic.llms.cache import CachedGeneration
from alambic.pipeline.store._lock import FileLock
from alambic.pipeline.store._sqlite import (
    Reader,
    StoreFile,
    StoreHandle,
    Writer,
    close_quietly,
    connect,
    ensure_schema,
    now,
    translate_error,
)
from alambic.pipeline.store.reserve import DiskReserve

REQUEST_CACHE_APPLICATION_ID = 0x416C5243  # "AlRC"
REQUEST_CACHE_VERSION = 1
REQUEST_CACHE_FILENAME = "requests.sqlite"

_SCHEMA = (
    """CREATE TABLE requests (
        key TEXT PRIMARY KEY,
        text TEXT,
        input_tokens INTEGER,
        output_tokens INTEGER,
        created_at REAL NOT NULL,
        latency_s REAL,
        retries INTEGER,
        reasoning TEXT
    )""",
)
# added to format 1 without a new version: older alambic names its columns, so it still
# reads and writes a file that has them
_ADDED_COLUMNS = (("latency_s", "REAL"), ("retries", "INTEGER"), ("reasoning", "TEXT"))
_Params = tuple[
    str, str | None, int | None, int | None, float, float | None, int | None, str | None
]

_CHUNK = 500  # keys per SELECT (SQLite's default limit is 32,766 variables)


def _add_columns(conn: sqlite3.Connection, file: StoreFile) -> None:
    """Give a file written before latency, retries and reasoning were kept their columns."""
    try:
        if {row[1] for row in conn.execute("PRAGMA table_info(requests)")} >= {
            name for name, _ in _ADDED_COLUMNS
        }:
            return
        conn.execute("BEGIN IMMEDIATE")  # another process may be adding them too
        try:
            have = {row[1] for row in conn.execute("PRAGMA table_info(requests)")}
            for name, kind in _ADDED_COLUMNS:
                if name not in have:
                    conn.execute(f"ALTER TABLE requests ADD COLUMN {name} {kind}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    except sqlite3.Error as exc:
        raise translate_error(exc, file) from exc


def request_cache_path(cache_dir: Path, run_dir: Path | None = None) -> Path:
    """Where the request cache lives: shared in ``cache_dir``, or private to ``run_dir``."""
    return (run_dir if run_dir is not None else Path(cache_dir)) / REQUEST_CACHE_FILENAME


class RequestCacheStore(StoreHandle):
    """A persistent, thread-safe :class:`alambic.llms.cache.RequestCache`.

    :meth:`put_many` commits the answers before it returns (a SIGKILL right after loses
    none); :attr:`hits` and :attr:`misses` count lookups.

    A full disk loses no answer: the write is tried again in the space of the run's
    :class:`~alambic.pipeline.store.reserve.DiskReserve`, answers that still cannot be
    written stay buffered (tried again on each write and on closing), and
    :meth:`commit_pending` raises the disk-full :class:`StoreError` so no new request leaves.
    """

    def __init__(
        self,
        *,
        file: StoreFile,
        lock: FileLock,
        writer: Writer,
        reader: Reader,
        conns: tuple[sqlite3.Connection, sqlite3.Connection],
        reserve: DiskReserve | None = None,
    ) -> None:
        self.path = file.path
        self._reserve = reserve
        self._stop: StoreError | None = None  # a full disk: no new request may leave
        self._file = file
        self._lock = lock
        self._writer = writer
        self._reader = reader
        self._conns = conns
        self._closed = False
        self._buffer: list[_Params] = []
        self._pending: dict[str, CachedGeneration] = {}
        self._buffer_lock = threading.Lock()
        self._scheduled = False
        self._lookups: dict[
            asyncio.AbstractEventLoop,
            list[tuple[list[str], asyncio.Future[list[CachedGeneration | None]]]],
        ] = {}
        self.hits = 0
        self.misses = 0

    @classmethod
    def open(cls, path: Path, reserve: DiskReserve | None = None) -> RequestCacheStore:
        """Open (or create) the cache file at ``path``; a full disk is paid from
        ``reserve`` (allocated by the caller)."""
        path = Path(path)
        file = StoreFile(
            path=path,
            what="request cache",
            reset_hint=(
                f"delete {path} and its -wal/-shm files (answered requests will be sent "
                "again), e.g. with alambic.pipeline.runs.clear_cache(pipelines=False)"
            ),
        )
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"Cannot create the folder of the request cache {path} ({exc}). Set "
                "ALAMBIC_CACHE_DIR to a writable folder."
            ) from exc
        lock = FileLock(path.with_name(path.name + ".lock"), shared=True)
        lock.acquire(timeout=5.0)  # only clear_cache ever holds it exclusively, briefly
        conns: list[sqlite3.Connection] = []
        try:
            writer_conn = connect(file)
            conns.append(writer_conn)
            ensure_schema(
                writer_conn,
                file,
                application_id=REQUEST_CACHE_APPLICATION_ID,
                version=REQUEST_CACHE_VERSION,
                schema=_SCHEMA,
            )
            _add_columns(writer_conn, file)
            reader_conn = connect(file)
            conns.append(reader_conn)
        except BaseException:
            for conn in conns:
                close_quietly(conn)
            lock.release()
            raise
        return cls(
            file=file,
            lock=lock,
            writer=Writer(writer_conn, file, name="alambic-request-cache", reserve=reserve),
            reader=Reader(reader_conn, file),
            conns=(writer_conn, reader_conn),
            reserve=reserve,
        )

    def get_many(self, keys: list[str]) -> list[CachedGeneration | None]:
        if self._closed:
            raise StoreError(f"The request cache {self.path} is closed.")
        found: dict[str, CachedGeneration] = {}
        with self._buffer_lock:
            for key in keys:
                hit = self._pending.get(key)
                if hit is not None:
                    found[key] = hit
        missing = [k for k in dict.fromkeys(keys) if k not in found]
        for start in range(0, len(missing), _CHUNK):
            chunk = missing[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            for (
                key,
                text,
                input_tokens,
                output_tokens,
                latency,
                retries,
                reasoning,
            ) in self._reader.all(
                "SELECT key, text, input_tokens, output_tokens, latency_s, retries, reasoning "
                f"FROM requests WHERE key IN ({marks})",
                chunk,
            ):
                entry: CachedGeneration = {
                    "text": text,
                    "input_tokens": input_tokens,
                    "output_tokens": output_tokens,
                }
                if latency is not None:
                    entry["latency_s"] = latency
                if retries:
                    entry["retries"] = retries
                if reasoning is not None:
                    entry["reasoning"] = reasoning
                found[key] = entry
        result = [found.get(k) for k in keys]
        hits = sum(1 for r in result if r is not None)
        self.hits += hits
        self.misses += len(keys) - hits
        return result

    async def aget_many(self, keys: list[str]) -> list[CachedGeneration | None]:
        """:meth:`get_many` on the event loop: the lookups made in one loop iteration (the
        rows of a batch start together) share one query instead of one query each."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[CachedGeneration | None]] = loop.create_future()
        with self._buffer_lock:
            waiting = self._lookups.setdefault(loop, [])
            waiting.append((keys, future))
            first = len(waiting) == 1
        if first:
            loop.call_soon(self._look_up_waiting, loop)
        return await future

    def _look_up_waiting(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._buffer_lock:
            waiting = self._lookups.pop(loop, [])
        try:
            found = self.get_many([key for keys, _ in waiting for key in keys])
        except BaseException as exc:  # a damaged or closed cache: every waiter gets it
            for _, future in waiting:
                if not future.done():
                    future.set_exception(exc)
            return
        start = 0
        for keys, future in waiting:
            if not future.done():  # its request was cancelled meanwhile
                future.set_result(found[start : start + len(keys)])
            start += len(keys)

    def put_many(self, items: list[tuple[str, CachedGeneration]]) -> None:
        """Store answers; they are committed before this process waits on anything again.

        An answer is the one thing a SIGKILL must not make us pay for twice, so it is not
        handed to the writer thread (which may wait milliseconds for the GIL). From a thread
        with no event loop it is committed before this returns; on the event loop, the answers
        of one loop iteration are committed together in a callback that runs before the loop
        next polls for I/O (one transaction for many answers, none left behind).
        """
        if not items:
            return
        if self._closed:
            raise StoreError(f"The request cache {self.path} is closed.")
        at = now()
        params = [
            (
                key,
                gen["text"],
                gen["input_tokens"],
                gen["output_tokens"],
                at,
                gen.get("latency_s"),
                gen.get("retries"),
                gen.get("reasoning"),
            )
            for key, gen in items
        ]
        with self._buffer_lock:
            for key, gen in items:
                self._pending[key] = gen
            self._buffer.extend(params)
            schedule = not self._scheduled
            self._scheduled = True
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # a worker thread: written now; after a full disk, raise
            self.commit_pending()
            return
        if schedule:
            loop.call_soon(self._commit_buffer)

    def commit_pending(self) -> None:
        """Commit the answers buffered on the event loop now (LLMs call this before sending a
        request, so no request leaves while an earlier answer is uncommitted); after a full
        disk, raise its :class:`StoreError` so that no new request leaves at all."""
        if self._buffer:
            self._commit_buffer()
        stop = self._stop or (self._reserve.error if self._reserve is not None else None)
        if stop is not None:
            raise stop

    def _commit_buffer(self) -> None:
        """Write the buffered answers; never raises (it runs as an event-loop callback): what
        cannot be written stays buffered, and the error is kept for :meth:`commit_pending`."""
        if self._closed:
            return
        with self._buffer_lock:
            params, self._buffer = self._buffer, []
            self._scheduled = False
        if not params:
            return
        committed, error = self._writer.try_now(
            lambda conn: conn.executemany(
                "INSERT OR REPLACE INTO requests(key, text, input_tokens, output_tokens, "
                "created_at, latency_s, retries, reasoning) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                params,
            )
        )
        with self._buffer_lock:
            if committed:
                for key, *_ in params:
                    self._pending.pop(key, None)
            else:
                self._buffer[:0] = params  # kept, in order, for the next try
            if error is not None and self._stop is None:
                self._stop = error

    def flush(self) -> None:
        """Return once every answer put so far is in the file."""
        self._commit_buffer()
        self._writer.wait()

    def __len__(self) -> int:
        self.flush()
        row = self._reader.one("SELECT count(*) FROM requests")
        return int(row[0]) if row else 0

    def close(self) -> None:
        """Write what is queued, close the file and drop the shared lock (idempotent);
        raises the :class:`StoreError` that left answers unwritten, if any."""
        if self._closed:
            return
        self._commit_buffer()
        unwritten = len(self._buffer)
        self._closed = True
        self._shut_down()
        if self._writer.error is not None:
            raise self._writer.error
        if unwritten and self._stop is not None:
            raise StoreError(
                f"{unwritten} answered requests could not be written to the request cache "
                f"(they will be sent again on the next run): {self._stop}"
            ) from self._stop

    def __repr__(self) -> str:
        return f"RequestCacheStore({self.path})"


__all__ = [
    "REQUEST_CACHE_APPLICATION_ID",
    "REQUEST_CACHE_FILENAME",
    "REQUEST_CACHE_VERSION",
    "RequestCacheStore",
    "request_cache_path",
]

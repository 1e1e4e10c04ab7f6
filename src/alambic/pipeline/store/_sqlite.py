"""SQLite plumbing shared by the run store and the request cache.

Two connections per store file: a *writer* owned by a background thread that applies queued
operations in one transaction per wake-up (group commit), and a *reader* used by the caller
under a lock. WAL mode lets the reader see every committed transaction without blocking the
writer, and lets other processes (``alambic.pipeline.runs``) inspect a store while it runs.

Durability: the files are opened with ``synchronous=NORMAL``. In WAL mode a commit is then
written to the operating system before it returns, but not fsynced: a crashed or killed
*process* loses nothing that was committed; a *power loss* or kernel crash may lose the last
transactions (never corrupt the file). ``ALAMBIC_STORE_SYNC=FULL`` fsyncs every commit.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from typing_extensions import Self

from alambic.errors import StoreError
from alambic.settings import store_sync

if TYPE_CHECKING:
    from alambic.pipeline.store.reserve import DiskReserve

logger = logging.getLogger("alambic")

T = TypeVar("T")

# SQLite primary result codes (https://sqlite.org/rescode.html)
_SQLITE_BUSY = 5
_SQLITE_LOCKED = 6
_SQLITE_IOERR = 10
_SQLITE_CORRUPT = 11
_SQLITE_FULL = 13
_SQLITE_NOTADB = 26

_LOW_SPACE_BYTES = 4 * 1024 * 1024
BUSY_TIMEOUT_MS = 30_000


@dataclass(frozen=True, slots=True)
class StoreFile:
    """What a store file is, for error messages: its path, its kind and how to reset it."""

    path: Path
    what: str
    reset_hint: str


sync_mode = store_sync
"""``NORMAL`` (default) or ``FULL`` from ``ALAMBIC_STORE_SYNC`` (see :mod:`alambic.settings`)."""


def _error_code(exc: sqlite3.Error) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF
    text = str(exc).lower()
    if "disk is full" in text or "database or disk is full" in text:
        return _SQLITE_FULL
    if "malformed" in text:
        return _SQLITE_CORRUPT
    if "not a database" in text:
        return _SQLITE_NOTADB
    if "locked" in text:
        return _SQLITE_BUSY
    if "disk i/o error" in text:
        return _SQLITE_IOERR
    return None


def _low_on_space(path: Path) -> bool:
    try:
        return shutil.disk_usage(path.parent).free < _LOW_SPACE_BYTES
    except OSError:
        return False


def translate_error(exc: BaseException, file: StoreFile) -> StoreError:
    """A :class:`StoreError` that says what happened to ``file`` and what to do about it."""
    if isinstance(exc, StoreError):
        return exc
    code = _error_code(exc) if isinstance(exc, sqlite3.Error) else None
    is_full = code == _SQLITE_FULL or (
        (code == _SQLITE_IOERR or (isinstance(exc, OSError) and exc.errno == 28))
        and _low_on_space(file.path)
    )
    if is_full:
        full = StoreError(
            f"Disk full while writing the {file.what} {file.path} ({exc}). Nothing committed "
            "before this point is lost: free some space (or set ALAMBIC_CACHE_DIR to a folder "
            "on a larger disk) and run again; the run resumes from the committed batches."
        )
        full.disk_full = True
        return full
    if code in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
        return StoreError(
            f"The {file.what} {file.path} is corrupt or not an alambic store ({exc}). "
            f"alambic never resets it silently. To start over, {file.reset_hint}."
        )
    if code in (_SQLITE_BUSY, _SQLITE_LOCKED):
        return StoreError(
            f"The {file.what} {file.path} stayed locked by another process for "
            f"{BUSY_TIMEOUT_MS // 1000} s ({exc}). Wait for the other alambic process to "
            "finish, or stop it."
        )
    return StoreError(f"Writing or reading the {file.what} {file.path} failed: {exc}")


def connect(file: StoreFile) -> sqlite3.Connection:
    """A connection in WAL mode, usable from any thread (callers serialise its use)."""
    path = Path(file.path)
    if path.is_file() and path.stat().st_size == 0:
        logger.warning(
            "The %s %s is an empty (0-byte) file, as a crash while creating it or a full disk "
            "can leave: alambic creates a new one in its place (it held nothing to lose).",
            file.what,
            path,
        )
    try:
        conn = sqlite3.connect(
            file.path,
            timeout=BUSY_TIMEOUT_MS / 1000,
            isolation_level=None,
            check_same_thread=False,
        )
    except sqlite3.Error as exc:
        raise translate_error(exc, file) from exc
    try:
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreError(
                f"The {file.what} {file.path} cannot use SQLite's WAL mode (got {mode!r}); "
                "the file system may not support shared memory (network file systems often "
                "do not). Set ALAMBIC_CACHE_DIR to a folder on a local disk."
            )
        conn.execute(f"PRAGMA synchronous={sync_mode()}")
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    except sqlite3.Error as exc:
        conn.close()
        raise translate_error(exc, file) from exc
    except StoreError:
        conn.close()
        raise
    return conn


def ensure_schema(
    conn: sqlite3.Connection,
    file: StoreFile,
    *,
    application_id: int,
    version: int,
    schema: tuple[str, ...],
) -> bool:
    """Create the schema in an empty file, or check a file's kind and version.

    Returns whether the schema was created. A file written by another kind of program or an
    incompatible version of alambic raises :class:`StoreError` naming the path and the fix.
    """
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]
            found = conn.execute("PRAGMA user_version").fetchone()[0]
            tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
            if app_id == 0 and found == 0 and tables == 0:
                for statement in schema:
                    conn.execute(statement)
                conn.execute(f"PRAGMA application_id={application_id}")
                conn.execute(f"PRAGMA user_version={version}")
                conn.execute("COMMIT")
                return True
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    except sqlite3.Error as exc:
        raise translate_error(exc, file) from exc
    if app_id != application_id:
        raise StoreError(
            f"{file.path} is a SQLite file but not an alambic {file.what} (application id "
            f"{app_id:#x}, expected {application_id:#x}). alambic never overwrites it. "
            f"To start over, {file.reset_hint}."
        )
    if found != version:
        newer = "a newer" if found > version else "an older"
        raise StoreError(
            f"The {file.what} {file.path} was written by {newer} version of alambic (store "
            f"format {found}; this version reads format {version}). alambic never converts or "
            f"resets it silently. Use the matching alambic version, or to start over, "
            f"{file.reset_hint}."
        )
    return False


class _Result:
    """The outcome of one queued operation whose result the caller waits for."""

    __slots__ = ("error", "ready", "value")

    def __init__(self) -> None:
        self.ready = threading.Event()
        self.value: Any = None
        self.error: BaseException | None = None


class Writer:
    """A thread that applies queued operations to ``conn``, many per transaction.

    Operations run in submission order; everything queued while one transaction commits goes
    into the next one. After a failure (disk full...) the transaction is rolled back, the
    writer stops, and every later :meth:`submit` or :meth:`wait` raises the same
    :class:`StoreError`: what committed before stays committed. With a ``reserve``, a
    transaction that meets a full disk frees it and is tried once more (committed, it still
    stops the writer: the disk is full).
    """

    def __init__(
        self,
        conn: sqlite3.Connection,
        file: StoreFile,
        name: str,
        reserve: DiskReserve | None = None,
    ) -> None:
        self._conn = conn
        self._file = file
        self._reserve = reserve
        self._cond = threading.Condition()
        self._queue: list[
            tuple[Callable[[sqlite3.Connection], object], Callable[[], None] | None]
        ] = []
        self._submitted = 0
        self._done = 0
        self._stopping = False
        self.error: StoreError | None = None
        self.commits = 0
        self._exec_lock = threading.Lock()  # one transaction at a time on the connection
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    @property
    def done(self) -> int:
        """How many submitted operations are committed (or abandoned after an error)."""
        return self._done

    def submit(
        self,
        op: Callable[[sqlite3.Connection], object],
        after: Callable[[], None] | None = None,
    ) -> int:
        """Queue ``op`` (and ``after``, run once its transaction committed); returns the
        ticket for :meth:`wait`. Raises the writer's error if a write failed."""
        with self._cond:
            if self.error is not None:
                raise self.error
            if self._stopping:
                raise StoreError(f"The {self._file.what} {self._file.path} is closed.")
            self._queue.append((op, after))
            self._submitted += 1
            ticket = self._submitted
            self._cond.notify_all()
        return ticket

    def call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in the writer's next transaction and return its result once committed."""
        result = _Result()

        def op(conn: sqlite3.Connection) -> None:
            result.value = fn(conn)

        ticket = self.submit(op)
        self.wait(ticket)
        return result.value  # type: ignore[no-any-return]

    def run_now(self, op: Callable[[sqlite3.Connection], object]) -> None:
        """Apply ``op`` in its own transaction in the calling thread, durable when this
        returns (for writes that must not wait on the writer thread: answered requests)."""
        if self.error is not None:
            raise self.error
        _, error = self.try_now(op)
        if error is not None:
            with self._cond:
                self.error = error
                self._cond.notify_all()
            raise error

    def try_now(self, op: Callable[[sqlite3.Connection], object]) -> tuple[bool, StoreError | None]:
        """:meth:`run_now` that returns ``(committed, error)`` instead of stopping the
        writer: on a full disk ``error`` is set (``disk_full``) even when the freed reserve
        let ``op`` commit."""
        return self._apply([(op, None)])

    def _apply(
        self,
        batch: list[tuple[Callable[[sqlite3.Connection], object], Callable[[], None] | None]],
    ) -> tuple[bool, StoreError | None]:
        """:meth:`_transact`, and once more after freeing the reserve on a full disk."""
        error = self._transact(batch)
        if error is None:
            return True, None
        if error.disk_full and self._reserve is not None and self._reserve.release(error):
            again = self._transact(batch)
            return again is None, error if again is None else again
        return False, error

    def _transact(
        self,
        batch: list[tuple[Callable[[sqlite3.Connection], object], Callable[[], None] | None]],
    ) -> StoreError | None:
        """Apply ``batch``'s operations in one transaction, then their ``after`` callbacks;
        on any failure roll back and return it as a :class:`StoreError`."""
        conn = self._conn
        with self._exec_lock:
            try:
                conn.execute("BEGIN IMMEDIATE")
                for op, _ in batch:
                    op(conn)
                conn.execute("COMMIT")
                self.commits += 1
                for _, after in batch:
                    if after is not None:
                        after()
            except BaseException as exc:
                error = translate_error(exc, self._file)
                error.__cause__ = exc
                with contextlib.suppress(sqlite3.Error):
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                return error
        return None

    def wait(self, ticket: int | None = None) -> None:
        """Block until operation ``ticket`` (default: every one so far) is committed."""
        with self._cond:
            target = self._submitted if ticket is None else ticket
            self._cond.wait_for(lambda: self._done >= target or self.error is not None)
            if self.error is not None:
                raise self.error

    def stop(self) -> None:
        """Commit what is queued, then end the thread (errors stay in :attr:`error`)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join()

    def _loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: bool(self._queue) or self._stopping)
                if not self._queue:
                    return
                batch, self._queue = self._queue, []
            _, error = self._apply(batch)
            with self._cond:
                self._done += len(batch)
                if error is not None:
                    self.error = error
                    self._done = self._submitted + len(self._queue)
                    self._queue = []
                    self._stopping = True
                self._cond.notify_all()
            if error is not None:
                return


class Reader:
    """The caller-side connection, serialised by a lock (callers may be several threads)."""

    def __init__(self, conn: sqlite3.Connection, file: StoreFile) -> None:
        self._conn = conn
        self._file = file
        self._lock = threading.Lock()

    def all(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return self._conn.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise translate_error(exc, self._file) from exc

    def one(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> tuple[Any, ...] | None:
        rows = self.all(sql, params)
        return rows[0] if rows else None


def close_quietly(conn: sqlite3.Connection) -> None:
    """Close ``conn``; a close that fails (disk full on checkpoint) loses nothing committed."""
    with contextlib.suppress(sqlite3.Error):
        conn.close()


def now() -> float:
    return time.time()


__all__ = [
    "BUSY_TIMEOUT_MS",
    "Reader",
    "StoreFile",
    "Writer",
    "close_quietly",
    "connect",
    "ensure_schema",
    "now",
    "sync_mode",
    "translate_error",
]


class StoreHandle:
    """What both store files share on closing: the writer's queue is committed, the
    connections closed and the file lock dropped, in that order, whatever fails; used as a
    context manager, a store error on closing never hides the exception already in flight."""

    _writer: Writer
    _conns: tuple[sqlite3.Connection, ...]
    _lock: Any

    def close(self) -> None:
        raise NotImplementedError

    def _shut_down(self) -> None:
        try:
            self._writer.stop()
        finally:
            for conn in self._conns:
                close_quietly(conn)
            self._lock.release()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            self.close()
            return
        with contextlib.suppress(StoreError):  # the exception in flight is the one to see
            self.close()

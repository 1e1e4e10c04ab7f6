"""``RunStore``: one pipeline definition's committed batches, runs and step records.

Layout: ``<cache_dir>/pipelines/<name>-<signature[:16]>/`` holds ``store.sqlite`` (+ its WAL
files), ``run.lock`` and ``data/<leaf step>/`` (the leaf outputs the executor writes).

A *unit* is one committed output batch of a step, keyed by ``(step signature, seq)`` with
``seq = 0, 1, 2...`` in the step's output order. Units are written by a background thread, in
submission order, many per SQLite transaction; see :class:`RunStore` for what is durable when.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import sqlite3
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from alambic.errors import StoreError
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

T = TypeVar("T")

RUN_STORE_APPLICATION_ID = 0x416C5253  # "AlRS"
RUN_STORE_VERSION = 1
RUN_STATUSES = ("running", "finished", "failed", "interrupted")

_SCHEMA = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        status TEXT NOT NULL,
        started_at REAL NOT NULL,
        finished_at REAL,
        pid INTEGER NOT NULL,
        alambic_version TEXT NOT NULL
    )""",
    """CREATE TABLE steps (
        sig TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        definition TEXT,
        last_seq INTEGER,
        updated_at REAL NOT NULL
    )""",
    """CREATE TABLE run_steps (
        run_id INTEGER NOT NULL,
        sig TEXT NOT NULL,
        name TEXT NOT NULL,
        position INTEGER NOT NULL,
        PRIMARY KEY (run_id, sig)
    ) WITHOUT ROWID""",
    """CREATE TABLE units (
        sig TEXT NOT NULL,
        seq INTEGER NOT NULL,
        n_rows INTEGER NOT NULL,
        source_rows INTEGER,
        run_id INTEGER,
        committed_at REAL NOT NULL,
        data BLOB NOT NULL,
        PRIMARY KEY (sig, seq)
    )""",
)

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def pipeline_dir(cache_dir: Path, pipeline_name: str, pipeline_signature: str) -> Path:
    """The folder of one pipeline definition inside ``cache_dir``."""
    safe = _UNSAFE.sub("_", pipeline_name).strip("._") or "pipeline"
    return Path(cache_dir) / "pipelines" / f"{safe}-{pipeline_signature[:16]}"


def encode_rows(rows: list[dict[str, Any]]) -> bytes:
    """Rows as bytes: pickle protocol 5 is ~9x faster than JSON here and keeps ``bytes``."""
    return pickle.dumps(rows, protocol=5)


def decode_rows(data: bytes) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = pickle.loads(data)
    return rows


@dataclass(slots=True)
class _StepIndex:
    """What this process knows of a step's units, including those not yet written."""

    units: dict[int, tuple[int, int | None, int]] = field(default_factory=dict)
    """seq -> (rows, source_rows, writer ticket that makes it durable)"""
    last_seq: int | None = None
    contiguous: int = 0

    def add(self, seq: int, n_rows: int, source_rows: int | None, ticket: int) -> None:
        self.units[seq] = (n_rows, source_rows, ticket)
        while self.contiguous in self.units:
            self.contiguous += 1


def _alambic_version() -> str:
    from alambic import __version__

    return __version__


class RunStore(StoreHandle):
    """The store of one pipeline definition; one process at a time holds it (``run.lock``).

    Durability: :meth:`commit_unit` returns after queuing the unit; a writer thread commits
    queued units in submission order, each transaction holding whatever queued while the
    previous one committed (typically well under a millisecond behind). Ordering is the
    guarantee: once a unit is durable, every unit committed before it is too. Before a side
    effect outside this store depends on a unit (a parquet file, a message to another
    process), call :meth:`flush`, which returns once everything committed so far is in the
    database file. A SIGKILL loses only the queue of the last moments; never half a unit.

    Methods may be called from several threads (the executor's loop and its worker threads).

    Errors while writing (disk full, I/O) are raised as :class:`StoreError` by the next
    :meth:`commit_unit`, :meth:`flush` or :meth:`close`.
    """

    def __init__(
        self,
        *,
        run_dir: Path,
        file: StoreFile,
        lock: FileLock,
        pipeline_name: str,
        writer: Writer,
        reader: Reader,
        conns: tuple[sqlite3.Connection, sqlite3.Connection],
    ) -> None:
        self.run_dir = run_dir
        self.path = file.path
        self.pipeline_name = pipeline_name
        self._file = file
        self._lock = lock
        self._writer = writer
        self._reader = reader
        self._conns = conns
        self._steps: dict[str, _StepIndex] = {}
        self._run_id: int | None = None
        self._run_steps: set[str] = set()
        self._named_steps: set[str] = set()
        self._closed = False
        self._error_raised = False
        self._mutex = threading.RLock()

    # -- opening and closing ---------------------------------------------------------------

    @classmethod
    def open(
        cls,
        *,
        cache_dir: Path,
        pipeline_name: str,
        pipeline_signature: str,
        pipeline_yaml: str,
        lock_timeout: float = 0.0,
        reserve: DiskReserve | None = None,
    ) -> RunStore:
        """Open (or create) the store of a pipeline definition and take its run lock (a full
        disk is paid from ``reserve``, allocated by the caller).

        Raises :class:`StoreError` when another process holds the lock after
        ``lock_timeout`` seconds, or when the file is corrupt or from an incompatible version
        (never resetting it silently).
        """
        run_dir = pipeline_dir(cache_dir, pipeline_name, pipeline_signature)
        try:
            (run_dir / "data").mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"Cannot create the pipeline folder {run_dir} ({exc}). Set ALAMBIC_CACHE_DIR "
                "to a writable folder."
            ) from exc
        lock = FileLock(run_dir / "run.lock")
        if not lock.acquire(lock_timeout):
            pid = lock.holder_pid()
            who = f"pid {pid}" if pid is not None else "an unknown process"
            raise StoreError(
                f"Another run of pipeline {pipeline_name!r} ({who}) is using its store "
                f"{run_dir} (waited {lock_timeout:g} s). Two runs of one pipeline at once "
                "would compute the same batches twice: wait for it to finish (the lock is "
                f"released as soon as that process exits) or stop it"
                + (f" (kill {pid})" if pid is not None else "")
                + ", or pass a longer lock timeout to wait."
            )
        file = StoreFile(
            path=run_dir / "store.sqlite",
            what="run store",
            reset_hint=(
                f"delete the folder {run_dir} (this discards what runs of pipeline "
                f"{pipeline_name!r} committed; the request cache is kept), e.g. with "
                f"alambic.pipeline.runs.delete_run({pipeline_name!r})"
            ),
        )
        conns: list[sqlite3.Connection] = []
        try:
            writer_conn = connect(file)
            conns.append(writer_conn)
            ensure_schema(
                writer_conn,
                file,
                application_id=RUN_STORE_APPLICATION_ID,
                version=RUN_STORE_VERSION,
                schema=_SCHEMA,
            )
            meta = {
                "pipeline_name": pipeline_name,
                "pipeline_signature": pipeline_signature,
                "pipeline_yaml": pipeline_yaml,
            }
            try:
                writer_conn.execute("BEGIN IMMEDIATE")
                writer_conn.executemany(
                    "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", meta.items()
                )
                writer_conn.execute(
                    "INSERT OR IGNORE INTO meta(key, value) VALUES ('created_at', ?)",
                    (repr(now()),),
                )
                writer_conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise translate_error(exc, file) from exc
            reader_conn = connect(file)
            conns.append(reader_conn)
        except BaseException:
            for conn in conns:
                close_quietly(conn)
            lock.release()
            raise
        writer = Writer(writer_conn, file, name=f"alambic-store-{pipeline_name}", reserve=reserve)
        return cls(
            run_dir=run_dir,
            file=file,
            lock=lock,
            pipeline_name=pipeline_name,
            writer=writer,
            reader=Reader(reader_conn, file),
            conns=(writer_conn, reader_conn),
        )

    def flush(self) -> None:
        """Return once everything committed so far is in the database file (see class doc)."""
        self._check_open()
        self._tracked(self._writer.wait)

    def close(self) -> None:
        """Write what is queued, close the files and release the run lock (idempotent).

        Raises the writer's :class:`StoreError` if a write failed and no call raised it yet.
        """
        if self._closed:
            return
        self._closed = True
        self._shut_down()
        if self._writer.error is not None and not self._error_raised:
            raise self._writer.error

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"The run store {self.path} is closed.")
        if self._writer.error is not None:
            self._error_raised = True
            raise self._writer.error

    def _tracked(self, fn: Callable[..., T], *args: Any) -> T:
        """Call ``fn``, remembering that the writer's error reached the caller."""
        try:
            return fn(*args)
        except StoreError:
            self._error_raised = True
            raise

    def _submit(self, op: Callable[[sqlite3.Connection], object]) -> int:
        self._check_open()
        return self._tracked(self._writer.submit, op)

    # -- runs ------------------------------------------------------------------------------

    @property
    def run_id(self) -> int | None:
        """The id of the run begun by :meth:`begin_run`, if any."""
        return self._run_id

    def begin_run(self) -> int:
        """Record a new run with status ``"running"`` and return its id."""
        self._check_open()
        pid, version = os.getpid(), _alambic_version()

        def insert(conn: sqlite3.Connection) -> int:
            cur = conn.execute(
                "INSERT INTO runs(status, started_at, pid, alambic_version) "
                "VALUES ('running', ?, ?, ?)",
                (now(), pid, version),
            )
            return int(cur.lastrowid or 0)

        self._run_id = self._tracked(self._writer.call, insert)
        self._run_steps = set()
        return self._run_id

    def finish_run(
        self,
        status: str,
        *,
        failed_rows: int | None = None,
        spend: list[dict[str, Any]] | None = None,
    ) -> None:
        """Set the current run's final status and flush everything to the file.

        ``failed_rows``: rows of the run's output that carry an error (kept in the ``meta``
        table as ``failed_rows:<run id>``; ``list_runs`` shows ``finished with N failed``).
        ``spend``: what each (step, model) spent in this run (``spend:<run id>``, JSON)."""
        if status not in RUN_STATUSES[1:]:
            raise ValueError(
                f"Unknown run status {status!r}; use one of {', '.join(RUN_STATUSES[1:])}."
            )
        run_id = self._run_id
        if run_id is None:
            raise StoreError("finish_run() was called without begin_run().")
        at = now()

        def op(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE runs SET status = ?, finished_at = ? WHERE id = ?", (status, at, run_id)
            )
            if spend is not None:
                conn.execute(
                    "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
                    (f"spend:{run_id}", json.dumps(spend, default=str)),
                )
            if failed_rows is not None:
                conn.executemany(
                    "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
                    [
                        (f"failed_rows:{run_id}", str(failed_rows)),
                        ("failed_rows:last", str(failed_rows)),
                    ],
                )

        self._submit(op)
        self.flush()

    def failed_rows(self, run_id: int | None = None) -> int | None:
        """Failed rows recorded by run ``run_id`` (default: the last run that recorded any
        count); ``None`` when none was recorded."""
        key = "failed_rows:last" if run_id is None else f"failed_rows:{run_id}"
        row = self._reader.one("SELECT value FROM meta WHERE key = ?", (key,))
        return None if row is None else int(row[0])

    # -- steps and units -------------------------------------------------------------------

    def record_step(self, step_sig: str, step_name: str, definition: dict[str, Any]) -> None:
        """Keep a step's name and (secret-free) definition, for inspection."""
        text = json.dumps(definition, sort_keys=True, default=str)
        at, run_id, position = now(), self._run_id, len(self._run_steps)

        def op(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO steps(sig, name, definition, updated_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(sig) DO UPDATE SET name = excluded.name, "
                "definition = excluded.definition, updated_at = excluded.updated_at",
                (step_sig, step_name, text, at),
            )
            if run_id is not None:
                conn.execute(
                    "INSERT OR IGNORE INTO run_steps(run_id, sig, name, position) "
                    "VALUES (?, ?, ?, ?)",
                    (run_id, step_sig, step_name, position),
                )

        with self._mutex:
            self._submit(op)
            self._named_steps.add(step_sig)
            if run_id is not None:
                self._run_steps.add(step_sig)

    def _index(self, step_sig: str) -> _StepIndex:
        with self._mutex:
            index = self._steps.get(step_sig)
            if index is None:
                index = _StepIndex()
                for seq, n_rows, source_rows in self._reader.all(
                    "SELECT seq, n_rows, source_rows FROM units WHERE sig = ?", (step_sig,)
                ):
                    index.add(seq, n_rows, source_rows, 0)
                row = self._reader.one("SELECT last_seq FROM steps WHERE sig = ?", (step_sig,))
                index.last_seq = row[0] if row else None
                self._steps[step_sig] = index
            return index

    def commit_unit(
        self,
        step_sig: str,
        seq: int,
        rows: list[dict[str, Any]],
        *,
        step_name: str,
        source_rows: int | None = None,
        last: bool = False,
    ) -> None:
        """Commit one output batch of a step, atomically (see the class doc for durability).

        ``rows`` is serialised before this returns, so the caller may mutate it afterwards.
        ``source_rows`` (generators) is how many rows the step has produced up to and
        including this unit: the offset a resumed run starts from. ``last`` marks the step
        finished once every unit up to ``seq`` is committed.
        """
        self._check_open()
        try:
            blob = encode_rows(rows)
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            raise StoreError(
                f"Step {step_name!r} produced a batch that cannot be stored ({exc}). Row "
                "values must be plain data (str, int, float, bool, None, bytes, lists and "
                "dicts of them)."
            ) from exc
        with self._mutex:
            self._queue_unit(step_sig, seq, blob, len(rows), step_name, source_rows, last)

    def _queue_unit(
        self,
        step_sig: str,
        seq: int,
        blob: bytes,
        n_rows: int,
        step_name: str,
        source_rows: int | None,
        last: bool,
    ) -> None:
        index = self._index(step_sig)
        at, run_id = now(), self._run_id
        new_step = step_sig not in self._named_steps
        new_in_run = run_id is not None and step_sig not in self._run_steps
        position = len(self._run_steps)

        def op(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT OR REPLACE INTO units(sig, seq, n_rows, source_rows, run_id, "
                "committed_at, data) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (step_sig, seq, n_rows, source_rows, run_id, at, blob),
            )
            if new_step or last:
                conn.execute(
                    "INSERT INTO steps(sig, name, last_seq, updated_at) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT(sig) DO UPDATE SET name = excluded.name, "
                    "last_seq = coalesce(excluded.last_seq, steps.last_seq)",
                    (step_sig, step_name, seq if last else None, at),
                )
            if new_in_run:
                conn.execute(
                    "INSERT OR IGNORE INTO run_steps(run_id, sig, name, position) "
                    "VALUES (?, ?, ?, ?)",
                    (run_id, step_sig, step_name, position),
                )

        ticket = self._submit(op)
        index.add(seq, n_rows, source_rows, ticket)
        if last:
            index.last_seq = seq
        self._named_steps.add(step_sig)
        if run_id is not None:
            self._run_steps.add(step_sig)

    def committed_units(self, step_sig: str) -> int:
        """How many units of the step are committed contiguously from ``seq`` 0."""
        self._check_open()
        return self._index(step_sig).contiguous

    def unit_row_counts(self, step_sig: str) -> list[int]:
        """Rows per unit of the contiguous prefix, in ``seq`` order."""
        self._check_open()
        index = self._index(step_sig)
        return [index.units[seq][0] for seq in range(index.contiguous)]

    def load_unit(self, step_sig: str, seq: int) -> list[dict[str, Any]]:
        """The rows of a committed unit (waiting for the writer if it is still queued)."""
        self._check_open()
        index = self._index(step_sig)
        meta = index.units.get(seq)
        if meta is None:
            raise StoreError(
                f"Unit {seq} of step signature {step_sig[:16]} is not committed in {self.path} "
                f"({index.contiguous} contiguous units are)."
            )
        if meta[2] > self._writer.done:
            self._tracked(self._writer.wait, meta[2])
        row = self._reader.one("SELECT data FROM units WHERE sig = ? AND seq = ?", (step_sig, seq))
        if row is None:
            raise StoreError(
                f"Unit {seq} of step signature {step_sig[:16]} vanished from {self.path}: was "
                "the store deleted while the run was going on?"
            )
        try:
            return decode_rows(row[0])
        except Exception as exc:
            raise StoreError(
                f"Unit {seq} of step signature {step_sig[:16]} in {self.path} cannot be read "
                f"({exc}). To start over, {self._file.reset_hint}."
            ) from exc

    def iter_rows(self, step_sig: str) -> Iterator[dict[str, Any]]:
        """Every row of the contiguous committed units, in order (for building outputs)."""
        for seq in range(self.committed_units(step_sig)):
            yield from self.load_unit(step_sig, seq)

    def generator_offset(self, step_sig: str) -> int:
        """Rows a generator had produced by its last committed unit (0 if none)."""
        self._check_open()
        index = self._index(step_sig)
        if index.contiguous == 0:
            return 0
        source_rows = index.units[index.contiguous - 1][1]
        if source_rows is not None:
            return source_rows
        return sum(index.units[seq][0] for seq in range(index.contiguous))

    def step_finished(self, step_sig: str) -> bool:
        """Whether the step's last unit and every unit before it are committed."""
        self._check_open()
        index = self._index(step_sig)
        return index.last_seq is not None and index.contiguous > index.last_seq

    def invalidate_step(self, step_sig: str) -> None:
        """Drop every unit of the step, so that it runs again (``use_cache=False``).

        Successors' signatures do not change with this, so the caller invalidates them too.
        """
        with self._mutex:
            self._submit(
                lambda conn: (
                    conn.execute("DELETE FROM units WHERE sig = ?", (step_sig,)),
                    conn.execute("UPDATE steps SET last_seq = NULL WHERE sig = ?", (step_sig,)),
                )
            )
            self._steps[step_sig] = _StepIndex()

    def prune_steps(self, keep: set[str]) -> int:
        """Delete the units of every step signature not in ``keep``; returns units deleted.

        Steps whose definition changed leave their old units behind; this reclaims them.
        """
        marks = ",".join("?" * len(keep))
        where = f"sig NOT IN ({marks})" if keep else "1"

        def op(conn: sqlite3.Connection) -> int:
            n = conn.execute(f"DELETE FROM units WHERE {where}", tuple(keep)).rowcount
            conn.execute(f"UPDATE steps SET last_seq = NULL WHERE {where}", tuple(keep))
            return int(n)

        self._check_open()
        deleted = self._tracked(self._writer.call, op)
        for sig in [s for s in self._steps if s not in keep]:
            del self._steps[sig]
        return int(deleted)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"RunStore({self.pipeline_name!r}, {self.path}, {state})"


__all__ = [
    "RUN_STATUSES",
    "RUN_STORE_APPLICATION_ID",
    "RUN_STORE_VERSION",
    "RunStore",
    "decode_rows",
    "encode_rows",
    "pipeline_dir",
]

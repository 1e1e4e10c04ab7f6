"""Inspect and clean what the run store keeps: runs, their status and rows, the request cache.

Reading never takes a pipeline's run lock, so it works while a pipeline runs (SQLite's WAL
mode lets readers and the writer work side by side). Deleting takes the lock and refuses to
touch a pipeline that is running.

    from alambic.pipeline.runs import list_runs, show_run, delete_run, clear_cache

    for run in list_runs():
        print(run.pipeline_name, run.run_id, run.status, run.rows_per_step)
    details = show_run("my-pipeline")           # its latest run
    delete_run("my-pipeline", run_id=3)         # one run and the batches it committed
    clear_cache(requests=False)                 # every pipeline's store, keep LLM answers
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

from alambic.errors import StoreError, row_errors
from alambic.pipeline.store import REQUEST_CACHE_FILENAME, default_cache_dir
from alambic.pipeline.store._lock import FileLock, pid_alive
from alambic.pipeline.store._sqlite import StoreFile, close_quietly, connect, translate_error
from alambic.pipeline.store.run_store import RUN_STORE_APPLICATION_ID, RUN_STORE_VERSION

STORE_FILENAME = "store.sqlite"
LOCK_FILENAME = "run.lock"
DEFINITION_ID_LENGTH = 8


@dataclass(frozen=True, slots=True)
class StepRows:
    """One step of a run: how many rows and units are committed for it."""

    name: str
    signature: str
    rows: int
    """Rows committed for the step's current definition (by this run or earlier ones)."""
    units: int
    rows_this_run: int
    """Rows this run committed itself (0 for a step answered entirely from earlier runs)."""
    finished: bool


@dataclass(frozen=True, slots=True)
class RunInfo:
    """One run of one pipeline definition.

    ``status`` is what the run recorded (``running``, ``finished``, ``failed``,
    ``interrupted``), except ``crashed`` for a run recorded as running whose process is
    gone (killed), and ``unreadable`` for a store that could not be read (see ``error``).
    """

    pipeline_name: str
    pipeline_signature: str
    run_id: int
    status: str
    started_at: datetime | None
    finished_at: datetime | None
    pid: int | None
    steps: tuple[StepRows, ...]
    path: Path
    """The pipeline's folder in the cache."""
    error: str | None = None
    failed_rows: int | None = None
    """Rows of the leaf steps that this run committed with an error recorded (``None``: the
    store could not say)."""
    spend: tuple[dict[str, Any], ...] | None = None
    """What each (step, model) spent in this run: ``step``, ``model``, ``requests``,
    ``input_tokens``, ``output_tokens``, ``cached_tokens`` (when some), ``usd`` (``None``:
    the price is unknown) and ``price`` (its source). ``None``: not recorded (the run is
    still going, was killed, or was made by an older alambic)."""

    @property
    def cost_usd(self) -> float | None:
        """What this run's requests cost in USD: ``None`` when not recorded or when a price
        is unknown (see :attr:`cost_known`), never a made-up 0."""
        if not self.cost_known:
            return None
        return float(sum(Decimal(str(entry["usd"])) for entry in self.spend or ()))

    @property
    def cost_known(self) -> bool:
        """Whether the run recorded its spending with every price known."""
        return self.spend is not None and all(e.get("usd") is not None for e in self.spend)

    @property
    def rows_per_step(self) -> dict[str, int]:
        """Rows committed per step for this definition (by this run or earlier ones)."""
        return {step.name: step.rows for step in self.steps}

    @property
    def rows_this_run(self) -> dict[str, int]:
        """Rows this run committed itself, per step."""
        return {step.name: step.rows_this_run for step in self.steps}

    @property
    def definition_id(self) -> str:
        """A short id of the pipeline definition (what ``alambic runs list`` prints)."""
        return self.pipeline_signature[:DEFINITION_ID_LENGTH]

    @property
    def ref(self) -> str:
        """``<definition id>/<run id>``: names this run for ``show_run`` and ``delete_run``."""
        return f"{self.definition_id}/{self.run_id}"


@dataclass(frozen=True, slots=True)
class RunDetails:
    """A run with what :func:`show_run` adds: the pipeline's YAML and step definitions."""

    run: RunInfo
    pipeline_yaml: str
    definitions: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Step name -> its serialised definition (secrets masked)."""


# -- reading -----------------------------------------------------------------------------


def _pipeline_dirs(cache_dir: Path) -> list[Path]:
    root = cache_dir / "pipelines"
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if (p / STORE_FILENAME).is_file())


def _file(folder: Path) -> StoreFile:
    return StoreFile(
        path=folder / STORE_FILENAME,
        what="run store",
        reset_hint=f"delete the folder {folder}",
    )


@contextlib.contextmanager
def _read_only(folder: Path) -> Iterator[sqlite3.Connection]:
    file = _file(folder)
    try:
        conn = sqlite3.connect(f"{file.path.as_uri()}?mode=ro", uri=True, timeout=30)
    except sqlite3.Error as exc:
        raise translate_error(exc, file) from exc
    try:
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if app_id != RUN_STORE_APPLICATION_ID or version != RUN_STORE_VERSION:
            raise StoreError(
                f"{file.path} is not a run store this version of alambic can read (application "
                f"id {app_id:#x}, format {version}; expected {RUN_STORE_APPLICATION_ID:#x}, "
                f"format {RUN_STORE_VERSION}). To reset it, delete the folder {folder}."
            )
        yield conn
    except sqlite3.Error as exc:
        raise translate_error(exc, file) from exc
    finally:
        close_quietly(conn)


def _when(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, tz=timezone.utc)


def _lock_holder(folder: Path) -> int | None:
    return FileLock(folder / LOCK_FILENAME).holder_pid()


def _status(recorded: str, pid: int | None, holder: int | None) -> str:
    if recorded != "running":
        return recorded
    if pid is not None and pid == holder and pid_alive(pid):
        return "running"
    return "crashed"


def _read_runs(
    folder: Path, run_id: int | None = None
) -> tuple[list[RunInfo], str, dict[str, Any]]:
    with _read_only(folder) as conn:
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        name = meta.get("pipeline_name", folder.name)
        signature = meta.get("pipeline_signature", "")
        query = "SELECT id, status, started_at, finished_at, pid FROM runs"
        params: tuple[Any, ...] = ()
        if run_id is not None:
            query += " WHERE id = ?"
            params = (run_id,)
        runs = conn.execute(query + " ORDER BY id", params).fetchall()
        totals = {
            sig: (rows, units)
            for sig, rows, units in conn.execute(
                "SELECT sig, coalesce(sum(n_rows), 0), count(*) FROM units GROUP BY sig"
            )
        }
        per_run = {
            (rid, sig): rows
            for rid, sig, rows in conn.execute(
                "SELECT run_id, sig, sum(n_rows) FROM units GROUP BY run_id, sig"
            )
        }
        steps_meta = {
            sig: (step_name, last_seq, definition)
            for sig, step_name, last_seq, definition in conn.execute(
                "SELECT sig, name, last_seq, definition FROM steps"
            )
        }
        run_steps: dict[int, list[tuple[str, str]]] = {}
        for rid, sig, step_name in conn.execute(
            "SELECT run_id, sig, name FROM run_steps ORDER BY run_id, position"
        ):
            run_steps.setdefault(rid, []).append((sig, step_name))
        leaves = _leaf_names(meta.get("pipeline_yaml", ""))
        failed = {
            rid: _stored_count(meta, rid)
            if _stored_count(meta, rid) is not None
            else _count_failed(conn, rid, [s for s, n in pairs if n in leaves])
            for rid, pairs in run_steps.items()
            if leaves is not None and (run_id is None or rid == run_id)
        }
    holder = _lock_holder(folder)
    infos = []
    for rid, status, started, finished, pid in runs:
        steps = []
        for sig, step_name in run_steps.get(rid, []):
            rows, units = totals.get(sig, (0, 0))
            last_seq = steps_meta.get(sig, (step_name, None, None))[1]
            steps.append(
                StepRows(
                    name=step_name,
                    signature=sig,
                    rows=int(rows),
                    units=int(units),
                    rows_this_run=int(per_run.get((rid, sig), 0)),
                    finished=last_seq is not None and units > last_seq,
                )
            )
        infos.append(
            RunInfo(
                pipeline_name=name,
                pipeline_signature=signature,
                run_id=rid,
                status=_with_failures(_status(status, pid, holder), failed.get(rid)),
                started_at=_when(started),
                finished_at=_when(finished),
                pid=pid,
                steps=tuple(steps),
                path=folder,
                failed_rows=failed.get(rid),
                spend=_stored_spend(meta, rid),
            )
        )
    definitions: dict[str, Any] = {}
    for step_name, _, definition in steps_meta.values():
        if definition is not None:
            definitions[step_name] = json.loads(definition)
    return infos, meta.get("pipeline_yaml", ""), definitions


def _stored_count(meta: dict[str, Any], run_id: int) -> int | None:
    """The failed-row count the run recorded when it finished (``None`` for older runs)."""
    value = meta.get(f"failed_rows:{run_id}")
    return None if value is None else int(value)


def _stored_spend(meta: dict[str, Any], run_id: int) -> tuple[dict[str, Any], ...] | None:
    """What the run recorded it spent when it ended (``None``: nothing recorded)."""
    value = meta.get(f"spend:{run_id}")
    if value is None:
        return None
    try:
        entries = json.loads(value)
    except ValueError:
        return None
    return tuple(e for e in entries if isinstance(e, dict)) if isinstance(entries, list) else None


def _with_failures(status: str, failed: int | None) -> str:
    """A finished run with failed rows never reads as plain ``finished``."""
    if status == "finished" and failed:
        return f"finished with {failed} failed"
    return status


def _leaf_names(pipeline_yaml: str) -> set[str] | None:
    import yaml

    try:
        data: Any = yaml.safe_load(pipeline_yaml) if pipeline_yaml else None
        steps = data["pipeline"]["steps"]
        return {str(s["name"]) for s in steps if not s.get("connections")}
    except (yaml.YAMLError, KeyError, TypeError):
        return None


def _count_failed(conn: sqlite3.Connection, run_id: int, sigs: list[str]) -> int:
    """Rows with an error in their metadata among the units ``run_id`` committed for ``sigs``."""
    from alambic.pipeline.store.run_store import decode_rows

    count = 0
    for sig in sigs:
        for (blob,) in conn.execute(
            "SELECT data FROM units WHERE sig = ? AND run_id = ? ORDER BY seq", (sig, run_id)
        ):
            count += sum(1 for row in decode_rows(blob) if row_failed(row))
    return count


def row_failed(row: dict[str, Any]) -> bool:
    return bool(row_errors(row))


def _unreadable(folder: Path, error: StoreError) -> RunInfo:
    name, _, sig = folder.name.rpartition("-")
    return RunInfo(
        pipeline_name=name or folder.name,
        pipeline_signature=sig,
        run_id=0,
        status="unreadable",
        started_at=None,
        finished_at=None,
        pid=None,
        steps=(),
        path=folder,
        error=str(error),
    )


def list_runs(cache_dir: Path | str | None = None) -> list[RunInfo]:
    """Every run of every pipeline in the cache, oldest first within each pipeline.

    A store that cannot be read shows as one entry with status ``unreadable`` and the reason
    (and the fix) in ``error``, so one broken store does not hide the others.
    """
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    result: list[RunInfo] = []
    for folder in _pipeline_dirs(root):
        try:
            result.extend(_read_runs(folder)[0])
        except StoreError as exc:
            result.append(_unreadable(folder, exc))
    return result


def _matching_dirs(root: Path, pipeline: str) -> list[Path]:
    folders = _pipeline_dirs(root)
    exact = [f for f in folders if f.name == pipeline]
    if exact:
        return exact
    found = []
    for folder in folders:
        name, _, sig = folder.name.rpartition("-")
        stored_name = name
        with contextlib.suppress(StoreError, sqlite3.Error), _read_only(folder) as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = 'pipeline_name'").fetchone()
            stored_name = row[0] if row else name
        if pipeline in (stored_name, name) or (len(pipeline) >= 6 and sig.startswith(pipeline)):
            found.append(folder)
    return found


def split_ref(ref: str, run_id: int | None) -> tuple[str, int | None]:
    """``name``, ``definition id``, ``folder`` with an optional ``/RUN`` (as ``list`` prints)."""
    head, sep, tail = ref.rpartition("/")
    if sep and tail.isdigit() and head:
        if run_id is not None and run_id != int(tail):
            raise StoreError(f"{ref!r} names run {tail}, but run {run_id} was also asked for.")
        return head, int(tail)
    return ref, run_id


def _resolve(root: Path, pipeline: str) -> list[Path]:
    folders = _matching_dirs(root, pipeline)
    if not folders:
        known = sorted({f.name for f in _pipeline_dirs(root)})
        listing = ", ".join(known) if known else "none"
        raise StoreError(
            f"No pipeline {pipeline!r} in the cache {root}. Pipelines there: {listing}. "
            "Give a pipeline name, a definition id or DEFINITION/RUN as `alambic runs list` "
            "prints them, or a folder name."
        )
    return folders


def show_run(
    pipeline: str, run_id: int | None = None, *, cache_dir: Path | str | None = None
) -> RunDetails:
    """One run of ``pipeline`` (a name, folder name or signature prefix); default: the latest.

    When several definitions of a pipeline share its name, the latest run among them is
    shown; give the folder name to choose another.
    """
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    pipeline, run_id = split_ref(pipeline, run_id)
    candidates: list[RunDetails] = []
    for folder in _resolve(root, pipeline):
        infos, yaml_text, definitions = _read_runs(folder, run_id)
        candidates.extend(RunDetails(info, yaml_text, definitions) for info in infos)
    if not candidates:
        which = f"run {run_id}" if run_id is not None else "any run"
        raise StoreError(f"Pipeline {pipeline!r} in {root} has no {which} recorded.")
    if run_id is not None and len(candidates) > 1:
        folders = ", ".join(c.run.path.name for c in candidates)
        raise StoreError(
            f"Run {run_id} exists for several definitions of pipeline {pipeline!r} ({folders}): "
            "give DEFINITION/RUN as `alambic runs list` prints it (or the folder name)."
        )
    return max(candidates, key=lambda c: (c.run.started_at or _EPOCH, c.run.run_id))


_EPOCH = datetime.fromtimestamp(0, tz=timezone.utc)


# -- deleting ------------------------------------------------------------------------------


def _lock_or_fail(folder: Path) -> FileLock:
    lock = FileLock(folder / LOCK_FILENAME)
    if not lock.acquire(0.0):
        pid = lock.holder_pid()
        raise StoreError(
            f"The pipeline in {folder} is running (pid {pid}); nothing was deleted. Wait for "
            "it to finish or stop it, then try again."
        )
    return lock


def delete_run(
    pipeline: str, run_id: int | None = None, *, cache_dir: Path | str | None = None
) -> int:
    """Delete one run (with the batches it committed), or every run of ``pipeline``.

    Without ``run_id``, the pipeline's whole folder goes: runs, committed batches and leaf
    outputs. With it, that run's record and the units it committed are removed, so a later
    run recomputes them, and the leaf outputs of the affected steps are removed too (they are
    rebuilt from the store). Returns the number of runs deleted. Refuses to touch a pipeline
    that is running.
    """
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    pipeline, run_id = split_ref(pipeline, run_id)
    folders = _resolve(root, pipeline)
    if run_id is None:
        deleted = 0
        locks = [_lock_or_fail(folder) for folder in folders]
        try:
            for folder in folders:
                with contextlib.suppress(StoreError):
                    deleted += len(_read_runs(folder)[0])
                shutil.rmtree(folder)
        finally:
            for lock in locks:
                lock.release()
        return deleted
    owners = [f for f in folders if _has_run(f, run_id)]
    if not owners:
        raise StoreError(f"Pipeline {pipeline!r} in {root} has no run {run_id}.")
    if len(owners) > 1:
        names = ", ".join(f.name for f in owners)
        raise StoreError(
            f"Run {run_id} exists for several definitions of pipeline {pipeline!r} ({names}): "
            "give DEFINITION/RUN as `alambic runs list` prints it (or the folder name)."
        )
    folder = owners[0]
    lock = _lock_or_fail(folder)
    try:
        _delete_one_run(folder, run_id)
    finally:
        lock.release()
    return 1


def _has_run(folder: Path, run_id: int) -> bool:
    with contextlib.suppress(StoreError), _read_only(folder) as conn:
        return conn.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is not None
    return False


def _delete_one_run(folder: Path, run_id: int) -> None:
    file = _file(folder)
    conn = connect(file)
    try:
        conn.execute("BEGIN IMMEDIATE")
        affected = conn.execute(
            "SELECT DISTINCT u.sig, s.name FROM units u LEFT JOIN steps s ON s.sig = u.sig "
            "WHERE u.run_id = ?",
            (run_id,),
        ).fetchall()
        conn.execute("DELETE FROM units WHERE run_id = ?", (run_id,))
        conn.execute(
            "UPDATE steps SET last_seq = NULL WHERE last_seq IS NOT NULL AND NOT EXISTS "
            "(SELECT 1 FROM units u WHERE u.sig = steps.sig AND u.seq = steps.last_seq)"
        )
        conn.execute("DELETE FROM run_steps WHERE run_id = ?", (run_id,))
        conn.execute("DELETE FROM runs WHERE id = ?", (run_id,))
        conn.execute("COMMIT")
    except sqlite3.Error as exc:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise translate_error(exc, file) from exc
    finally:
        close_quietly(conn)
    for _, step_name in affected:
        if step_name:
            target = folder / "data" / step_name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()


def clear_cache(
    cache_dir: Path | str | None = None, *, requests: bool = True, pipelines: bool = True
) -> None:
    """Delete the shared request cache and/or every pipeline's store.

    All or nothing: if a pipeline is running (or the request cache is open in a running
    process), nothing is deleted and :class:`StoreError` says which.
    """
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    locks: list[FileLock] = []
    try:
        folders = []
        if pipelines and (root / "pipelines").is_dir():
            folders = sorted(p for p in (root / "pipelines").iterdir() if p.is_dir())
            for folder in folders:
                locks.append(_lock_or_fail(folder))
        request_file = root / REQUEST_CACHE_FILENAME
        if requests:
            lock = FileLock(request_file.with_name(request_file.name + ".lock"))
            if not lock.acquire(0.0):
                raise StoreError(
                    f"The request cache {request_file} is open in a running alambic process; "
                    "nothing was deleted. Try again once it has finished."
                )
            locks.append(lock)
        for folder in folders:
            shutil.rmtree(folder)
        if requests:
            for suffix in ("", "-wal", "-shm", ".lock"):
                request_file.with_name(request_file.name + suffix).unlink(missing_ok=True)
    finally:
        for held in locks:
            held.release()


__all__ = [
    "RunDetails",
    "RunInfo",
    "StepRows",
    "clear_cache",
    "delete_run",
    "list_runs",
    "row_failed",
    "show_run",
    "split_ref",
]

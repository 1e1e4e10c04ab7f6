"""The run store's bad cases: corrupt or foreign files, other versions, two runs at once, a full
disk, and SIGKILL at any instant. Each must end in a clear error or an intact store."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from alambic.errors import StoreError
from alambic.pipeline.store import RequestCacheStore, RunStore

SIG = "fedcba9876543210" * 4
A = "a" * 64


def open_store(cache_dir: Path, **kwargs: Any) -> RunStore:
    return RunStore.open(
        cache_dir=cache_dir,
        pipeline_name="demo",
        pipeline_signature=SIG,
        pipeline_yaml="pipeline: {name: demo}\n",
        **kwargs,
    )


def unit_rows(seq: int, n: int = 50, width: int = 40) -> list[dict[str, Any]]:
    return [{"seq": seq, "i": i, "text": f"{seq}-{i}-" + "x" * width} for i in range(n)]


_CHILD_PRELUDE = """
import os, sys, time
from pathlib import Path
from alambic.pipeline.store import RunStore, RequestCacheStore
cache_dir = Path(sys.argv[1])
def unit_rows(seq, n=50, width=40):
    return [{"seq": seq, "i": i, "text": f"{seq}-{i}-" + "x" * width} for i in range(n)]
def open_store(**kw):
    return RunStore.open(cache_dir=cache_dir, pipeline_name="demo",
                         pipeline_signature="fedcba9876543210" * 4,
                         pipeline_yaml="pipeline: {name: demo}\\n", **kw)
def say(*parts):
    print(*parts, flush=True)
"""


class Child:
    """A Python subprocess running ``code`` after the prelude, talking line by line."""

    def __init__(self, code: str, *args: str) -> None:
        script = _CHILD_PRELUDE + textwrap.dedent(code)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", script, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def read_line(self, timeout: float = 30.0) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            err = self.proc.stderr.read() if self.proc.stderr else ""
            raise AssertionError(f"child ended without output: {err}")
        return line.strip()

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def wait(self) -> int:
        return self.proc.wait(timeout=60)


@pytest.fixture
def children() -> Iterator[list[Child]]:
    started: list[Child] = []
    yield started
    for child in started:
        child.kill()
        for stream in (child.proc.stdin, child.proc.stdout, child.proc.stderr):
            if stream is not None:
                stream.close()


# -- corrupt, foreign and incompatible files ----------------------------------------------


def test_garbage_store_file_raises_with_its_path_and_the_fix(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        path, run_dir = store.path, store.run_dir
    path.write_bytes(b"this is not a database, just garbage\x00\xff" * 200)
    for _ in range(2):  # the failed open released the lock: same error, not "locked"
        with pytest.raises(StoreError) as info:
            open_store(tmp_path)
        message = str(info.value)
        assert str(path) in message
        assert "corrupt" in message
        assert f"delete the folder {run_dir}" in message
    assert path.read_bytes().startswith(b"this is not a database")  # never reset silently


def test_store_with_damaged_pages_raises_instead_of_losing_rows(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        for seq in range(30):
            store.commit_unit(A, seq, unit_rows(seq, width=400), step_name="a")
        path = store.path
    data = bytearray(path.read_bytes())
    page = 4096
    assert len(data) > 20 * page
    data[2 * page : len(data) - page] = os.urandom(len(data) - 3 * page)
    path.write_bytes(bytes(data))

    def read_everything() -> None:
        with open_store(tmp_path) as store:
            for seq in range(store.committed_units(A)):
                store.load_unit(A, seq)

    with pytest.raises(StoreError, match="corrupt") as info:
        read_everything()
    assert str(path) in str(info.value)


def test_sqlite_file_of_another_program_is_not_touched(tmp_path: Path) -> None:
    run_dir = tmp_path / "pipelines" / f"demo-{SIG[:16]}"
    run_dir.mkdir(parents=True)
    with sqlite3.connect(run_dir / "store.sqlite") as conn:
        conn.execute("CREATE TABLE mine (x)")
        conn.execute("INSERT INTO mine VALUES (42)")
    with pytest.raises(StoreError, match="not an alambic run store") as info:
        open_store(tmp_path)
    assert str(run_dir / "store.sqlite") in str(info.value)
    with sqlite3.connect(run_dir / "store.sqlite") as conn:
        assert conn.execute("SELECT x FROM mine").fetchall() == [(42,)]


def test_store_from_another_version_raises(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        store.commit_unit(A, 0, unit_rows(0), step_name="a")
        path, run_dir = store.path, store.run_dir
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 99")
    with pytest.raises(StoreError) as info:
        open_store(tmp_path)
    message = str(info.value)
    assert "newer version of alambic (store format 99" in message
    assert str(path) in message
    assert f"delete the folder {run_dir}" in message
    with sqlite3.connect(path) as conn:  # the data is still there
        assert conn.execute("SELECT count(*) FROM units").fetchone()[0] == 1


def test_request_cache_corrupt_or_other_version(tmp_path: Path) -> None:
    path = tmp_path / "requests.sqlite"
    with RequestCacheStore.open(path) as cache:
        cache.put_many([("k", {"text": "t", "input_tokens": 1, "output_tokens": 1})])
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 0")
    with pytest.raises(StoreError, match=r"older version of alambic \(store format 0") as info:
        RequestCacheStore.open(path)
    assert "clear_cache(pipelines=False)" in str(info.value)
    path.write_bytes(b"\x01" * 5000)
    for suffix in ("-wal", "-shm"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)
    with pytest.raises(StoreError, match=r"request cache .* is corrupt"):
        RequestCacheStore.open(path)


# -- two runs at once ---------------------------------------------------------------------


def test_second_open_in_the_same_process_fails_naming_the_pid(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        store.commit_unit(A, 0, unit_rows(0), step_name="a")
        with pytest.raises(StoreError) as info:
            open_store(tmp_path)
        message = str(info.value)
        assert f"Another run of pipeline 'demo' (pid {os.getpid()})" in message
        assert str(store.run_dir) in message
        store.commit_unit(A, 1, unit_rows(1), step_name="a")
    with open_store(tmp_path) as store:
        assert store.committed_units(A) == 2


def test_second_run_fails_or_waits_for_the_first(tmp_path: Path, children: list[Child]) -> None:
    holder = Child(
        """
        store = open_store()
        store.begin_run()
        store.commit_unit("a" * 64, 0, unit_rows(0), step_name="a")
        store.flush()
        say("locked", os.getpid())
        sys.stdin.readline()
        time.sleep(0.3)
        store.commit_unit("a" * 64, 1, unit_rows(1), step_name="a")
        store.finish_run("finished")
        store.close()
        """,
        str(tmp_path),
    )
    children.append(holder)
    word, pid = holder.read_line().split()
    assert word == "locked"
    with pytest.raises(StoreError, match=rf"Another run of pipeline 'demo' \(pid {pid}\)"):
        open_store(tmp_path, lock_timeout=0)
    holder.send("go")
    started = time.monotonic()
    with open_store(tmp_path, lock_timeout=30) as store:
        waited = time.monotonic() - started
        assert store.committed_units(A) == 2
        assert store.load_unit(A, 1) == unit_rows(1)
    assert waited >= 0.2
    assert holder.wait() == 0


def test_lock_of_a_killed_run_is_released(tmp_path: Path, children: list[Child]) -> None:
    holder = Child(
        """
        store = open_store()
        say("locked")
        time.sleep(60)
        """,
        str(tmp_path),
    )
    children.append(holder)
    assert holder.read_line() == "locked"
    holder.kill()
    with open_store(tmp_path, lock_timeout=0) as store:
        assert store.committed_units(A) == 0


# -- SIGKILL at any instant -----------------------------------------------------------------


def test_sigkill_while_committing_leaves_whole_contiguous_units(
    tmp_path: Path, children: list[Child]
) -> None:
    writer = Child(
        """
        store = open_store()
        store.begin_run()
        seq = 0
        while True:
            store.commit_unit("a" * 64, seq, unit_rows(seq), step_name="a")
            if seq % 20 == 19:
                store.flush()
                say("flushed", seq + 1)
            seq += 1
        """,
        str(tmp_path),
    )
    children.append(writer)
    flushed = 0
    while flushed < 200:
        _, count = writer.read_line().split()
        flushed = int(count)
    writer.kill()
    with open_store(tmp_path, lock_timeout=0) as store:
        committed = store.committed_units(A)
        assert committed >= flushed  # everything flushed before the kill is there
        assert store.unit_row_counts(A) == [50] * committed
        for seq in range(committed):
            assert store.load_unit(A, seq) == unit_rows(seq)
        path = store.path
    with sqlite3.connect(path) as conn:
        seqs = [s for (s,) in conn.execute("SELECT seq FROM units ORDER BY seq")]
    assert seqs == list(range(committed))  # nothing past the contiguous prefix


def test_sigkill_loses_at_most_the_last_moments_of_answers(
    tmp_path: Path, children: list[Child]
) -> None:
    writer = Child(
        """
        cache = RequestCacheStore.open(cache_dir / "requests.sqlite")
        i = 0
        while True:
            cache.put_many([(f"key{i}", {"text": f"answer {i}", "input_tokens": 1,
                                         "output_tokens": 2})])
            say(i)
            i += 1
            time.sleep(0.002)
        """,
        str(tmp_path),
    )
    children.append(writer)
    last = -1
    while last < 150:
        last = int(writer.read_line())
    writer.kill()
    with RequestCacheStore.open(tmp_path / "requests.sqlite") as cache:
        found = cache.get_many([f"key{i}" for i in range(last + 1)])
    missing = [i for i, f in enumerate(found) if f is None]
    assert len(missing) <= 5, missing
    assert all(i >= last - 5 for i in missing), missing
    assert found[0] == {"text": "answer 0", "input_tokens": 1, "output_tokens": 2}


# -- the disk fills up ------------------------------------------------------------------------


def test_disk_full_stops_with_a_clear_error_and_keeps_what_was_committed(
    tmp_path: Path,
) -> None:
    store = open_store(tmp_path)
    store.begin_run()
    pages = store._writer.call(lambda conn: conn.execute("PRAGMA page_count").fetchone()[0])
    store._writer.submit(lambda conn: conn.execute(f"PRAGMA max_page_count = {pages + 40}"))
    durable = 0

    def commit_until_full() -> None:
        nonlocal durable
        for seq in range(200):
            store.commit_unit(A, seq, unit_rows(seq, width=200), step_name="a")
            store.flush()
            durable = seq + 1

    with pytest.raises(StoreError) as info:
        commit_until_full()
    message = str(info.value)
    assert message.startswith("Disk full while writing the run store")
    assert str(store.path) in message
    assert "resumes from the committed batches" in message
    assert 0 < durable < 200
    with pytest.raises(StoreError, match="Disk full"):  # the store stays stopped
        store.commit_unit(A, durable + 1, unit_rows(0), step_name="a")
    store.close()  # already reported: releases the lock without raising again
    with open_store(tmp_path) as store:
        assert store.committed_units(A) == durable
        assert [store.load_unit(A, s) for s in range(durable)] == [
            unit_rows(s, width=200) for s in range(durable)
        ]
        store.commit_unit(A, durable, unit_rows(durable), step_name="a")  # resumes


def test_request_cache_disk_full_raises(tmp_path: Path) -> None:
    cache = RequestCacheStore.open(tmp_path / "requests.sqlite")
    pages = cache._writer.call(lambda conn: conn.execute("PRAGMA page_count").fetchone()[0])
    cache._writer.submit(lambda conn: conn.execute(f"PRAGMA max_page_count = {pages + 5}"))

    def put_until_full() -> None:
        for i in range(500):
            text = f"{i} " + "y" * 2000
            cache.put_many([(f"k{i}", {"text": text, "input_tokens": 1, "output_tokens": 1})])
            cache.flush()

    with pytest.raises(StoreError, match="Disk full while writing the request cache"):
        put_until_full()
    with pytest.raises(StoreError, match="Disk full"):
        cache.close()


def _can_mount_tmpfs(where: Path) -> bool:
    if os.geteuid() != 0:
        return False
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(where)], capture_output=True
    )
    if done.returncode != 0:
        return False
    subprocess.run(["umount", str(where)], check=True)
    return True


@pytest.mark.slow
def test_real_full_disk_then_resume(tmp_path: Path, children: list[Child]) -> None:
    mount = tmp_path / "small-disk"
    if not _can_mount_tmpfs(mount):
        pytest.skip("mounting a tmpfs needs root (the max_page_count test covers SQLITE_FULL)")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], check=True)
    try:
        cache_dir = mount / "cache"
        filler = mount / "filler"
        filler.write_bytes(b"\0" * (1024 * 1024))
        writer = Child(
            """
            from alambic.errors import StoreError
            store = open_store()
            store.begin_run()
            durable = 0
            try:
                for seq in range(10_000):
                    store.commit_unit("a" * 64, seq, unit_rows(seq, width=200), step_name="a")
                    store.flush()
                    durable = seq + 1
            except StoreError as exc:
                say(durable)
                say(str(exc).replace(chr(10), " "))
            try:
                store.close()
            except StoreError:
                pass
            """,
            str(cache_dir),
        )
        children.append(writer)
        durable = int(writer.read_line())
        message = writer.read_line()
        assert writer.wait() == 0
        assert message.startswith("Disk full while writing the run store"), message
        assert str(cache_dir) in message
        assert durable > 0
        filler.unlink()  # the user frees space
        with open_store(cache_dir) as store:
            assert store.committed_units(A) >= durable
            for seq in range(store.committed_units(A)):
                assert store.load_unit(A, seq) == unit_rows(seq, width=200)
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)

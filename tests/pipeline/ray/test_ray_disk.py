"""A full disk met inside a Ray actor: the actor's answers are paid from its own disk reserve,
as the driver's are from its own (issue 11's full-disk guarantee, on Ray).

The actor's part runs in this process (the actor class is plain Python until Ray wraps it),
on a real 3 MiB tmpfs; the whole run goes through a real local Ray instance."""

from __future__ import annotations

import asyncio
import errno
import json
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import pytest

from alambic.errors import StoreError
from alambic.pipeline.store.reserve import RESERVE_FILENAME
from alambic.testing.openai_server import OpenAITestServer

pytest.importorskip("ray", reason='the Ray executor needs Ray: pip install "alambic[ray]"')

pytestmark = [pytest.mark.slow, pytest.mark.ray, pytest.mark.xdist_group("ray")]

SCRIPT = Path(__file__).with_name("ray_script.py")
Factory = Callable[..., OpenAITestServer]


def long_replies(factory: Factory, letter: str) -> OpenAITestServer:
    filler = letter * 4000  # a few answers fill the 3 MiB disk
    return factory(reply=lambda request, i: filler + str(request["messages"]))


def fill_disk(folder: Path) -> None:
    """Write zeros into ``folder`` until its file system is full."""

    def write_until_it_fails(out: BinaryIO) -> None:
        while True:
            out.write(b"\0" * 65536)
            out.flush()

    with open(folder / "filler", "wb") as out, pytest.raises(OSError) as full:
        write_until_it_fails(out)
    assert full.value.errno == errno.ENOSPC


def cached_answers(path: Path, elsewhere: Path) -> int:
    """The answers in the request cache at ``path``, read from a copy in ``elsewhere`` (the
    full disk has no room for a reader's files)."""
    copy = elsewhere / path.name
    for suffix in ("", "-wal", "-shm"):
        if Path(f"{path}{suffix}").exists():
            shutil.copy(f"{path}{suffix}", f"{copy}{suffix}")
    with sqlite3.connect(copy) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM requests").fetchone()[0])


def make_worker(server: OpenAITestServer, cache: Path, reserve: tuple[str, int] | None) -> Any:
    from ray import cloudpickle

    from alambic.llms.openai import OpenAILLM
    from alambic.pipeline.executor.ray_actors import StepWorker, to_recipe
    from alambic.steps.tasks.text_generation import TextGeneration

    llm = OpenAILLM(model="m", base_url=server.base_url, api_key="k", max_concurrency=4)
    step = TextGeneration(name="generate", llm=llm)
    blob = cloudpickle.dumps(to_recipe(step))  # type: ignore[no-untyped-call]
    return StepWorker(blob, str(cache), None, None, reserve)


@pytest.mark.parametrize("with_reserve", [True, False])
def test_an_actor_pays_a_full_disk_from_its_own_reserve(
    openai_server_factory: Factory, small_tmpfs: Path, tmp_path: Path, with_reserve: bool
) -> None:
    server = long_replies(openai_server_factory, "r")
    cache = small_tmpfs / "requests.sqlite"
    reserve_path = small_tmpfs / f"{RESERVE_FILENAME}-generate-0"
    reserve = (str(reserve_path), 512 * 1024) if with_reserve else None
    worker = make_worker(server, cache, reserve)
    assert reserve_path.exists() is with_reserve  # allocated when the actor starts
    fill_disk(small_tmpfs)
    rows = [{"instruction": f"question {i}"} for i in range(12)]

    async def both() -> tuple[Any, Any]:
        first, _ = await worker.process_rows(rows)
        later, _ = await worker.process_rows([{"instruction": "one more"}])
        return first, later

    first, later = asyncio.run(both())
    answered = [value for ok, value in first if ok]
    refused = [value for ok, value in first if not ok]
    sent = server.stats["total_requests"]
    assert 0 < len(answered) == sent < len(rows)  # the full disk stopped new requests
    assert all(isinstance(error, StoreError) for error in refused)
    assert "Disk full" in str(refused[0])
    assert later[0][0] is False
    assert isinstance(later[0][1], StoreError)
    assert server.stats["total_requests"] == sent  # nothing more left after the stop
    if with_reserve:
        # every answer received reached the cache, paid from the actor's reserve
        asyncio.run(worker.close())
        assert cached_answers(cache, tmp_path) == sent
        assert not reserve_path.exists()
    else:
        # without one, the answers received when the disk filled are lost (paid again)
        with pytest.raises(StoreError, match="could not be written to the request cache"):
            asyncio.run(worker.close())
        assert cached_answers(cache, tmp_path) < sent


def test_a_full_disk_on_ray_stops_the_run_and_the_rerun_reuses_what_was_answered(
    openai_server_factory: Factory,
    ray_env: dict[str, str],
    small_tmpfs: Path,
    tmp_path: Path,
) -> None:
    server = long_replies(openai_server_factory, "q")
    n, replicas, concurrency = 1000, 2, 4
    env = {
        **ray_env,
        "ALAMBIC_CACHE_DIR": str(small_tmpfs / "cache"),
        "ALAMBIC_DISK_RESERVE_MB": "0.25",
    }
    out = tmp_path / "out.json"
    args = ["--n", str(n), "--replicas", str(replicas), "--max-concurrency", str(concurrency)]
    command = [sys.executable, str(SCRIPT), "--url", server.base_url, "--out", str(out), *args]
    assert subprocess.run(command, env=env, timeout=300, check=False).returncode == 3
    report = json.loads(out.read_text())
    assert report["error_type"] == "StoreError", report["error"]
    assert "Disk full" in report["error"]
    first = server.stats["total_requests"]
    assert 0 < first < n
    # the actors' reserves went with the actors (spent, or deleted at the run's end)
    assert not [p for p in small_tmpfs.rglob(f"{RESERVE_FILENAME}-*")]

    bigger = tmp_path / "bigger"
    shutil.copytree(small_tmpfs / "cache", bigger / "cache", symlinks=True)
    server.reset()
    again_env = {**env, "ALAMBIC_CACHE_DIR": str(bigger / "cache")}
    rerun = [*command, "--executor", "local"]
    assert subprocess.run(rerun, env=again_env, timeout=300, check=False).returncode == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["instruction"] for r in rows] == [f"question {i}" for i in range(n)]
    assert all(isinstance(r["generation"], str) and r["generation"] for r in rows)
    repeats = server.stats["total_requests"] - (n - first)
    # the answers received before the stop come from the cache: a few are asked again, those
    # in flight and any still unwritten when the space the reserves freed filled up again (the
    # driver and both actors write to the same disk). Measured: 0, 0 and 16 of ~150-180; 5
    # and 11 without the actors' reserves (the in-process test above tells the two apart)
    assert 0 <= repeats < first // 4, (repeats, first)


def test_an_actor_without_room_for_its_reserve_fails_to_load_naming_the_fix(
    openai_server_factory: Factory, ray_env: dict[str, str], small_tmpfs: Path, tmp_path: Path
) -> None:
    server = openai_server_factory()
    # the driver's 1.2 MiB reserve and the first actor's fit in the 3 MiB disk, not a third
    env = {
        **ray_env,
        "ALAMBIC_CACHE_DIR": str(small_tmpfs / "cache"),
        "ALAMBIC_DISK_RESERVE_MB": "1.2",
    }
    out = tmp_path / "out.json"
    command = [sys.executable, str(SCRIPT), "--url", server.base_url, "--out", str(out)]
    command += ["--n", "20", "--replicas", "2"]
    assert subprocess.run(command, env=env, timeout=300, check=False).returncode == 3
    report = json.loads(out.read_text())
    assert "could not be loaded in its Ray actor" in report["error"], report["error"]
    assert "Not enough free space" in report["error"]
    assert "ALAMBIC_DISK_RESERVE_MB" in report["error"]
    assert server.stats["total_requests"] == 0  # refused before any request
    assert not [p for p in small_tmpfs.rglob(f"{RESERVE_FILENAME}-*")]

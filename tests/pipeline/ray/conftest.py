"""A real local Ray instance for the Ray executor's tests (one per test session and worker).

Ray runs in a private temporary folder (``RAY_TMPDIR``), so a stale cluster left by a killed
test run is never joined, and with token auth off, as a throwaway test cluster may.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

SRC = Path(__file__).resolve().parents[3] / "src"

ray = pytest.importorskip("ray", reason='the Ray executor needs Ray: pip install "alambic[ray]"')


def private_ray_env() -> str:
    """A short private folder for Ray's sockets and logs; sets the variables Ray reads."""
    folder = tempfile.mkdtemp(prefix="ar", dir="/tmp")
    os.makedirs(os.path.join(folder, "ray"), exist_ok=True)
    os.environ["RAY_TMPDIR"] = folder
    os.environ["RAY_AUTH_MODE"] = "disabled"
    os.environ.pop("RAY_ADDRESS", None)
    return folder


@pytest.fixture(scope="session")
def local_ray() -> Iterator[Any]:
    """``ray.init`` on this machine with 4 logical CPUs; shut down after the session."""
    folder = private_ray_env()
    src = os.path.join(os.path.dirname(__file__), "..", "..", "..", "src")
    path = os.pathsep.join(p for p in (os.path.abspath(src), os.environ.get("PYTHONPATH")) if p)
    ray.init(
        num_cpus=4,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": path}},
    )
    try:
        yield ray
    finally:
        ray.shutdown()
        shutil.rmtree(folder, ignore_errors=True)


def _processes_of(folder: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            # Ray renames its workers ("ray::StepWorker..."): their environment still holds
            # RAY_TMPDIR, inherited from the test's driver
            names = (entry / "cmdline").read_bytes() + (entry / "environ").read_bytes()
        except OSError:
            continue
        if folder.encode() in names:  # an exited process not yet reaped has neither
            pids.append(int(entry.name))
    return pids


def kill_leftovers(folder: str, timeout: float = 30.0) -> None:
    """SIGKILL every process of this test's Ray (its private folder in the command line or
    the environment), scanning again until none is left. Workers that Ray renamed escaped a
    scan of command lines alone: a killed run's actors then went on sending its requests,
    and spent the rerun's budget."""
    deadline = time.monotonic() + timeout
    while pids := _processes_of(folder):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if time.monotonic() > deadline:
            raise RuntimeError(f"Ray processes still alive after {timeout} s: {pids}")
        time.sleep(0.05)


@pytest.fixture
def ray_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """The environment of a subprocess that starts its own Ray (a private folder, token
    auth off, the run store and request cache under ``tmp_path``); everything it left
    running is killed afterwards."""
    folder = tempfile.mkdtemp(prefix="ar", dir="/tmp")  # short: Ray's socket paths must fit
    (Path(folder) / "ray").mkdir()
    env = {
        **os.environ,
        "RAY_TMPDIR": folder,
        "RAY_AUTH_MODE": "disabled",
        "ALAMBIC_CACHE_DIR": str(tmp_path / "cache"),
        "PYTHONPATH": os.pathsep.join(p for p in (str(SRC), os.environ.get("PYTHONPATH")) if p),
    }
    env.pop("RAY_ADDRESS", None)
    yield env
    kill_leftovers(folder)
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def ray_kill(ray_env: dict[str, str]) -> Callable[[], None]:
    """Kills every process of ``ray_env``'s Ray (a cluster whose driver was killed)."""
    return lambda: kill_leftovers(ray_env["RAY_TMPDIR"])

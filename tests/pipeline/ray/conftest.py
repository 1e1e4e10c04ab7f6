"""A real local Ray instance for the Ray executor's tests (one per test session and worker).

Ray runs in a private temporary folder (``RAY_TMPDIR``), so a stale cluster left by a killed
test run is never joined, and with token auth off, as a throwaway test cluster may.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest

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

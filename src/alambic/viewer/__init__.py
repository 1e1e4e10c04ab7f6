"""``alambic view``: a local, read-only web page to look at a run's rows.

    alambic view                       # the latest stored run
    alambic view 1a2b3c4d/2            # a run as `alambic runs list` prints it
    alambic view my-dataset/           # a Distiset saved with save_to_disk
    alambic view 1a2b3c4d/2 --diff 9f8e7d6c/1

The page shows each step's rows (filter by a column's value or by failure kind, page through
100,000 rows without loading them all), one row's lineage through the steps with every LLM
call's prompt, raw output, tokens and error, failures grouped by reason, plots (scores, token
counts, latency, rows over time) and the diff of two runs. The server binds 127.0.0.1 only,
answers GET requests only, and serves everything itself: it works offline.

Needs ``pip install "alambic[viewer]"`` (starlette, uvicorn, matplotlib).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from alambic.errors import MissingDependencyError
from alambic.viewer.sources import DistisetSource, RunSource, Source, ViewerError, open_target

HOST = "127.0.0.1"


def _require() -> None:
    for package in ("starlette", "uvicorn", "matplotlib"):
        try:
            __import__(package)
        except ImportError:
            raise MissingDependencyError("alambic view", package, "viewer") from None


def _server(source: Source, others: dict[str, Source], port: int) -> Any:
    import uvicorn

    from alambic.viewer.app import create_app

    config = uvicorn.Config(
        create_app(source, others), host=HOST, port=port, log_level="warning", access_log=False
    )
    return uvicorn.Server(config)


@contextmanager
def running(
    source: Source, others: dict[str, Source] | None = None, port: int = 0
) -> Iterator[str]:
    """Serve ``source`` in a background thread; yields the page's URL."""
    _require()
    from alambic.testing.processes import free_port

    port = port or free_port()
    server = _server(source, dict(others or {}), port)
    thread = threading.Thread(target=server.run, name="alambic-viewer", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise ViewerError(f"The viewer could not start on {HOST}:{port}.")
        time.sleep(0.02)
    try:
        yield f"http://{HOST}:{port}/"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def serve(source: Source, others: dict[str, Source] | None = None, port: int = 0) -> None:
    """Serve ``source`` until interrupted (Ctrl+C), in this thread."""
    _require()
    from alambic.testing.processes import free_port

    port = port or free_port()
    server = _server(source, dict(others or {}), port)
    print(f"alambic viewer for {source.label}: http://{HOST}:{port}/  (Ctrl+C to stop)", flush=True)
    server.run()


__all__ = [
    "DistisetSource",
    "RunSource",
    "Source",
    "ViewerError",
    "open_target",
    "running",
    "serve",
]

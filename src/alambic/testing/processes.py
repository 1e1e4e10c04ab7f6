"""Real servers as subprocesses for tests: a free port, start, wait until ready, stop.

Used for the servers alambic's tests drive through a provider SDK (``transformers serve``,
``python -m llama_cpp.server``, the LiteLLM proxy): each is started on 127.0.0.1, polled on a
URL until it answers 200, and stopped (terminate, then kill) however the test ends. A server
that exits or never answers raises with the tail of its log, which is what one needs to see.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``condition`` every 20 ms until it holds; past ``timeout`` seconds, fail the test
    with ``what`` it was waiting for."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """Terminate ``proc``; kill it if it has not exited within ``timeout`` seconds."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def serve_process(
    cmd: Sequence[str],
    ready_url: str,
    *,
    name: str,
    log_path: Path,
    timeout: float = 60.0,
    env: Mapping[str, str] | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``cmd`` with its output in ``log_path``; yield once ``ready_url`` answers 200.

    Raises ``RuntimeError`` (with the log's tail) if the server exits first or does not
    answer within ``timeout`` seconds. The server is stopped when the block ends.
    """
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            list(cmd), stdout=log, stderr=subprocess.STDOUT, env=dict(env or os.environ)
        )
    # no proxy: the server is on this machine, whatever HTTP_PROXY says
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with code {proc.returncode}:\n{_tail(log_path)}")
            with (
                contextlib.suppress(urllib.error.URLError, OSError),
                opener.open(ready_url, timeout=2) as resp,
            ):
                if resp.status == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{name} did not answer {ready_url} within {timeout:g} s:\n{_tail(log_path)}"
                )
            time.sleep(0.25)
        yield proc
    finally:
        stop_process(proc)


def _tail(log_path: Path, chars: int = 3000) -> str:
    return log_path.read_text(errors="replace")[-chars:]


__all__ = ["free_port", "serve_process", "stop_process", "wait_for"]

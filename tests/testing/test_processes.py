"""Subprocess servers for tests: started, polled until ready, stopped, failures explained."""

from __future__ import annotations

import sys
import urllib.request
from pathlib import Path

import pytest

from alambic.testing.processes import free_port, serve_process


def test_a_server_is_ready_when_yielded_and_stopped_after(tmp_path: Path) -> None:
    (tmp_path / "ok.txt").write_text("ready")
    port = free_port()
    cmd = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]
    url = f"http://127.0.0.1:{port}/ok.txt"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    cmd += ["--directory", str(tmp_path)]
    with serve_process(cmd, url, name="http.server", log_path=tmp_path / "log") as proc:
        assert proc.poll() is None
        with opener.open(url, timeout=5) as resp:
            assert resp.read() == b"ready"
    assert proc.returncode is not None  # stopped when the block ended


def test_a_server_that_exits_says_so_with_its_log(tmp_path: Path) -> None:
    cmd = [sys.executable, "-c", "import sys; print('bad flag --x'); sys.exit(3)"]
    url = f"http://127.0.0.1:{free_port()}/"
    with (
        pytest.raises(RuntimeError, match=r"(?s)tiny server exited with code 3:.*bad flag --x"),
        serve_process(cmd, url, name="tiny server", log_path=tmp_path / "log"),
    ):
        pass


def test_a_server_that_never_answers_times_out(tmp_path: Path) -> None:
    cmd = [sys.executable, "-c", "import time; print('starting'); time.sleep(30)"]
    url = f"http://127.0.0.1:{free_port()}/"
    with (
        pytest.raises(RuntimeError, match=r"(?s)slow did not answer .* within 1 s:.*starting"),
        serve_process(cmd, url, name="slow", log_path=tmp_path / "log", timeout=1),
    ):
        pass

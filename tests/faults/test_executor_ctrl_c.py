"""Issue 11 #7: after the first Ctrl-C no new request is sent; requests in flight finish; the
process exits within about the slowest one; the rerun is exact.

A real pipeline in a subprocess (tests/pipeline/resume_script.py) against the OpenAI test
server answering every request in 1 s, and a real SIGINT. Before the fix, the executor kept
every batch it had already admitted going: hundreds of requests after the signal.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from alambic.testing.openai_server import OpenAITestServer, ServerConfig

SCRIPT = Path(__file__).resolve().parents[1] / "pipeline" / "resume_script.py"
ROWS = 300
CONCURRENCY = 20
LATENCY_S = 1.0


def _start(url: str, cache: Path, out: Path, log: Path, *extra: str) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env["ALAMBIC_CACHE_DIR"] = str(cache)
    # RESUME_TEST_SRC runs the child on another source tree (to show the test fails there)
    src = os.environ.get("RESUME_TEST_SRC") or str(Path(__file__).resolve().parents[2] / "src")
    env["PYTHONPATH"] = os.pathsep.join([src, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    cmd = [
        sys.executable,
        str(SCRIPT),
        "--url",
        url,
        "--n",
        str(ROWS),
        "--out",
        str(out),
        "--max-concurrency",
        str(CONCURRENCY),
        "--batch",
        "10",
        "--gen-batch",
        "10",
        *extra,
    ]
    with log.open("ab") as handle:
        return subprocess.Popen(cmd, env=env, stdout=handle, stderr=handle)


@pytest.mark.slow
@pytest.mark.parametrize(
    "where",
    [
        pytest.param((), id="terminal"),
        # pipeline.run called inside a running event loop, as from a notebook cell: the run's
        # loop is in a helper thread and the Ctrl-C reaches the waiting thread
        pytest.param(("--inside-loop",), id="notebook"),
    ],
)
def test_first_ctrl_c_sends_no_new_request_and_exits_quickly(
    tmp_path: Path, where: tuple[str, ...]
) -> None:
    cache, out, log = tmp_path / "cache", tmp_path / "out.json", tmp_path / "child.log"
    with OpenAITestServer(ServerConfig(latency_s=LATENCY_S)) as server:
        proc = _start(server.base_url, cache, out, log, *where)
        try:
            deadline = time.monotonic() + 120
            while server.stats["total_requests"] < 2 * CONCURRENCY:
                assert proc.poll() is None, log.read_text()[-3000:]
                assert time.monotonic() < deadline, "the run never got going"
                time.sleep(0.02)
            before = server.stats
            proc.send_signal(signal.SIGINT)
            signalled = time.monotonic()
            code = proc.wait(timeout=120)
            exit_s = time.monotonic() - signalled
        finally:
            if proc.poll() is None:
                proc.kill()
        after = server.stats
        assert code == 0, log.read_text()[-3000:]
        sent_after = after["total_requests"] - before["total_requests"]
        # at most a few requests already on their way when the signal came; never more
        assert sent_after <= 3, (sent_after, before["in_flight"])
        assert after["total_requests"] < ROWS
        # in-flight requests (1 s each) finish; writing what was done takes a few seconds
        # on a loaded machine, never the 20+ s of sending the rest of the batches
        assert exit_s < LATENCY_S + 8, exit_s

        rerun = _start(server.base_url, cache, out, log, *where)
        assert rerun.wait(timeout=180) == 0, log.read_text()[-3000:]
        rows = json.loads(out.read_text())["rows"]
        assert [r["instruction"] for r in rows] == [f"question {i}" for i in range(ROWS)]
        assert all(r["generation"] == f"reply to: {r['instruction']}" for r in rows)
        assert server.stats["repeated_requests"] == 0

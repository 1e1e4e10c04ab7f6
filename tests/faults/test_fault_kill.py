"""SIGKILL at random points of a real pipeline process, then a rerun: the rows come out exactly
once, and the requests paid twice are at most those in flight at each kill."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from alambic.testing.openai_server import OpenAITestServer

pytestmark = [pytest.mark.timeout(180), pytest.mark.slow]

Factory = Callable[..., OpenAITestServer]
SCRIPT = Path(__file__).with_name("fault_pipeline.py")
ROWS = 600
CONCURRENCY = 16


def start(url: str, out: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parents[2] / "src")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    return subprocess.Popen(
        [
            sys.executable,
            str(SCRIPT),
            "--url",
            url,
            "--rows",
            str(ROWS),
            "--out",
            str(out),
            "--max-concurrency",
            str(CONCURRENCY),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def test_sigkill_at_random_points_then_rerun_is_exact(
    openai_server_factory: Factory, tmp_path: Path
) -> None:
    server = openai_server_factory(latency_s=0.02, jitter_s=0.02)
    rng = random.Random(int(os.environ.get("FAULT_SEED", "7")))
    out = tmp_path / "result.json"
    kills = 0
    for _ in range(3):
        before = server.stats["total_requests"]
        proc = start(server.base_url, out)
        # wait until requests flow, then kill at a random moment
        deadline = time.monotonic() + 30
        while server.stats["total_requests"] - before < 20 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.4))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait(timeout=30)
    assert kills >= 1
    proc = start(server.base_url, out)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()[-2000:]
    result = json.loads(out.read_text())
    rows = result["rows"]
    seen = Counter(r["instruction"] for r in rows)
    assert set(seen) == {f"question {i}" for i in range(ROWS)}
    assert max(seen.values()) == 1
    assert all(r["generation"] == f"reply to: {r['instruction']}" for r in rows)
    stats = server.stats
    repeats = stats["total_requests"] - stats["unique_requests"]
    # each kill may lose the answers in flight (and those received but not yet committed)
    assert repeats <= kills * CONCURRENCY * 2, (repeats, kills)

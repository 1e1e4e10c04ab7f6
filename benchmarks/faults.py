"""The fault matrix (issue 11): one real pipeline per fault against the test server, each run
in a fresh Python process, and one table line per fault:

    fault | rows | ok | failed with reason | lost | duplicated | repeats | requests | s

``lost`` counts input rows missing from the final dataset, ``duplicated`` rows present more
than once, ``repeats`` requests the server received more than once (retries, and requests
repaid after a kill). Faults that stop the run (a wrong key, a closed port, a full disk) are
run again once the cause is fixed, and the line shows the final dataset.

    PYTHONPATH=src python benchmarks/faults.py [--rows 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alambic.testing.openai_server import OpenAITestServer
from alambic.testing.processes import free_port

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tests" / "faults" / "fault_pipeline.py"
SECRET = "sk-faults-benchmark-SECRET-0123456789"


@dataclass
class Line:
    fault: str
    rows: int
    ok: int = 0
    failed: Counter[str] = field(default_factory=Counter)
    lost: int = 0
    duplicated: int = 0
    repeats: int = 0
    requests: int = 0
    seconds: float = 0.0
    note: str = ""


def child(url: str, rows: int, cache: Path, out: Path, *extra: str) -> subprocess.Popen[bytes]:
    env = dict(os.environ, ALAMBIC_CACHE_DIR=str(cache))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "src"), env.get("PYTHONPATH")) if p)
    args = [sys.executable, str(SCRIPT), "--url", url, "--rows", str(rows), "--out", str(out)]
    return subprocess.Popen([*args, *extra], env=env, stderr=subprocess.PIPE)


def run(url: str, rows: int, cache: Path, *extra: str) -> dict[str, Any]:
    out = Path(tempfile.mkdtemp(prefix="alambic-fault-result-")) / "result.json"
    proc = child(url, rows, cache, out, *extra)
    _, err = proc.communicate(timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(err.decode()[-3000:])
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def score(line: Line, result: dict[str, Any], server: OpenAITestServer | None) -> Line:
    seen = Counter(r["instruction"] for r in result["rows"])
    line.lost = sum(1 for i in range(line.rows) if f"question {i}" not in seen)
    line.duplicated = sum(c - 1 for c in seen.values() if c > 1)
    for row in result["rows"]:
        if row["generation"] is not None:
            line.ok += 1
        else:
            line.failed[row["error_kind"] or "?"] += 1
    if server is not None:
        stats = server.stats
        line.requests = stats["total_requests"]
        line.repeats = stats["total_requests"] - stats["unique_requests"]
    return line


def transient(name: str, rows: int, work: Path, *extra: str, **knobs: Any) -> Line:
    with OpenAITestServer(seed=1, **knobs) as server:
        started = time.monotonic()
        result = run(server.base_url, rows, work / name, *extra)
        line = score(Line(name, rows), result, server)
        line.seconds = time.monotonic() - started
    return line


def sigkill(rows: int, work: Path, kills: int = 3) -> Line:
    line = Line(f"SIGKILL x{kills} at random points, then rerun", rows)
    rng = random.Random(3)
    with OpenAITestServer(latency_s=0.02, jitter_s=0.02) as server:
        started = time.monotonic()
        cache = work / "kill"
        for _ in range(kills):
            before = server.stats["total_requests"]
            proc = child(server.base_url, rows, cache, work / "kill.json")
            while server.stats["total_requests"] - before < 20 and proc.poll() is None:
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, 0.5))
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        result = run(server.base_url, rows, cache)
        score(line, result, server)
        line.seconds = time.monotonic() - started
    return line


def stopped_then_fixed(name: str, rows: int, work: Path, kind: str) -> Line:
    line = Line(name, rows)
    cache = work / kind
    started = time.monotonic()
    if kind == "key":
        with OpenAITestServer(api_key="the-right-key") as server:
            first = run(server.base_url, rows, cache, "--api-key", "a-wrong-key-123")
            sent = server.stats["total_requests"]
            result = run(server.base_url, rows, cache, "--api-key", "the-right-key")
            score(line, result, server)
    else:
        port = free_port()
        first = run(f"http://127.0.0.1:{port}/v1", rows, cache)
        sent = 0  # nothing listens: the LLM stops after 3 refused connection attempts
        with OpenAITestServer(port=port) as server:
            result = run(server.base_url, rows, cache)
            score(line, result, server)
    line.seconds = time.monotonic() - started
    what = f"{sent} request(s)" if kind == "key" else "3 refused connections"
    line.note = f"first run stopped: {first['error_type']} after {what}; rerun fixed"
    return line


def secrets(rows: int, work: Path) -> Line:
    line = Line("500s echoing the Authorization header (no retries)", rows)
    cache = work / "secrets"
    with OpenAITestServer(seed=2, failure_rate=0.2, echo_auth=True) as server:
        started = time.monotonic()
        result = run(server.base_url, rows, cache, "--api-key", SECRET, "--max-retries", "0")
        score(line, result, server)
        line.seconds = time.monotonic() - started
    leaks = [p for p in cache.rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()]
    leaks_rows = sum(SECRET in (r["error"] or "") for r in result["rows"])
    line.note = f"files holding the key: {len(leaks)}; row errors holding it: {leaks_rows}"
    return line


def disk_full(rows: int, work: Path) -> Line:
    line = Line("disk full (3 MiB tmpfs, 0.5 MiB reserve), then rerun on a bigger disk", rows)
    mount = work / "tmpfs"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        line.note = f"skipped: cannot mount a tmpfs ({done.stderr.decode().strip()})"
        return line
    filler = "x" * 4000
    os.environ["ALAMBIC_DISK_RESERVE_MB"] = "0.5"  # the default 8 MiB does not fit in 3 MiB
    try:
        with OpenAITestServer(reply=lambda request, i: filler + str(request["messages"])) as srv:
            started = time.monotonic()
            first = run(srv.base_url, rows, mount / "cache")
            sent = srv.stats["total_requests"]
            subprocess.run(["cp", "-a", str(mount / "cache"), str(work / "bigger")], check=True)
            result = run(srv.base_url, rows, work / "bigger")
            score(line, result, srv)
            line.seconds = time.monotonic() - started
        line.note = f"first run stopped: {first['error_type']} after {sent} requests"
    finally:
        os.environ.pop("ALAMBIC_DISK_RESERVE_MB", None)
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)
    return line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1000)
    args = parser.parse_args()
    n = args.rows
    with tempfile.TemporaryDirectory(prefix="alambic-faults-") as tmp:
        work = Path(tmp)
        lines = [
            transient("none", n, work),
            transient("500s (10%)", n, work, failure_rate=0.1),
            transient("429s with Retry-After (10%)", n, work, rate_429=0.1, retry_after_s=0.05),
            transient("429s without Retry-After (10%)", n, work, rate_429=0.1),
            transient(
                "hanging requests (3%, timeout 1 s)", n, work, "--timeout", "1", hang_rate=0.03
            ),
            transient("malformed JSON (5%)", n, work, malformed_rate=0.05),
            transient("truncated bodies (5%)", n, work, truncated_rate=0.05),
            transient("empty choices (5%)", n, work, empty_rate=0.05),
            transient("dropped connections (5%)", n, work, drop_rate=0.05),
            transient("500s (20%), max_retries=0", n, work, "--max-retries", "0", failure_rate=0.2),
            sigkill(n, work),
            secrets(n, work),
            stopped_then_fixed("wrong API key", n, work, "key"),
            stopped_then_fixed("closed port (server down)", n, work, "port"),
            disk_full(n * 2, work),
        ]
    print("| fault | rows | ok | failed with reason | lost | duplicated | repeats | requests | s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for line in lines:
        failed = ", ".join(f"{c} {k}" for k, c in sorted(line.failed.items())) or "0"
        note = f" ({line.note})" if line.note else ""
        print(
            f"| {line.fault}{note} | {line.rows} | {line.ok} | {failed} | {line.lost} | "
            f"{line.duplicated} | {line.repeats} | {line.requests} | {line.seconds:.1f} |"
        )
    bad = [line.fault for line in lines if line.lost or line.duplicated]
    if bad:
        raise SystemExit(f"rows lost or duplicated under: {bad}")


if __name__ == "__main__":
    main()

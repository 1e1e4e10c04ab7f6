"""Throughput self-test of ``alambic.testing.openai_server``.

Why: benchmarks of alambic's LLM clients use this server as the "LLM"; its own ceiling
must sit well above what they measure, or they would benchmark the mock.  This starts
the server as a separate process (as benchmarks do), fires chat completions at it with
aiohttp from this process through a single ``ClientSession`` (one connection pool), and
prints requests/s.  Optionally ``--procs N`` client processes share the load, to see
the server's own ceiling rather than one Python client's.

    PYTHONPATH=src python benchmarks/server_selftest.py --requests 20000 --concurrency 64
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import time
from typing import Any

import aiohttp

from alambic.testing.openai_server import (
    ServerConfig,
    remote_reset,
    remote_stats,
    run_server_process,
    stop_server_process,
)


async def _client(base_url: str, requests: int, concurrency: int, stream: bool) -> int:
    """Send ``requests`` chat completions with ``concurrency`` workers; return OKs."""
    body: dict[str, Any] = {
        "model": "bench",
        "messages": [{"role": "user", "content": "say something short"}],
        "max_tokens": 8,
    }
    if stream:
        body["stream"] = True
    payload = json.dumps(body).encode()
    headers = {"content-type": "application/json", "authorization": "Bearer test"}
    url = f"{base_url}/chat/completions"
    remaining = requests
    ok = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            nonlocal remaining, ok
            while remaining > 0:
                remaining -= 1
                async with session.post(url, data=payload, headers=headers) as resp:
                    await resp.read()
                    ok += resp.status == 200

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return ok


def _client_process(args: tuple[str, int, int, bool]) -> int:
    return asyncio.run(_client(*args))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--stream", action="store_true", help="SSE streaming replies")
    parser.add_argument("--procs", type=int, default=1, help="client processes")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    args = parser.parse_args()

    proc, base_url = run_server_process(ServerConfig(latency_s=args.latency_ms / 1000))
    try:
        # Warm-up (imports, connection setup) outside the measurement.
        asyncio.run(_client(base_url, 500, min(args.concurrency, 16), args.stream))
        remote_reset(base_url)
        cpu0 = _proc_cpu(proc.pid)
        start = time.perf_counter()
        if args.procs == 1:
            ok = asyncio.run(_client(base_url, args.requests, args.concurrency, args.stream))
        else:
            share = args.requests // args.procs
            job = (base_url, share, args.concurrency, args.stream)
            with multiprocessing.Pool(args.procs) as pool:
                ok = sum(pool.map(_client_process, [job] * args.procs))
        elapsed = time.perf_counter() - start
        server_cpu = _proc_cpu(proc.pid) - cpu0
        stats = remote_stats(base_url, arrivals=False)
    finally:
        stop_server_process(proc)
    total = stats["total_requests"]
    print(
        f"{total} requests ({ok} ok) in {elapsed:.2f} s: {total / elapsed:,.0f} req/s "
        f"(concurrency {args.concurrency} x {args.procs} client process(es), "
        f"stream={args.stream}); server CPU {100 * server_cpu / elapsed:.0f}% of one core; "
        f"max in flight {stats['max_in_flight']}"
    )


def _proc_cpu(pid: int) -> float:
    """User+system CPU seconds of a process (Linux ``/proc``), 0.0 where unavailable."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


if __name__ == "__main__":
    main()

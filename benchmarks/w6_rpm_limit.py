"""W6: the server enforces 6,000 requests per minute (429 beyond); alambic configured with
``rpm=6000`` runs 3,000 rows. Target: throughput >= 95% of the limit, < 1% of requests 429.

How the limit is enforced matters. With the server's literal 60 s sliding window, 3,000
requests never reach 6,000 in a window, so no client could be rejected; the default here is
the strict form of the same limit, 100 requests in any 1 s sliding window (``--window 1``),
which rejects any burst above the rate. ``--window 60`` runs the literal form.

The rows go through a real pipeline (see ``w5_429.py``) against the test server in a separate
process. Prints rows/s, the request rate the server saw, 429s, wall time and peak RSS.

Run: ``PYTHONPATH=src python benchmarks/w6_rpm_limit.py [--rows 3000] [--rpm 6000] [--window 1]``
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

from w5_429 import peak_rss_mb, run_generation_pipeline

from alambic.testing.openai_server import (
    ServerConfig,
    remote_stats,
    run_server_process,
    stop_server_process,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--rpm", type=int, default=6000)
    parser.add_argument("--window", type=float, default=1.0, help="server window, seconds")
    parser.add_argument("--max-concurrency", type=int, default=64)
    args = parser.parse_args(argv)

    os.environ.setdefault("ALAMBIC_CACHE_DIR", tempfile.mkdtemp(prefix="alambic-w6-"))
    os.environ["ALAMBIC_REQUEST_CACHE"] = "0"
    per_window = round(args.rpm * args.window / 60)
    proc, base_url = run_server_process(
        ServerConfig(rpm_limit=per_window, rate_window_s=args.window)
    )
    try:
        out, wall, counters, started = run_generation_pipeline(
            base_url, args.rows, {"rpm": args.rpm, "max_concurrency": args.max_concurrency}
        )
        stats = remote_stats(base_url)
    finally:
        stop_server_process(proc)
    generated = sum(1 for r in out if r["generation"] is not None)
    total = stats["total_requests"]
    limited = stats["statuses"].get(429, 0)
    arrivals = sorted(stats["arrivals"])
    span = arrivals[-1] - arrivals[0] if len(arrivals) > 1 else 0.0
    limit_per_s = args.rpm / 60
    rows_per_s = len(out) / wall
    server_rate = (len(arrivals) - 1) / span if span else 0.0
    print(
        f"W6: {args.rows} rows, server limit {args.rpm}/min "
        f"({per_window} per {args.window:g} s sliding window), alambic rpm={args.rpm}"
    )
    print(f"  rows with a generation : {generated} / {len(out)}")
    print(
        f"  wall time (pipeline)   : {wall:.2f} s (first request after "
        f"{arrivals[0] - started:.2f} s, last after {arrivals[-1] - started:.2f} s; the "
        "server stamps arrivals with the same monotonic clock)"
    )
    print(
        f"  throughput             : {rows_per_s:.1f} rows/s = {rows_per_s / limit_per_s:.1%} "
        f"of the limit (server saw {server_rate:.1f} requests/s = "
        f"{server_rate / limit_per_s:.1%})"
    )
    print(f"  total requests         : {total} ({limited} answered 429 = {limited / total:.2%})")
    print(f"  budget wait (summed)   : {counters['budget_wait_s']:.0f} s")
    print(f"  peak RSS (client)      : {peak_rss_mb():.0f} MB")
    ok = generated == args.rows and rows_per_s >= 0.95 * limit_per_s and limited < 0.01 * total
    print("  target met" if ok else "  TARGET MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

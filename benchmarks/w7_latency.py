"""W7: 20,000 rows against a server answering in 1 s +- 0.5 s, 2,000 requests allowed in flight.

The ideal is 2,000 rows/s (every slot always busy). Prints rows/s and % of ideal, the server's
requests in flight every 0.5 s (it should stay near 2,000 until the tail; computed afterwards
from the times the server recorded, so nothing polls it during the run), the most rows
the task held between the LLM and the in-order commit, and peak RSS.

    LoadDataFromDicts >> TextGeneration(OpenAILLM) >> KeepColumns(["instruction", "generation"])

Run: ``PYTHONPATH=src python benchmarks/w7_latency.py [--rows 20000] [--concurrency 2000]``
(``PYTHONPATH`` may point at another tree's ``src`` to compare.)
"""

from __future__ import annotations

import argparse
import bisect
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _common import peak_rss_mb


def process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def in_flight_over_time(
    arrivals: list[float], departures: list[float], began: float, wall: float, step: float = 0.5
) -> list[tuple[float, int]]:
    """The server's requests in flight every ``step`` seconds of the run, from the times its
    requests came and ended (recorded by the server: nothing samples it during the run, so
    the measurement costs the client nothing)."""
    arrived, ended = sorted(arrivals), sorted(departures)
    moments = [step * k for k in range(1, int(wall / step) + 1)]
    return [
        (t, bisect.bisect_right(arrived, began + t) - bisect.bisect_right(ended, began + t))
        for t in moments
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=2000)
    parser.add_argument("--latency", type=float, default=0.5, help="fixed part, seconds")
    parser.add_argument("--jitter", type=float, default=1.0, help="uniform extra, seconds")
    parser.add_argument("--batch-size", type=int, default=50)
    args = parser.parse_args(argv)

    os.environ.setdefault("ALAMBIC_CACHE_DIR", tempfile.mkdtemp(prefix="alambic-w7-"))
    os.environ["ALAMBIC_REQUEST_CACHE"] = "0"
    from alambic.llms.openai import OpenAILLM
    from alambic.pipeline import Pipeline
    from alambic.steps import KeepColumns, LoadDataFromDicts
    from alambic.steps.tasks.text_generation import TextGeneration
    from alambic.testing.openai_server import (
        ServerConfig,
        remote_stats,
        run_server_process,
        stop_server_process,
    )

    proc, base_url = run_server_process(
        ServerConfig(latency_s=args.latency, jitter_s=args.jitter, seed=7)
    )
    try:
        data = [{"instruction": f"question number {i}"} for i in range(args.rows)]
        llm = OpenAILLM(model="bench", base_url=base_url, max_concurrency=args.concurrency)
        with Pipeline(name="bench-w7") as pipeline:
            load = LoadDataFromDicts(data=data, batch_size=args.batch_size)
            gen = TextGeneration(name="gen", llm=llm, input_batch_size=args.batch_size)
            keep = KeepColumns(columns=["instruction", "generation"])
            load >> gen >> keep
        start = time.perf_counter()
        began = time.monotonic()  # the server's clock (CLOCK_MONOTONIC is system-wide)
        cpu_start, server_cpu_start = time.process_time(), process_cpu_s(proc.pid)
        distiset = pipeline.run(use_cache=False, show_progress=False)
        wall = time.perf_counter() - start
        client_cpu = time.process_time() - cpu_start
        server_cpu = process_cpu_s(proc.pid) - server_cpu_start
        out = distiset["default"]["train"]
        stats = remote_stats(base_url)  # with the arrival and departure times
    finally:
        stop_server_process(proc)
    samples = in_flight_over_time(stats["arrivals"], stats["departures"], began, wall)
    generated = sum(1 for g in out["generation"] if g is not None)
    ideal = args.concurrency / (args.latency + args.jitter / 2)
    rate = len(out) / wall
    summary = (pipeline.last_summary or {}).get("steps", {}).get("gen", {})
    print(
        f"W7: {args.rows} rows, latency {args.latency + args.jitter / 2:.1f} s "
        f"+- {args.jitter / 2:.1f} s, max_concurrency {args.concurrency}"
    )
    print(f"  rows with a generation : {generated} / {len(out)}")
    print(f"  wall time              : {wall:.2f} s")
    print(f"  throughput             : {rate:.0f} rows/s = {rate / ideal:.0%} of ideal {ideal:.0f}")
    print(
        f"  server requests        : {stats['total_requests']}, max in flight "
        f"{stats['max_in_flight']}"
    )
    print(
        f"  rows held by the task  : max {summary.get('max_rows_held', 'n/a')} "
        "(admitted, not yet emitted in order)"
    )
    print(f"  peak RSS (client)      : {peak_rss_mb():.0f} MB")
    per_request = client_cpu / max(stats["total_requests"], 1)
    print(
        f"  CPU per request        : client {per_request * 1e6:.0f} us, server "
        f"{server_cpu / max(stats['total_requests'], 1) * 1e6:.0f} us; one client process "
        f"(one core: the GIL) tops out at {1 / per_request:.0f} rows/s here"
    )
    arrived, ended = sorted(stats["arrivals"]), sorted(stats["departures"])
    full = next((t for t, n in samples if n >= 0.95 * args.concurrency), None)
    print(
        f"  phases (s of the run)  : first request {arrived[0] - began:.2f}, "
        f"{args.concurrency} asked by {arrived[min(args.concurrency, len(arrived)) - 1] - began:.2f}"
        f" (95% in flight by {full if full is not None else 'never'}), last asked "
        f"{arrived[-1] - began:.2f}, last answered {ended[-1] - began:.2f}, run over {wall:.2f}"
    )
    held = (sum(ended) - sum(arrived)) / max(len(arrived), 1)
    print(
        f"  server time per request: {held:.3f} s on average (its latency plus its own delays:"
        f" {args.concurrency} in flight then give at most {args.concurrency / held:.0f} rows/s)"
    )
    print("  server in flight over time (s: requests):")
    line = "   "
    for t, n in samples:
        line += f" {t:4.1f}:{n}"
        if len(line) > 90:
            print(line)
            line = "   "
    if line.strip():
        print(line)
    return 0 if generated == args.rows == len(out) else 1


if __name__ == "__main__":
    sys.exit(main())

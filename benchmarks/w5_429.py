"""W5: 2,000 rows, 0 ms latency, 5% of requests answered 429.

Every row must get a generation (the scheduler retries the 429s with backoff and adapts its
concurrency); prints rows/s, total requests, 429s, wall time and peak RSS.

The test server runs as a separate process (so it does not share the client's GIL), and the
rows go through a real pipeline::

    LoadDataFromDicts >> TextGeneration(OpenAILLM) >> KeepColumns(["instruction", "generation"])

Run: ``PYTHONPATH=src python benchmarks/w5_429.py [--rows 2000] [--rate-429 0.05]``
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from typing import Any

from alambic.testing.openai_server import (
    ServerConfig,
    remote_stats,
    run_server_process,
    stop_server_process,
)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_generation_pipeline(
    base_url: str, rows: int, llm_settings: dict[str, Any], batch_size: int = 100
) -> tuple[list[dict[str, Any]], float, dict[str, Any], float]:
    """Run the W5/W6 pipeline; return its rows, wall time, the LLM's counters and the
    ``time.monotonic()`` at which ``run()`` was called (the test server's clock too)."""
    from alambic.llms.openai import OpenAILLM
    from alambic.pipeline import Pipeline
    from alambic.steps import KeepColumns, LoadDataFromDicts
    from alambic.steps.tasks.text_generation import TextGeneration

    data = [{"instruction": f"question number {i}"} for i in range(rows)]
    llm = OpenAILLM(model="bench", base_url=base_url, **llm_settings)
    with Pipeline(name="bench-scheduler") as pipeline:
        load = LoadDataFromDicts(data=data, batch_size=batch_size)
        gen = TextGeneration(llm=llm, input_batch_size=batch_size)
        keep = KeepColumns(columns=["instruction", "generation"])
        load >> gen >> keep
    started = time.monotonic()
    start = time.perf_counter()
    distiset = pipeline.run(use_cache=False, show_progress=False)
    wall = time.perf_counter() - start
    out = distiset["default"]["train"].to_list()
    return out, wall, llm.scheduler.counters.snapshot(), started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--rate-429", type=float, default=0.05)
    parser.add_argument("--retry-after", type=float, default=None, help="seconds, sent with 429s")
    parser.add_argument("--max-concurrency", type=int, default=64)
    args = parser.parse_args(argv)

    os.environ.setdefault("ALAMBIC_CACHE_DIR", tempfile.mkdtemp(prefix="alambic-w5-"))
    os.environ["ALAMBIC_REQUEST_CACHE"] = "0"
    proc, base_url = run_server_process(
        ServerConfig(rate_429=args.rate_429, retry_after_s=args.retry_after, seed=5)
    )
    try:
        out, wall, counters, _ = run_generation_pipeline(
            base_url, args.rows, {"max_concurrency": args.max_concurrency}
        )
        stats = remote_stats(base_url, arrivals=False)
    finally:
        stop_server_process(proc)
    generated = sum(1 for r in out if r["generation"] is not None)
    total = stats["total_requests"]
    limited = stats["statuses"].get(429, 0)
    print(f"W5: {args.rows} rows, 0 ms latency, {args.rate_429:.0%} of requests answered 429")
    print(f"  rows with a generation : {generated} / {len(out)}")
    print(f"  wall time              : {wall:.2f} s")
    print(f"  throughput             : {len(out) / wall:.0f} rows/s")
    print(f"  total requests         : {total} ({limited} answered 429 = {limited / total:.1%})")
    print(
        f"  client retries         : {counters['retries']}, final concurrency limit "
        f"{counters['concurrency_limit']}"
    )
    print(f"  peak RSS (client)      : {peak_rss_mb():.0f} MB")
    return 0 if generated == args.rows == len(out) else 1


if __name__ == "__main__":
    sys.exit(main())

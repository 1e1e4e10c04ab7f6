"""W1-W3: the pipeline workloads of issue 3 against the local OpenAI-compatible server.

    python benchmarks/workloads.py            # W1, W2, W3, 3 repetitions each
    python benchmarks/workloads.py W1 --rows 100000 --repeat 1   # the memory check

Each repetition starts a fresh Python process (wall time includes imports) that runs
``LoadDataFromDicts >> TextGeneration(OpenAILLM) >> KeepColumns(["instruction", "generation"])``
against the test server, itself a separate process. Printed per run: rows/s (rows over the
process's wall time), run time, process wall time, peak RSS, requests the server saw.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _common import median, peak_rss_mb, run_child

WORKLOADS = {
    "W1": {"rows": 10_000, "latency_ms": 0, "concurrency": 64, "generations": 1},
    "W2": {"rows": 2_000, "latency_ms": 200, "concurrency": 200, "generations": 1},
    "W3": {"rows": 1_000, "latency_ms": 0, "concurrency": 64, "generations": 4},
}


def child(args: argparse.Namespace) -> None:
    """One run, in this process; prints a JSON line of figures."""
    import tempfile

    t0 = time.perf_counter()
    from alambic.llms import OpenAILLM
    from alambic.pipeline import Pipeline
    from alambic.steps import KeepColumns, LoadDataFromDicts
    from alambic.steps.tasks import TextGeneration

    with Pipeline(name=f"bench-{args.workload.lower()}", cache_dir=tempfile.mkdtemp()) as pipeline:
        load = LoadDataFromDicts(data=[{"instruction": f"question {i}"} for i in range(args.rows)])
        task = TextGeneration(
            llm=OpenAILLM(model="bench", base_url=args.base_url, max_concurrency=args.concurrency),
            num_generations=args.generations,
            group_generations=args.generations > 1,
        )
        keep = KeepColumns(columns=["instruction", "generation"])
        load >> task >> keep
    start = time.perf_counter()
    distiset = pipeline.run(use_cache=False, show_progress=False, storage=not args.no_store)
    elapsed = time.perf_counter() - start
    rows = len(distiset["default"]["train"])
    print(
        json.dumps(
            {
                "rows": rows,
                "run_s": round(elapsed, 3),
                "since_start_s": round(time.perf_counter() - t0, 3),
                "peak_rss_mb": round(peak_rss_mb(), 1),
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("workloads", nargs="*", default=list(WORKLOADS))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--rows", type=int, default=None, help="override the row count")
    parser.add_argument("--no-store", action="store_true", help="run without the run store")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    parser.add_argument("--workload", help=argparse.SUPPRESS)
    parser.add_argument("--concurrency", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--generations", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    from alambic.testing.openai_server import (
        remote_reset,
        remote_stats,
        run_server_process,
        stop_server_process,
    )

    for name in args.workloads:
        spec = WORKLOADS[name]
        rows = args.rows or spec["rows"]
        proc, base_url = run_server_process(latency_s=spec["latency_ms"] / 1000)
        try:
            rates = []
            for rep in range(args.repeat):
                remote_reset(base_url)
                result = run_child(
                    [
                        __file__,
                        "--child",
                        "--workload",
                        name,
                        "--base-url",
                        base_url,
                        "--rows",
                        str(rows),
                        "--concurrency",
                        str(spec["concurrency"]),
                        "--generations",
                        str(spec["generations"]),
                        *(["--no-store"] if args.no_store else []),
                    ]
                )
                stats = remote_stats(base_url, arrivals=False)
                requests = sum(stats.get("paths", {}).values())
                rate = result["rows"] / result["process_wall_s"]
                run_rate = result["rows"] / result["run_s"]
                rates.append(run_rate)
                print(
                    f"{name} rep {rep + 1}: {result['rows']} rows, {run_rate:,.0f} rows/s in the run "
                    f"({result['run_s']:.2f} s), {rate:,.0f} rows/s over the process wall time "
                    f"({result['process_wall_s']:.2f} s incl. imports), peak RSS "
                    f"{result['peak_rss_mb']:.0f} MB, server saw {requests} requests",
                    flush=True,
                )
            print(
                f"{name}: median {median(rates):,.0f} rows/s over {len(rates)} runs\n", flush=True
            )
        finally:
            stop_server_process(proc)


if __name__ == "__main__":
    main()

"""The Ray executor next to the local one: W1, W6 and a scaling run, interleaved.

    PYTHONPATH=src python benchmarks/ray_executor.py                 # everything, 3 rounds
    PYTHONPATH=src python benchmarks/ray_executor.py scaling --repeat 1

Workloads (``LoadDataFromDicts >> TextGeneration(OpenAILLM) >> KeepColumns``, the test server
in its own process, every run a fresh Python process, run store on, request cache off):

- ``W1``: 10,000 rows, 0 ms latency, ``max_concurrency=64``: the framework's overhead.
- ``W6``: 3,000 rows against a server allowing 6,000 requests/min in any 1 s window
  (100/s), ``rpm=6000``: the budget is the bound, not the executor. Local, and Ray with 1
  and 2 replicas sharing the budget; printed as a share of the limit over the whole run
  (actor start-up included) and between the first and last request the server saw.
- ``W7``: 20,000 rows, 1 s +- 0.5 s latency, 2,000 in flight in all (ideal 2,000 rows/s):
  local, and Ray with 2 replicas of 1,000 each, whose client work then runs in two processes
  (on 2 cores one client process is CPU-bound below the target; see the README).
- ``scaling``: 4,000 rows, 200 ms latency, ``max_concurrency=50`` per replica, with 1, 2 and
  4 replicas (Ray actors): ideal 250, 500 and 1,000 rows/s.

Printed per run: rows/s over ``pipeline.run`` (Ray's start-up measured apart: ``ray.init``
happens before the clock starts), the driver's peak RSS, requests and 429s the server saw.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from _common import median, peak_rss_mb, run_child


def child(args: argparse.Namespace) -> None:
    """One run in this process; prints a JSON line of figures."""
    os.environ["ALAMBIC_REQUEST_CACHE"] = "0"
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    init_s = 0.0
    if args.executor == "ray":
        import ray

        started = time.perf_counter()
        ray.init(num_cpus=max(4, args.replicas + 1), include_dashboard=False, log_to_driver=False)
        init_s = time.perf_counter() - started
    from alambic.llms import OpenAILLM
    from alambic.pipeline import Pipeline
    from alambic.steps import KeepColumns, LoadDataFromDicts
    from alambic.steps.base import StepResources
    from alambic.steps.tasks import TextGeneration

    llm_options: dict[str, Any] = {"max_concurrency": args.concurrency}
    if args.rpm:
        llm_options["rpm"] = args.rpm
    with Pipeline(name=f"bench-ray-{args.workload}", cache_dir=tempfile.mkdtemp()) as pipeline:
        load = LoadDataFromDicts(data=[{"instruction": f"question {i}"} for i in range(args.rows)])
        task = TextGeneration(
            llm=OpenAILLM(model="bench", base_url=args.base_url, **llm_options),
            input_batch_size=50,
            resources=StepResources(replicas=args.replicas, cpus=0.5),
        )
        keep = KeepColumns(columns=["instruction", "generation"])
        load >> task >> keep
    start = time.perf_counter()
    distiset = pipeline.run(use_cache=False, show_progress=False, executor=args.executor)
    elapsed = time.perf_counter() - start
    rows = distiset["default"]["train"]
    generated = sum(1 for g in rows["generation"] if g is not None)
    print(
        json.dumps(
            {
                "rows": len(rows),
                "generated": generated,
                "run_s": round(elapsed, 3),
                "ray_init_s": round(init_s, 2),
                "peak_rss_mb": round(peak_rss_mb(), 1),
            }
        )
    )


SPECS: dict[str, dict[str, Any]] = {
    "W1": {"rows": 10_000, "latency_s": 0.0, "concurrency": 64, "rpm": 0, "replicas": [1]},
    "W6": {"rows": 3_000, "latency_s": 0.0, "concurrency": 64, "rpm": 6000, "replicas": [1, 2]},
    "W7": {
        "rows": 20_000,
        "latency_s": 0.5,
        "jitter_s": 1.0,
        "concurrency": 2000,
        "split": True,  # the concurrency is the total, shared by the replicas
        "rpm": 0,
        "replicas": [2],
    },
    "scaling": {
        "rows": 4_000,
        "latency_s": 0.2,
        "concurrency": 50,
        "rpm": 0,
        "replicas": [1, 2, 4],
    },
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("workloads", nargs="*", default=list(SPECS))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--executor", default="local", help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    parser.add_argument("--workload", help=argparse.SUPPRESS)
    parser.add_argument("--rows", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--concurrency", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--rpm", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--replicas", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    from alambic.testing.openai_server import (
        ServerConfig,
        remote_reset,
        remote_stats,
        run_server_process,
        stop_server_process,
    )

    for name in args.workloads:
        spec = SPECS[name]
        config = ServerConfig(latency_s=spec["latency_s"], jitter_s=spec.get("jitter_s", 0.0))
        if spec["rpm"]:
            config = ServerConfig(rpm_limit=spec["rpm"] // 60, rate_window_s=1.0)
        proc, base_url = run_server_process(config)
        try:
            variants = [("local", 1)] if name != "scaling" else []
            variants += [("ray", r) for r in spec["replicas"]]
            rates: dict[tuple[str, int], list[float]] = {v: [] for v in variants}
            for rep in range(args.repeat):
                for executor, replicas in variants:  # interleaved: one of each per round
                    remote_reset(base_url)
                    command = [__file__, "--child", "--executor", executor, "--workload", name]
                    command += ["--base-url", base_url, "--rows", str(spec["rows"])]
                    concurrency = spec["concurrency"]
                    if spec.get("split"):
                        concurrency //= replicas
                    command += [
                        "--concurrency",
                        str(concurrency),
                        "--rpm",
                        str(spec["rpm"]),
                    ]
                    result = run_child([*command, "--replicas", str(replicas)])
                    stats = remote_stats(base_url, arrivals=bool(spec["rpm"]))
                    rate = result["rows"] / result["run_s"]
                    rates[(executor, replicas)].append(rate)
                    limited = stats["statuses"].get(429, stats["statuses"].get("429", 0))
                    extra = ""
                    if spec["rpm"]:
                        # the pace the server saw, first to last arrival (start-up apart)
                        arrivals = sorted(stats["arrivals"])
                        served = (len(arrivals) - limited - 1) / (arrivals[-1] - arrivals[0])
                        limit = spec["rpm"] / 60
                        extra = (
                            f", {rate / limit:.1%} of the limit over the run, "
                            f"{served / limit:.1%} between first and last request"
                        )
                    print(
                        f"{name} {executor} x{replicas} round {rep + 1}: "
                        f"{result['generated']}/{result['rows']} rows, {rate:,.0f} rows/s"
                        f"{extra} ({result['run_s']:.2f} s; ray.init {result['ray_init_s']:.1f} s"
                        f" apart), driver peak RSS {result['peak_rss_mb']:.0f} MB, "
                        f"{stats['total_requests']} requests, {limited} answered 429",
                        flush=True,
                    )
            for (executor, replicas), values in rates.items():
                print(
                    f"{name} {executor} x{replicas}: median {median(values):,.0f} rows/s "
                    f"over {len(values)} runs",
                    flush=True,
                )
            if ("local", 1) in rates and ("ray", 1) in rates:
                ratio = median(rates[("ray", 1)]) / median(rates[("local", 1)])
                print(f"{name}: Ray / local = {ratio:.2f}\n", flush=True)
        finally:
            stop_server_process(proc)


if __name__ == "__main__":
    main()

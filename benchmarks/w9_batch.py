"""W9: 10,000 rows through OpenAI's Batch API protocol (``OpenAILLM(use_batch_api=True)``).

The batch test server (``alambic.testing.openai_batch_server``) runs in its own process and
completes each job in ``--stages`` parts, one every ``--stage-s`` seconds (the simulated
wait). The pipeline ``LoadDataFromDicts >> TextGeneration`` runs in a fresh interpreter with
the run store on, jobs of ``--job-size`` requests.

Figures: rows/s of the run's wall time less the simulated wait (stages x stage_s: the jobs
are created together and wait side by side), and the requests the server saw submitted, which
must be the row count exactly; then the same with a SIGKILL while jobs are polled and a rerun.

    PYTHONPATH=src python benchmarks/w9_batch.py [--rows 10000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from _common import median


def child(url: str, rows: int, job_size: int) -> None:
    from alambic.llms import OpenAILLM
    from alambic.pipeline import Pipeline
    from alambic.steps import LoadDataFromDicts
    from alambic.steps.tasks import TextGeneration

    with Pipeline(name="w9-batch") as pipeline:
        load = LoadDataFromDicts(data=[{"instruction": f"question {i}"} for i in range(rows)])
        llm = OpenAILLM(
            model="gpt-4o-mini",
            base_url=url,
            use_batch_api=True,
            batch_max_requests=job_size,
            batch_collect_s=0.5,
            batch_poll_s=0.1,
            batch_poll_max_s=0.5,
            generation_kwargs={"max_new_tokens": 16},
        )
        load >> TextGeneration(name="gen", llm=llm)
    start = time.perf_counter()
    distiset = pipeline.run(show_progress=False)
    seconds = time.perf_counter() - start
    out = distiset["default"]["train"].to_list()
    good = sum(1 for i, r in enumerate(out) if r["generation"] == f"reply to: question {i}")
    print(json.dumps({"seconds": seconds, "rows": len(out), "good_rows": good}))


def _server(stages: int, stage_s: float) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "alambic.testing.openai_batch_server",
            "--stages",
            str(stages),
            "--stage-s",
            str(stage_s),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    return proc, line.removeprefix("listening on ") + "/v1"


def _spawn(url: str, rows: int, job_size: int, cache: str) -> subprocess.Popen[str]:
    env = dict(os.environ, ALAMBIC_CACHE_DIR=cache)
    return subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--child",
            url,
            "--rows",
            str(rows),
            "--job-size",
            str(job_size),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _result(proc: subprocess.Popen[str]) -> dict[str, Any]:
    out, err = proc.communicate(timeout=1200)
    if proc.returncode != 0:
        raise RuntimeError(f"the run failed ({proc.returncode}):\n{err[-3000:]}")
    data: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return data


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--child")
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--job-size", type=int, default=2_500)
    parser.add_argument("--stages", type=int, default=4)
    parser.add_argument("--stage-s", type=float, default=0.5)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.rows, args.job_size)
        return
    from alambic.testing.openai_batch_server import remote_batch_stats

    wait = args.stages * args.stage_s
    rates = []
    for _ in range(args.repeat):
        server, url = _server(args.stages, args.stage_s)
        try:
            with tempfile.TemporaryDirectory() as cache:
                result = _result(_spawn(url, args.rows, args.job_size, cache))
            stats = remote_batch_stats(url)
        finally:
            server.terminate()
            server.wait()
        rate = result["rows"] / max(1e-9, result["seconds"] - wait)
        rates.append(rate)
        print(
            f"run: {result['seconds']:.2f} s ({wait:.1f} s simulated wait), {rate:,.0f} rows/s "
            f"excluding the wait, rows {result['good_rows']}/{result['rows']}, "
            f"requests submitted {stats['requests_submitted']:,}, twice "
            f"{len(stats['submitted_twice'])}, jobs {stats['jobs']}",
            flush=True,
        )
    print(f"median: {median(rates):,.0f} rows/s excluding the simulated wait")

    server, url = _server(args.stages, args.stage_s)
    try:
        with tempfile.TemporaryDirectory() as cache:
            killed = _spawn(url, args.rows, args.job_size, cache)
            while remote_batch_stats(url)["polls"] < 2:
                if killed.poll() is not None:
                    raise RuntimeError("the run ended before its jobs were polled")
                time.sleep(0.02)
            killed.send_signal(signal.SIGKILL)
            killed.wait()
            at_kill = remote_batch_stats(url)
            result = _result(_spawn(url, args.rows, args.job_size, cache))
        stats = remote_batch_stats(url)
    finally:
        server.terminate()
        server.wait()
    print(
        f"SIGKILL while polling ({at_kill['requests_submitted']:,} requests in "
        f"{at_kill['jobs']} jobs by then), rerun: rows {result['good_rows']}/{result['rows']}, "
        f"requests submitted {stats['requests_submitted']:,}, twice "
        f"{len(stats['submitted_twice'])}, jobs {stats['jobs']}"
    )


if __name__ == "__main__":
    main()

"""A pipeline run on Ray in a subprocess, for the Ray executor's fault tests.

``python ray_script.py --url URL --n N --out OUT [--executor ray|local] [--cluster]
[--kill-node-at K]`` runs::

    LoadDataFromDicts(name="load", data=[{"instruction": f"question {i}"} ...])
      >> TextGeneration(name="generate", llm=OpenAILLM(base_url=URL), replicas=R)
      >> KeepColumns(name="keep", columns=["instruction", "generation"])

against a test server, with the run store in ``$ALAMBIC_CACHE_DIR`` and Ray's files in
``$RAY_TMPDIR`` (the caller sets both), and writes the rows and what happened to ``--out``.

- ``--cluster``: a two-node Ray cluster on loopback (head on 127.0.0.2 with 2 CPUs, a worker
  node on 127.0.0.3 with 1 CPU); the task's replicas are spread over both.
- ``--kill-node-at K``: once the server has received K requests, the worker node is removed
  at once (its raylet and workers killed), mid-run.
- ``--rpm R``: the LLM's requests per minute (one shared pace for every replica).
- ``--budget K``: ``run(budget=Budget(requests=K))``; the summary's ``budget`` is written.

A run that raises writes ``error_type`` and ``error`` to ``--out`` and exits with 3.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any


def build(args: argparse.Namespace) -> Any:
    from alambic.llms.openai import OpenAILLM
    from alambic.pipeline import Pipeline
    from alambic.steps import KeepColumns, LoadDataFromDicts
    from alambic.steps.base import StepResources
    from alambic.steps.tasks.text_generation import TextGeneration

    data = [{"instruction": f"question {i}"} for i in range(args.n)]
    with Pipeline(name="ray-fault-test") as pipeline:
        load = LoadDataFromDicts(name="load", data=data, batch_size=20)
        generate = TextGeneration(
            name="generate",
            llm=OpenAILLM(
                model="test-model",
                base_url=args.url,
                api_key="not-needed",
                max_concurrency=args.max_concurrency,
                rpm=args.rpm,
            ),
            input_batch_size=10,
            resources=StepResources(replicas=args.replicas, cpus=1),
        )
        keep = KeepColumns(name="keep", columns=["instruction", "generation"])
        load >> generate >> keep
    return pipeline


def server_requests(url: str) -> int:
    root = url.rsplit("/v1", 1)[0]
    with urllib.request.urlopen(f"{root}/_stats", timeout=5) as reply:
        return int(json.loads(reply.read())["total_requests"])


def kill_node_when(
    args: argparse.Namespace, cluster: Any, node: Any, executor: Any, report: dict[str, Any]
) -> threading.Thread:
    def watch() -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if server_requests(args.url) >= args.kill_node_at:
                break
            time.sleep(0.02)
        report["actor_nodes"] = sorted(executor.placement.get("generate", []))
        report["killed_node"] = node.node_id
        report["requests_at_kill"] = server_requests(args.url)
        cluster.remove_node(node, allow_graceful=False)
        report["killed"] = True

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--executor", default="ray", choices=["ray", "local"])
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--max-concurrency", type=int, default=4)
    parser.add_argument("--cluster", action="store_true")
    parser.add_argument("--kill-node-at", type=int, default=None)
    parser.add_argument("--budget", type=int, default=None)
    parser.add_argument("--rpm", type=int, default=None, help="the LLM's rpm (shared budget)")
    args = parser.parse_args(argv)

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    report: dict[str, Any] = {"killed": False}
    cluster = None
    executor: Any = "local"
    if args.executor == "ray":
        import ray

        from alambic.pipeline.executor.ray_executor import RayExecutor

        executor = RayExecutor()

        if args.cluster:
            from ray.cluster_utils import Cluster

            cluster = Cluster(
                initialize_head=True,
                head_node_args={"num_cpus": 2, "node_ip_address": "127.0.0.2"},
            )
            worker = cluster.add_node(num_cpus=1, node_ip_address="127.0.0.3")
            ray.init(address=cluster.address, log_to_driver=False)
            if args.kill_node_at is not None:
                kill_node_when(args, cluster, worker, executor, report)
        else:
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    pipeline = build(args)
    started = time.perf_counter()
    options: dict[str, Any] = {}
    if args.budget is not None:
        from alambic.budget import Budget

        options["budget"] = Budget(requests=args.budget)
    try:
        distiset = pipeline.run(show_progress=False, executor=executor, **options)
    except Exception as exc:  # the run's own error, for the test to read
        report["error_type"] = type(exc).__name__
        report["error"] = str(exc)
        Path(args.out).write_text(json.dumps(report, default=str))
        return 3
    report["seconds"] = time.perf_counter() - started
    dataset = distiset["default"]["train"] if "default" in distiset else []
    report["rows"] = [
        {"instruction": r["instruction"], "generation": r["generation"]} for r in dataset
    ]
    report["summary"] = pipeline.last_summary
    report["budget"] = (pipeline.last_summary or {}).get("budget")
    tmp = Path(args.out).with_suffix(".tmp")
    tmp.write_text(json.dumps(report, default=str))
    os.replace(tmp, args.out)
    if args.executor == "ray":
        import ray

        ray.shutdown()
        if cluster is not None:
            cluster.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())

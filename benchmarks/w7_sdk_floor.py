"""W7's reference: the official openai SDK alone, no pipeline, on W7's server and load.

W7 asks a pipeline for >= 80% of the ideal 2,000 rows/s. This measures what a bare asyncio
loop over ``AsyncOpenAI.chat.completions.create`` reaches on the same machine, same server
(1 s +- 0.5 s), same 20,000 requests, 2,000 in flight: the most a pipeline through the SDK
could reach in one process. ``--processes 2`` splits the requests over two processes (1,000
in flight each), as a two-process client would.

    python benchmarks/w7_sdk_floor.py [--http lean|sdk] [--call create|post] [--processes 1|2]

``--http sdk`` is the SDK as installed (its own HTTP stack); ``--http lean`` gives it
alambic's lean transport (``alambic.llms._http``), as ``OpenAILLM`` does for ``http://``.
``--call create`` is ``chat.completions.create`` (typed parameters and reply); ``--call
post`` the SDK's documented low-level ``post`` with the reply left unparsed, as
``OpenAILLM`` sends: the pipeline minus everything but its request.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))


def _client(base_url: str, http: str) -> Any:
    import openai

    from alambic.llms._http import lean_http_client

    extra = {"http_client": lean_http_client(120.0)} if http == "lean" else {}
    return openai.AsyncOpenAI(base_url=base_url, api_key="k", max_retries=0, **extra)


async def _send_all(
    base_url: str, http: str, call: str, first: int, count: int, in_flight: int
) -> None:
    client = _client(base_url, http)
    slots = asyncio.Semaphore(in_flight)
    from alambic.llms.openai import sdk_response_type

    async def one(i: int) -> None:
        messages = [{"role": "user", "content": f"question number {i}"}]
        async with slots:
            if call == "create":
                reply = await client.chat.completions.create(model="bench", messages=messages)
                assert reply.choices[0].message.content
            else:
                raw = await client.post(
                    "/chat/completions",
                    body={"model": "bench", "messages": messages},
                    cast_to=sdk_response_type(),
                )
                assert json.loads(raw.content)["choices"][0]["message"]["content"]

    await asyncio.gather(*(one(i) for i in range(first, first + count)))
    await client.close()


def _child(args: tuple[str, str, str, int, int, int], start: Any, cpu: Any) -> None:
    base_url, http, call, first, count, in_flight = args
    import openai  # noqa: F401  (imported before the clock starts)

    import alambic.llms._http  # noqa: F401

    start.wait()
    cpu_start = time.process_time()
    asyncio.run(_send_all(base_url, http, call, first, count, in_flight))
    cpu.put(time.process_time() - cpu_start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=2000)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--http", choices=["lean", "sdk"], default="lean")
    parser.add_argument("--call", choices=["create", "post"], default="create")
    args = parser.parse_args(argv)

    from alambic.testing.openai_server import (
        ServerConfig,
        remote_stats,
        run_server_process,
        stop_server_process,
    )

    proc, base_url = run_server_process(ServerConfig(latency_s=0.5, jitter_s=1.0, seed=7))
    try:
        context = multiprocessing.get_context("spawn")
        start, cpu = context.Event(), context.Queue()
        share, in_flight = args.rows // args.processes, args.concurrency // args.processes
        workers = [
            context.Process(
                target=_child,
                args=((base_url, args.http, args.call, k * share, share, in_flight), start, cpu),
            )
            for k in range(args.processes)
        ]
        for worker in workers:
            worker.start()
        time.sleep(3.0)  # the children import the SDK before the clock starts
        began = time.perf_counter()
        start.set()
        cpu_s = [cpu.get(timeout=600) for _ in workers]
        wall = time.perf_counter() - began
        for worker in workers:
            worker.join()
        stats = remote_stats(base_url, arrivals=False)
    finally:
        stop_server_process(proc)
    sent = share * args.processes
    rate = sent / wall
    print(
        f"W7 SDK floor: {sent} requests, 1.0 s +- 0.5 s, {args.concurrency} in flight, "
        f"{args.processes} process(es), {args.http} HTTP, {args.call}"
    )
    print(f"  throughput             : {rate:.0f} requests/s = {rate / 2000:.0%} of ideal 2000")
    print(
        "  client CPU per request : "
        + ", ".join(f"{c / share * 1e6:.0f} us" for c in cpu_s)
        + f"; server saw {stats['total_requests']}, max in flight {stats['max_in_flight']}"
    )
    return 0 if stats["total_requests"] >= sent else 1


if __name__ == "__main__":
    sys.exit(main())

"""W7's reference: the official openai SDK alone, no pipeline, on W7's server and load.

W7 asks a pipeline for >= 80% of the ideal 2,000 rows/s. This measures what a bare asyncio
loop over ``AsyncOpenAI.chat.completions.create`` reaches on the same machine, same server
(1 s +- 0.5 s), same 20,000 requests, 2,000 in flight: the most a pipeline through the SDK
could reach in one process. ``--processes 2`` splits the requests over two processes (1,000
in flight each), as a two-process client would.

    python benchmarks/w7_sdk_floor.py [--http lean|sdk] [--call create|post] [--processes 1|2]
    python benchmarks/w7_sdk_floor.py --call post --as-alambic [--imports-in-clock]

``--http sdk`` is the SDK as installed (its own HTTP stack); ``--http lean`` gives it
alambic's lean transport (``alambic.llms._http``), as ``OpenAILLM`` does for ``http://``;
``--http raw`` is no SDK at all (the same request's bytes written to the socket and the
reply read with asyncio protocols, on uvloop): what W7's latency spread leaves to a client
that costs next to nothing, on this machine.
``--call create`` is ``chat.completions.create`` (typed parameters and reply); ``--call
post`` the SDK's documented low-level ``post`` with the reply left unparsed, as
``OpenAILLM`` sends: the pipeline minus everything but its request. ``--as-alambic`` sends
that ``post`` exactly as a run does: on uvloop, with the run's collector setting
(``steady_gc``), to the absolute URL, the platform headers left out and the same request
options. ``--imports-in-clock`` imports the SDK after the clock starts, as a run does (a
pipeline imports its LLM's SDK when it loads the step, inside ``Pipeline.run``).
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


class _RawReply(asyncio.Protocol):
    """One connection of the raw client: completes ``waiter`` when a whole reply is in."""

    def __init__(self) -> None:
        self.buffer = b""
        self.waiter: asyncio.Future[None] | None = None

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = self.buffer[:end].lower()
        start = head.index(b"content-length:") + len(b"content-length:")
        stop = head.find(b"\r\n", start)
        if len(self.buffer) >= end + 4 + int(head[start : stop if stop > 0 else None]):
            self.buffer = b""
            if self.waiter is not None:
                self.waiter.set_result(None)


async def _send_raw(base_url: str, count: int, in_flight: int) -> None:
    from urllib.parse import urlparse

    url = urlparse(base_url)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    loop = asyncio.get_running_loop()
    left = [count]

    async def connection() -> None:
        transport, reply = await loop.create_connection(_RawReply, host, port)
        while left[0] > 0:
            left[0] -= 1
            body = json.dumps(
                {"model": "bench", "messages": [{"role": "user", "content": f"q {left[0]}"}]}
            ).encode()
            head = (
                f"POST {url.path}/chat/completions HTTP/1.1\r\nHost: {url.netloc}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            )
            reply.waiter = loop.create_future()
            transport.write(head.encode() + body)
            await reply.waiter
        transport.close()

    await asyncio.gather(*(connection() for _ in range(min(in_flight, count))))


async def _send_all(
    base_url: str, http: str, call: str, first: int, count: int, in_flight: int, as_alambic: bool
) -> None:
    import openai

    client = _client(base_url, http)
    slots = asyncio.Semaphore(in_flight)
    from alambic.llms.openai import sdk_response_type

    url = f"{client.base_url}chat/completions"
    omit = openai.Omit()
    headers = {k: omit for k in client.default_headers if k.lower().startswith("x-stainless-")}

    async def one(i: int) -> None:
        messages = [{"role": "user", "content": f"question number {i}"}]
        async with slots:
            if as_alambic:
                options: Any = {
                    "headers": headers,
                    "max_retries": 0,
                    "timeout": client.timeout,
                    "idempotency_key": f"floor-{i}",
                    "post_parser": openai.NOT_GIVEN,
                }
                raw = await client.post(
                    url,
                    body={"model": "bench", "messages": messages},
                    cast_to=sdk_response_type(),
                    options=options,
                )
                assert json.loads(raw.content)["choices"][0]["message"]["content"]
            elif call == "create":
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


def _child(args: tuple[str, str, str, int, int, int, bool, bool], start: Any, cpu: Any) -> None:
    base_url, http, call, first, count, in_flight, as_alambic, imports_in_clock = args
    if not imports_in_clock:
        import openai  # noqa: F401  (imported before the clock starts)

        import alambic.llms._http  # noqa: F401
    from alambic.pipeline.executor.lifecycle import steady_gc

    start.wait()
    cpu_start = time.process_time()
    coro = (
        _send_raw(base_url, count, in_flight)
        if http == "raw"
        else _send_all(base_url, http, call, first, count, in_flight, as_alambic)
    )
    if as_alambic or http == "raw":
        import uvloop

        with steady_gc():
            uvloop.run(coro)
    else:
        asyncio.run(coro)
    cpu.put(time.process_time() - cpu_start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=2000)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--http", choices=["lean", "sdk", "raw"], default="lean")
    parser.add_argument("--call", choices=["create", "post"], default="create")
    parser.add_argument("--as-alambic", action="store_true", help="post as a run sends it")
    parser.add_argument("--imports-in-clock", action="store_true")
    args = parser.parse_args(argv)
    if args.as_alambic and (args.call != "post" or args.http != "lean"):
        parser.error("--as-alambic sends the low-level post through the lean transport")

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
                args=(
                    (
                        base_url,
                        args.http,
                        args.call,
                        k * share,
                        share,
                        in_flight,
                        args.as_alambic,
                        args.imports_in_clock,
                    ),
                    start,
                    cpu,
                ),
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
        f"{args.processes} process(es), {args.http} HTTP"
        + ("" if args.http == "raw" else f", {args.call}")
        + (", as alambic sends it" if args.as_alambic else "")
        + (", SDK imported in the clock" if args.imports_in_clock else "")
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

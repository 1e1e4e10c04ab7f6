"""A fast, deterministic, fault-injecting OpenAI-compatible HTTP server for tests.

A package by concern: :mod:`.config` (the knobs), :mod:`.app` (faults, rate limits, control
endpoints), :mod:`.generation` (reply bodies), :mod:`.protocol` (HTTP/1.1 on asyncio),
:mod:`.inprocess` (a thread, for tests) and :mod:`.process` (a process and its CLI, for
benchmarks).

Why this exists: alambic's LLM clients, schedulers, retry logic, rate limiters and
crash/resume machinery must be tested against something that *behaves like* the
OpenAI API (same JSON shapes, same status codes and headers, SSE streaming) but is
deterministic, free, offline, and can misbehave on demand: latency, 500s, 429s with or
without ``Retry-After``, a real sliding-window RPM/TPM limit, malformed or truncated
bodies, dropped or hung connections.  A mock at the Python level would not exercise the
HTTP stacks (``openai``/``httpx``, ``aiohttp``) whose error mapping we depend on.

It is written on raw :mod:`asyncio` (an :class:`asyncio.Protocol` with a minimal
HTTP/1.1 parser: keep-alive, pipelining, ``Content-Length`` bodies) and the stdlib
:mod:`json`, with no web framework, because benchmarks push thousands of requests per
second through it and the server must never be the bottleneck being measured.
Measured with ``benchmarks/server_selftest.py`` on the 2-core development machine
(server in its own process, aiohttp client in another, one ``ClientSession``, 64
concurrent requests, 20,000 chat completions): **4,600-6,000 requests/s** non-streaming
(SSE streaming: 2,800-7,000/s, noisier), with the server process at only ~33 % of one
core (about 65 us of server CPU per request): the Python client is the bottleneck, not
the server.  On a machine busy with other work the figure drops with the client's share
of CPU (~1,000-1,500/s was seen under a load average of 6).

Two ways to use it:

* in-process (tests): ``with OpenAITestServer(ServerConfig(...)) as server:`` runs the
  server on its own event loop in a daemon thread; ``server.base_url`` is
  ``http://127.0.0.1:PORT/v1``; ``server.stats``, ``server.reset()`` and
  ``server.update(**knobs)`` inspect and steer it live;
* as a process (benchmarks, so client and server do not share a GIL):
  ``python -m alambic.testing.openai_server --port 0 --latency-ms 20 ...`` prints one line
  ``listening on http://127.0.0.1:PORT`` and serves until SIGTERM/SIGINT;
  :func:`run_server_process` wraps that, and :func:`remote_stats`,
  :func:`remote_reset` and :func:`remote_update` talk to the control endpoints.

Endpoints: ``POST /v1/chat/completions`` (JSON or ``"stream": true`` SSE),
``POST /v1/completions``, ``POST /v1/embeddings``, ``GET /v1/models``, and the control
endpoints ``GET /_stats`` (``?arrivals=0`` omits the timestamp lists: ``arrivals`` and
``departures``, from which the requests in flight at any moment follow), ``POST /_reset``,
``GET|POST /_config`` and ``GET /health``.  Control endpoints are never counted, faulted
or authenticated, so observing the server does not change what is observed.

Replies are deterministic: chat answers ``"reply to: <last user message>"`` (choice
``i > 0`` gets the suffix ``" #i"``), legacy completions ``"reply to: <prompt>"``;
``response_format`` of type ``json_schema``/``json_object`` yields a minimal valid JSON
instance; ``max_tokens``/``max_completion_tokens`` truncate to that many words with
``finish_reason="length"``.  "Tokens" are whitespace-separated words everywhere
(``usage``, TPM accounting), which keeps expected values easy to compute in tests.

Fault semantics (applied only to the three ``POST`` generation endpoints):

1. a ``status_sequence`` entry, then ``fail_first_n``, script the first requests
   exactly; a scripted request bypasses rate limits and random faults (an entry of 200
   is a normal answer);
2. otherwise the RPM/TPM sliding windows are checked (rejected requests do not consume
   quota) and a 429 with ``Retry-After`` is returned when full;
3. otherwise one uniform draw from ``random.Random(seed)`` picks at most one of, in
   this order: drop, hang, 500, 429, malformed body, truncated body (so the rates are
   exact probabilities and must sum to at most 1);
4. ``latency_s`` plus uniform ``[0, jitter_s)`` delays every reply, errors included.

Draws happen in arrival order on a single event loop, so with a fixed seed and a
sequential client the fault pattern is reproducible.
"""

from __future__ import annotations

from alambic.testing.openai_server.config import ReplyFn, ServerConfig, schema_instance
from alambic.testing.openai_server.inprocess import OpenAITestServer
from alambic.testing.openai_server.process import (
    _parse_args as _parse_args,
)
from alambic.testing.openai_server.process import (
    main,
    remote_reset,
    remote_stats,
    remote_update,
    run_server_process,
    stop_server_process,
)

__all__ = [
    "OpenAITestServer",
    "ReplyFn",
    "ServerConfig",
    "main",
    "remote_reset",
    "remote_stats",
    "remote_update",
    "run_server_process",
    "schema_instance",
    "stop_server_process",
]

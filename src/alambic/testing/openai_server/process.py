"""The test server as a process (benchmarks), its control-endpoint helpers and its CLI."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import select
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from alambic.testing.openai_server.app import _App
from alambic.testing.openai_server.config import _CONFIG_FIELDS, _LISTENING_PREFIX, ServerConfig
from alambic.testing.openai_server.protocol import _create_server, _shutdown

# --------------------------------------------------------------------------- process mode


def _root_url(base_url: str) -> str:
    base = base_url.rstrip("/")
    return base[: -len("/v1")] if base.endswith("/v1") else base


def _http_json(url: str, body: Any = None, timeout: float = 10.0) -> Any:
    # No proxies: the server is on 127.0.0.1 and *_proxy variables must not interfere.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        url,
        data=data,
        method="GET" if body is None else "POST",
        headers={"content-type": "application/json"},
    )
    with opener.open(req, timeout=timeout) as resp:
        return json.loads(resp.read())


def remote_stats(base_url: str, *, arrivals: bool = True) -> dict[str, Any]:
    """``GET /_stats`` of a server (any process); status keys converted back to ``int``."""
    query = "" if arrivals else "?arrivals=0"
    stats: dict[str, Any] = _http_json(f"{_root_url(base_url)}/_stats{query}")
    stats["statuses"] = {int(k): v for k, v in stats["statuses"].items()}
    return stats


def remote_reset(base_url: str) -> None:
    """``POST /_reset`` a server (any process)."""
    _http_json(f"{_root_url(base_url)}/_reset", {})


def remote_update(base_url: str, **knobs: Any) -> dict[str, Any]:
    """``POST /_config`` a server (any process); returns its new configuration."""
    config: dict[str, Any] = _http_json(f"{_root_url(base_url)}/_config", knobs)
    return config


def _pythonpath_with_package(env: Mapping[str, str]) -> str:
    """PYTHONPATH that lets the child import this ``alambic`` even if not installed."""
    src = str(Path(__file__).resolve().parents[2])
    parts = [src] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != src]
    return os.pathsep.join(parts)


def run_server_process(
    config: ServerConfig | None = None,
    *,
    timeout: float = 30.0,
    env: Mapping[str, str] | None = None,
    **knobs: Any,
) -> tuple[subprocess.Popen[bytes], str]:
    """Start the server as a subprocess; return ``(process, base_url)`` once it listens.

    A separate process keeps the server off the client's GIL, which benchmarks need.
    The child gets the whole config as ``--config-json`` (``reply`` cannot cross a
    process boundary and is rejected).  Stop it with :func:`stop_server_process`.
    """
    config = dataclasses.replace(config or ServerConfig(), **knobs)
    if config.reply is not None:
        raise ValueError("a reply callable cannot be sent to a server process")
    config.validate()
    child_env = dict(os.environ if env is None else env)
    child_env["PYTHONPATH"] = _pythonpath_with_package(child_env)
    cmd = [
        sys.executable,
        "-m",
        "alambic.testing.openai_server",
        "--config-json",
        json.dumps(config.to_json_dict()),
    ]
    # Unbuffered bytes: ``select`` then sees exactly what ``readline`` has not consumed.
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, bufsize=0, env=child_env)
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            stop_server_process(proc)
            raise TimeoutError(f"the test server did not start within {timeout} s")
        ready, _, _ = select.select([proc.stdout], [], [], remaining)
        if not ready:
            continue
        line = proc.stdout.readline().decode(errors="replace")
        if not line:
            code = proc.wait()
            proc.stdout.close()
            raise RuntimeError(f"the test server process exited with code {code} before listening")
        if line.startswith(_LISTENING_PREFIX):
            return proc, line[len(_LISTENING_PREFIX) :].strip() + "/v1"


def stop_server_process(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """Terminate a server started by :func:`run_server_process` and release its pipe."""
    from alambic.testing.processes import stop_process

    stop_process(proc, timeout)
    if proc.stdout is not None:
        proc.stdout.close()


async def _serve_until_signal(config: ServerConfig) -> None:
    app = _App(config)
    server = await _create_server(app)
    port = server.sockets[0].getsockname()[1]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    print(f"{_LISTENING_PREFIX}http://{config.host}:{port}", flush=True)
    try:
        await stop.wait()
    finally:
        await _shutdown(server, app)


def _parse_args(argv: Sequence[str] | None) -> ServerConfig:
    p = argparse.ArgumentParser(
        prog="python -m alambic.testing.openai_server",
        description="Deterministic, fault-injecting OpenAI-compatible test server.",
    )
    p.add_argument("--config-json", help="a JSON object of ServerConfig fields (flags override)")
    p.add_argument("--host", default=None)
    p.add_argument("--port", type=int, default=None, help="0 picks a free port (default)")
    p.add_argument("--model", default=None)
    p.add_argument("--latency-ms", type=float, default=None)
    p.add_argument("--jitter-ms", type=float, default=None)
    p.add_argument("--failure-rate", type=float, default=None)
    p.add_argument("--rate-429", type=float, default=None)
    p.add_argument("--retry-after", type=float, default=None, help="seconds, sent with 429s")
    p.add_argument("--rpm-limit", type=int, default=None)
    p.add_argument("--tpm-limit", type=int, default=None)
    p.add_argument("--rate-window", type=float, default=None, help="seconds (default 60)")
    p.add_argument("--malformed-rate", type=float, default=None)
    p.add_argument("--truncated-rate", type=float, default=None)
    p.add_argument("--drop-rate", type=float, default=None)
    p.add_argument("--hang-rate", type=float, default=None)
    p.add_argument("--empty-rate", type=float, default=None)
    p.add_argument("--fail-first-n", type=int, default=None)
    p.add_argument("--status-sequence", default=None, help="comma-separated, e.g. 429,429,200")
    p.add_argument("--api-key", default=None)
    p.add_argument("--no-honour-n", action="store_true", help="ignore n: always one choice")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--record-requests", action="store_true")
    p.add_argument("--embedding-dim", type=int, default=None)
    p.add_argument("--stream-delay-ms", type=float, default=None)
    args = p.parse_args(argv)

    knobs: dict[str, Any] = json.loads(args.config_json) if args.config_json else {}
    direct = (
        "host", "port", "model", "failure_rate", "rate_429", "rpm_limit", "tpm_limit",
        "malformed_rate", "truncated_rate", "drop_rate", "hang_rate", "empty_rate", "fail_first_n",
        "api_key", "seed", "embedding_dim",
    )  # fmt: skip
    for name in direct:
        value = getattr(args, name)
        if value is not None:
            knobs[name] = value
    for flag, name in (
        ("latency_ms", "latency_s"),
        ("jitter_ms", "jitter_s"),
        ("stream_delay_ms", "stream_delay_s"),
    ):
        if getattr(args, flag) is not None:
            knobs[name] = getattr(args, flag) / 1000.0
    if args.retry_after is not None:
        knobs["retry_after_s"] = args.retry_after
    if args.rate_window is not None:
        knobs["rate_window_s"] = args.rate_window
    if args.status_sequence:
        knobs["status_sequence"] = [int(s) for s in args.status_sequence.split(",") if s.strip()]
    if args.no_honour_n:
        knobs["honour_n"] = False
    if args.record_requests:
        knobs["record_requests"] = True
    unknown = set(knobs) - _CONFIG_FIELDS
    if unknown or "reply" in knobs:
        p.error(f"unknown config fields: {sorted(unknown | ({'reply'} & set(knobs)))}")
    config = ServerConfig(**knobs)
    try:
        config.validate()
    except ValueError as exc:
        p.error(str(exc))
    return config


def main(argv: Sequence[str] | None = None) -> None:
    """CLI entry point: serve until SIGTERM/SIGINT."""
    config = _parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve_until_signal(config))


if __name__ == "__main__":
    main()

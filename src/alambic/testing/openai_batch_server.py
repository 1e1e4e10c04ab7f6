"""A local server for OpenAI's Batch API protocol, for tests and benchmarks.

Serves what the official ``openai`` SDK calls for a batch job: ``POST /v1/files`` (JSONL
upload, multipart), ``POST /v1/batches``, ``GET /v1/batches/{id}``, ``GET /v1/batches``
(list, newest first), ``POST /v1/batches/{id}/cancel`` and ``GET /v1/files/{id}/content``
(and the same under Azure OpenAI's ``/openai/...`` paths).
Each request line of a job is answered like the chat test server does (``"reply to: <last
user message>"``, ``max_tokens`` words at most; tokens are whitespace-separated words).

Jobs finish in stages: a job completes ``1/stages`` of its requests each ``stage_s`` seconds
after it was created, then turns ``completed`` (or ``expired`` after ``expire_after_stages``,
keeping what was answered and listing the rest as ``batch_expired`` in the error file).
Requests whose last user message contains one of ``fail_on`` fail with a 400 in the error
file. ``stats`` counts requests submitted in created jobs, per ``custom_id`` too, so a test can
assert that no request was submitted twice. Control: ``GET /_stats``, ``POST /_config``.

Written on the standard library's threading HTTP server: job traffic is a few calls per job.
"""

from __future__ import annotations

import argparse
import email.parser
import email.policy
import json
import signal
import threading
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["BatchServerConfig", "OpenAIBatchTestServer", "main", "remote_batch_stats"]


@dataclass
class BatchServerConfig:
    stages: int = 2
    """A job completes in this many equal parts."""
    stage_s: float = 0.05
    """Seconds between two parts (the simulated wait)."""
    expire_after_stages: int | None = None
    """After this many parts, the job expires with the rest unanswered."""
    fail_on: list[str] = field(default_factory=list)
    """A request whose last user message contains one of these fails (400)."""
    max_requests_per_job: int = 50_000
    upload_delay_s: float = 0.0
    """Seconds an upload takes before it is stored (to kill a client mid-upload)."""
    create_delay_s: float = 0.0
    """Seconds between creating a job and replying (to kill a client that has not seen it)."""


@dataclass
class _Job:
    id: str
    input_file_id: str
    lines: list[dict[str, Any]]
    created: float
    metadata: dict[str, Any] | None
    status: str = "validating"
    cancelled: bool = False
    output_file_id: str | None = None
    error_file_id: str | None = None
    finished_at: float | None = None


class _State:
    def __init__(self, config: BatchServerConfig) -> None:
        self.config = config
        self.lock = threading.Lock()
        self.files: dict[str, bytes] = {}
        self.jobs: dict[str, _Job] = {}
        self.counter = 0
        self.submitted: Counter[str] = Counter()
        self.polls = 0
        self.uploads_started = 0

    def next_id(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}_{self.counter:08d}"

    def stats(self) -> dict[str, Any]:
        with self.lock:
            return {
                "requests_submitted": sum(self.submitted.values()),
                "unique_requests": len(self.submitted),
                "submitted_twice": sorted(k for k, v in self.submitted.items() if v > 1),
                "jobs": len(self.jobs),
                "files": len(self.files),
                "polls": self.polls,
                "uploads_started": self.uploads_started,
                "statuses": dict(Counter(j.status for j in self.jobs.values())),
            }

    # -- progress ------------------------------------------------------------------------

    def advance(self, job: _Job, now: float) -> None:
        if job.status in ("completed", "expired", "cancelled", "failed"):
            return
        cfg = self.config
        stages_done = int((now - job.created) / cfg.stage_s) if cfg.stage_s > 0 else cfg.stages
        if job.cancelled:
            self.finish(job, "cancelled", self.answered(job, stages_done), now)
        elif cfg.expire_after_stages is not None and stages_done > cfg.expire_after_stages:
            self.finish(job, "expired", self.answered(job, cfg.expire_after_stages), now)
        elif stages_done >= cfg.stages:
            self.finish(job, "completed", len(job.lines), now)
        else:
            job.status = "in_progress"

    def answered(self, job: _Job, stages_done: int) -> int:
        stages = max(1, self.config.stages)
        return min(len(job.lines), len(job.lines) * max(0, stages_done) // stages)

    def counts(self, job: _Job, now: float) -> dict[str, int]:
        cfg = self.config
        done = (
            len(job.lines)
            if job.status == "completed"
            else self.answered(job, int((now - job.created) / cfg.stage_s) if cfg.stage_s else 0)
        )
        failed = sum(1 for line in job.lines[:done] if self.fails(line))
        return {"total": len(job.lines), "completed": done - failed, "failed": failed}

    def fails(self, line: dict[str, Any]) -> bool:
        text = _last_user(line.get("body", {}).get("messages", []))
        return any(needle in text for needle in self.config.fail_on)

    def finish(self, job: _Job, status: str, answered: int, now: float) -> None:
        out, err = [], []
        for i, line in enumerate(job.lines):
            custom_id = line.get("custom_id")
            if i >= answered:
                err.append(
                    {
                        "id": f"batch_req_{job.id}_{i}",
                        "custom_id": custom_id,
                        "response": None,
                        "error": {"code": f"batch_{status}", "message": f"job {status}"},
                    }
                )
            elif self.fails(line):
                err.append(
                    {
                        "id": f"batch_req_{job.id}_{i}",
                        "custom_id": custom_id,
                        "response": {
                            "status_code": 400,
                            "request_id": f"req_{i}",
                            "body": {
                                "error": {
                                    "message": "this request was refused by the test server",
                                    "type": "invalid_request_error",
                                    "code": "refused",
                                }
                            },
                        },
                        "error": None,
                    }
                )
            else:
                out.append(
                    {
                        "id": f"batch_req_{job.id}_{i}",
                        "custom_id": custom_id,
                        "response": {
                            "status_code": 200,
                            "request_id": f"req_{i}",
                            "body": _chat_reply(line.get("body", {}), f"chatcmpl-{job.id}-{i}"),
                        },
                        "error": None,
                    }
                )
        if out:
            job.output_file_id = self.next_id("file")
            self.files[job.output_file_id] = _jsonl(out)
        if err:
            job.error_file_id = self.next_id("file")
            self.files[job.error_file_id] = _jsonl(err)
        job.status = status
        job.finished_at = now

    def batch_object(self, job: _Job, now: float) -> dict[str, Any]:
        finished = job.finished_at
        return {
            "id": job.id,
            "object": "batch",
            "endpoint": "/v1/chat/completions",
            "errors": None,
            "input_file_id": job.input_file_id,
            "completion_window": "24h",
            "status": job.status,
            "output_file_id": job.output_file_id,
            "error_file_id": job.error_file_id,
            "created_at": int(job.created),
            "in_progress_at": int(job.created),
            "expires_at": int(job.created) + 86_400,
            "completed_at": int(finished) if finished and job.status == "completed" else None,
            "expired_at": int(finished) if finished and job.status == "expired" else None,
            "cancelled_at": int(finished) if finished and job.status == "cancelled" else None,
            "failed_at": None,
            "finalizing_at": None,
            "cancelling_at": None,
            "request_counts": self.counts(job, now),
            "metadata": job.metadata,
        }


def _last_user(messages: list[Any]) -> str:
    for m in reversed(messages):
        if isinstance(m, dict) and m.get("role") == "user":
            content = m.get("content")
            return content if isinstance(content, str) else json.dumps(content)
    return ""


def _chat_reply(body: dict[str, Any], ident: str) -> dict[str, Any]:
    messages = body.get("messages") or []
    prompt = sum(len(str(m.get("content", "")).split()) for m in messages if isinstance(m, dict))
    limit = body.get("max_completion_tokens", body.get("max_tokens"))
    n = int(body.get("n") or 1)
    choices = []
    completion = 0
    for i in range(n):
        words = (f"reply to: {_last_user(messages)}" + (f" #{i}" if i else "")).split()
        finish = "stop"
        if limit is not None and len(words) > int(limit):
            words, finish = words[: int(limit)], "length"
        completion += len(words)
        choices.append(
            {
                "index": i,
                "message": {"role": "assistant", "content": " ".join(words)},
                "finish_reason": finish,
                "logprobs": None,
            }
        )
    return {
        "id": ident,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", "test-model"),
        "choices": choices,
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        },
    }


def _jsonl(items: list[dict[str, Any]]) -> bytes:
    return ("\n".join(json.dumps(i) for i in items) + "\n").encode()


def _multipart_file(content_type: str, body: bytes) -> tuple[bytes, str]:
    parser = email.parser.BytesParser(policy=email.policy.HTTP)
    message = parser.parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + body)
    for part in message.iter_parts():
        if part.get_param("name", header="content-disposition") == "file":
            payload = part.get_payload(decode=True)
            return (payload if isinstance(payload, bytes) else b""), str(part.get_filename())
    raise ValueError("no 'file' part in the upload")


def _route(raw: str) -> str:
    """The path without its query; Azure's ``/openai/...`` paths as OpenAI's ``/v1/...``."""
    path = raw.split("?")[0].rstrip("/")
    if path.startswith("/openai/"):
        path = "/v1/" + path.removeprefix("/openai/")
    return path


def _handler(state: _State) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            return

        def _send(self, status: int, data: Any, raw: bytes | None = None) -> None:
            body = raw if raw is not None else json.dumps(data).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json" if raw is None else "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _error(self, status: int, message: str) -> None:
            self._send(status, {"error": {"message": message, "type": "invalid_request_error"}})

        def do_GET(self) -> None:
            path = _route(self.path)
            now = time.time()
            if path == "/_stats":
                return self._send(200, state.stats())
            with state.lock:
                if path.startswith("/v1/files/") and path.endswith("/content"):
                    raw = state.files.get(path.split("/")[3])
                    if raw is None:
                        return self._error(404, f"no file {path.split('/')[3]}")
                    return self._send(200, None, raw=raw)
                if path.startswith("/v1/batches/"):
                    found = state.jobs.get(path.split("/")[3])
                    if found is None:
                        return self._error(404, f"no batch {path.split('/')[3]}")
                    state.polls += 1
                    state.advance(found, now)
                    return self._send(200, state.batch_object(found, now))
                if path == "/v1/batches":
                    jobs = sorted(state.jobs.values(), key=lambda j: j.id, reverse=True)
                    for job in jobs:
                        state.advance(job, now)
                    data = [state.batch_object(j, now) for j in jobs]
                    return self._send(
                        200,
                        {
                            "object": "list",
                            "data": data,
                            "first_id": data[0]["id"] if data else None,
                            "last_id": data[-1]["id"] if data else None,
                            "has_more": False,
                        },
                    )
            return self._error(404, f"no route GET {path}")

        def do_POST(self) -> None:
            path = _route(self.path)
            body = self._body()
            now = time.time()
            if path == "/_config":
                with state.lock:
                    for key, value in json.loads(body or b"{}").items():
                        setattr(state.config, key, value)
                return self._send(200, {"ok": True})
            reply: dict[str, Any] | None = None
            created_delay = 0.0
            if path == "/v1/files":
                with state.lock:
                    state.uploads_started += 1
                    delay = state.config.upload_delay_s
                time.sleep(delay)
            with state.lock:
                if path == "/v1/files":
                    content, filename = _multipart_file(self.headers["Content-Type"], body)
                    file_id = state.next_id("file")
                    state.files[file_id] = content
                    return self._send(
                        200,
                        {
                            "id": file_id,
                            "object": "file",
                            "bytes": len(content),
                            "created_at": int(now),
                            "filename": filename,
                            "purpose": "batch",
                            "status": "processed",
                        },
                    )
                if path == "/v1/batches":
                    request = json.loads(body)
                    source = state.files.get(request.get("input_file_id", ""))
                    if source is None:
                        return self._error(400, f"no input file {request.get('input_file_id')}")
                    lines = [json.loads(x) for x in source.decode().splitlines() if x.strip()]
                    if len(lines) > state.config.max_requests_per_job:
                        return self._error(400, "too many requests in one batch")
                    job = _Job(
                        state.next_id("batch"),
                        request["input_file_id"],
                        lines,
                        now,
                        request.get("metadata"),
                    )
                    state.jobs[job.id] = job
                    state.submitted.update(str(line.get("custom_id")) for line in lines)
                    reply = state.batch_object(job, now)
                    created_delay = state.config.create_delay_s
            if reply is not None:
                time.sleep(created_delay)
                return self._send(200, reply)
            with state.lock:
                if path.startswith("/v1/batches/") and path.endswith("/cancel"):
                    target = state.jobs.get(path.split("/")[3])
                    if target is None:
                        return self._error(404, "no such batch")
                    target.cancelled = True
                    state.advance(target, now)
                    return self._send(200, state.batch_object(target, now))
            return self._error(404, f"no route POST {path}")

    return Handler


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        # a client killed mid-request (the kill tests do it) resets its connection: not news
        return


class OpenAIBatchTestServer:
    """``with OpenAIBatchTestServer(config) as server:``; ``server.base_url`` ends in /v1."""

    def __init__(self, config: BatchServerConfig | None = None, *, port: int = 0) -> None:
        self.state = _State(config or BatchServerConfig())
        self._server = _QuietServer(("127.0.0.1", port), _handler(self.state))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    @property
    def config(self) -> BatchServerConfig:
        return self.state.config

    @property
    def stats(self) -> dict[str, Any]:
        return self.state.stats()

    def start(self) -> OpenAIBatchTestServer:
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> OpenAIBatchTestServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def remote_batch_stats(base_url: str) -> dict[str, Any]:
    """``stats`` of a server running in another process (``base_url`` ends in /v1)."""
    root = base_url.rsplit("/v1", 1)[0]
    with urllib.request.urlopen(f"{root}/_stats", timeout=10) as reply:
        data: dict[str, Any] = json.loads(reply.read())
        return data


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--stages", type=int, default=2)
    parser.add_argument("--stage-s", type=float, default=0.05)
    args = parser.parse_args(argv)
    server = OpenAIBatchTestServer(
        BatchServerConfig(stages=args.stages, stage_s=args.stage_s), port=args.port
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    server.start()
    print(f"listening on {server.base_url.rsplit('/v1', 1)[0]}", flush=True)
    stop.wait()
    server.stop()


if __name__ == "__main__":
    main()

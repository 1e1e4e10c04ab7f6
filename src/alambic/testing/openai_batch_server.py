"""A local server for OpenAI's Batch API protocol, for tests and benchmarks.

Serves what the official ``openai`` SDK calls for a batch job: ``POST /v1/files`` (JSONL
upload, multipart), ``POST /v1/batches``, ``GET /v1/batches/{id}``, ``GET /v1/batches``
(list, newest first), ``POST /v1/batches/{id}/cancel`` and ``GET /v1/files/{id}/content``
(and the same under Azure OpenAI's ``/openai/...`` paths).
Each request line of a job is answered like the chat test server does (``"reply to: <last
user message>"``, ``max_tokens`` words at most; tokens are whitespace-separated words).

Jobs finish in stages, refuse some requests, expire or fail as :mod:`alambic.testing.batch_jobs`
says (its ``StagedJobs`` keeps this server's jobs, files and counts, as it does the other
provider batch servers'): an expired or cancelled job lists its unanswered requests as
``batch_expired`` / ``batch_cancelled`` in the error file, a refused request is there with
its status. ``stats`` counts requests submitted in created jobs, per ``custom_id`` too, so a
test can assert that no request was submitted twice. Control: ``GET /_stats``,
``POST /_config``.

Written on the standard library's threading HTTP server: job traffic is a few calls per job.
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
import time
import urllib.request
from collections import Counter
from http.server import BaseHTTPRequestHandler
from typing import Any

from alambic.testing.batch_jobs import (
    BatchRequest,
    Job,
    JobsConfig,
    JobsServer,
    StagedJobs,
    jsonl,
    multipart_file,
    reply_words,
)

__all__ = ["BatchServerConfig", "OpenAIBatchTestServer", "main", "remote_batch_stats"]


class BatchServerConfig(JobsConfig):
    """:class:`JobsConfig` with OpenAI's 50,000 requests a job; ``upload_delay_s`` is
    ``submit_delay_s`` by the name this server first gave it (an upload is what submits)."""

    def __init__(
        self,
        *,
        max_requests_per_job: int = 50_000,
        upload_delay_s: float | None = None,
        **fields: Any,
    ) -> None:
        super().__init__(max_requests_per_job=max_requests_per_job, **fields)
        if upload_delay_s is not None:
            self.submit_delay_s = upload_delay_s

    @property
    def upload_delay_s(self) -> float:
        """Seconds an upload takes before it is stored (to kill a client mid-upload)."""
        return self.submit_delay_s

    @upload_delay_s.setter
    def upload_delay_s(self, value: float) -> None:
        self.submit_delay_s = value


class _Job(Job):
    @property
    def lines(self) -> list[dict[str, Any]]:
        """The job's input file, a dict a line."""
        return [r.line for r in self.requests]


class _Jobs(StagedJobs):
    """``StagedJobs`` whose finished jobs get their output and error files."""

    job_class = _Job

    @property
    def uploads_started(self) -> int:
        return self.submits_started

    def advance(self, job: Job, now: float) -> None:
        super().advance(job, now)
        job.extra["seen"] = True  # validating until first looked at, then in_progress
        if job.state not in ("running", "failed") and "output_file_id" not in job.extra:
            out, err = _results(self, job)
            job.extra["output_file_id"] = self.store(jsonl(out)) if out else None
            job.extra["error_file_id"] = self.store(jsonl(err)) if err else None

    def extra_stats(self) -> dict[str, Any]:
        return {
            "files": len(self.files),
            "uploads_started": self.submits_started,
            "statuses": dict(Counter(_status(j) for j in self.jobs.values())),
        }


def _status(job: Job) -> str:
    if job.state != "running":
        return job.state
    return "in_progress" if job.extra.get("seen") else "validating"


def _results(state: StagedJobs, job: Job) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The lines of a finished job's output and error files."""
    out, err = [], []
    fail_status = state.config.fail_status
    for i, (request, outcome) in enumerate(state.outcomes(job)):
        line: dict[str, Any] = {"id": f"batch_req_{job.id}_{i}", "custom_id": request.custom_id}
        if outcome == "unanswered":
            code, message = f"batch_{job.state}", f"job {job.state}"
            err.append({**line, "response": None, "error": {"code": code, "message": message}})
        elif outcome == "refused":
            error = {
                "message": "this request was refused by the test server",
                "type": "invalid_request_error" if fail_status < 500 else "server_error",
                "code": "refused",
            }
            response = {
                "status_code": fail_status,
                "request_id": f"req_{i}",
                "body": {"error": error},
            }
            err.append({**line, "response": response, "error": None})
        else:
            body = _chat_reply(request.line.get("body", {}), f"chatcmpl-{job.id}-{i}")
            response = {"status_code": 200, "request_id": f"req_{i}", "body": body}
            out.append({**line, "response": response, "error": None})
    return out, err


def _batch_object(state: StagedJobs, job: Job) -> dict[str, Any]:
    status = _status(job)
    finished = int(job.finished_at) if job.finished_at else None
    answered = [o for _, o in state.outcomes(job) if o != "unanswered"]
    errors = {
        "object": "list",
        "data": [{"code": "failed", "message": "the test server failed this job", "line": None}],
    }
    return {
        "id": job.id,
        "object": "batch",
        "endpoint": "/v1/chat/completions",
        "errors": errors if status == "failed" else None,
        "input_file_id": job.extra["input_file_id"],
        "completion_window": "24h",
        "status": status,
        "output_file_id": job.extra.get("output_file_id"),
        "error_file_id": job.extra.get("error_file_id"),
        "created_at": int(job.created),
        "in_progress_at": int(job.created),
        "expires_at": int(job.created) + 86_400,
        "completed_at": finished if status == "completed" else None,
        "expired_at": finished if status == "expired" else None,
        "cancelled_at": finished if status == "cancelled" else None,
        "failed_at": finished if status == "failed" else None,
        "finalizing_at": None,
        "cancelling_at": None,
        "request_counts": {
            "total": len(job.requests),
            "completed": answered.count("answer"),
            "failed": answered.count("refused"),
        },
        "metadata": job.extra["metadata"],
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
    choices = []
    completion = 0
    for i in range(int(body.get("n") or 1)):
        text = _last_user(messages) + (f" #{i}" if i else "")
        words, cut = reply_words(text, None if limit is None else int(limit))
        completion += len(words)
        choices.append(
            {
                "index": i,
                "message": {"role": "assistant", "content": " ".join(words)},
                "finish_reason": "length" if cut else "stop",
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


def _route(raw: str) -> str:
    """The path without its query; Azure's ``/openai/...`` paths as OpenAI's ``/v1/...``."""
    path = raw.split("?")[0].rstrip("/")
    if path.startswith("/openai/"):
        path = "/v1/" + path.removeprefix("/openai/")
    return path


def _requests(source: bytes) -> list[BatchRequest]:
    """An input file's requests."""
    requests = []
    for text in source.decode().splitlines():
        if text.strip():
            line = json.loads(text)
            body = line.get("body", {})
            limit = body.get("max_completion_tokens", body.get("max_tokens"))
            requests.append(
                BatchRequest(
                    str(line.get("custom_id")),
                    _last_user(body.get("messages", [])),
                    None if limit is None else int(limit),
                    body.get("model", "test-model"),
                    line=line,
                )
            )
    return requests


def _handler(state: _Jobs) -> type[BaseHTTPRequestHandler]:
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
                    return self._send(200, _batch_object(state, found))
                if path == "/v1/batches":
                    jobs = sorted(state.jobs.values(), key=lambda j: j.id, reverse=True)
                    for job in jobs:
                        state.advance(job, now)
                    data = [_batch_object(state, j) for j in jobs]
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
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            now = time.time()
            if path == "/_config":
                with state.lock:
                    for key, value in json.loads(body or b"{}").items():
                        setattr(state.config, key, value)
                return self._send(200, {"ok": True})
            if path == "/v1/files":
                if not state.submit_arrived(self.connection):
                    return  # the client died while uploading: nothing was received
                content, filename = multipart_file(self.headers["Content-Type"], body)
                with state.lock:
                    file_id = state.store(content)
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
                with state.lock:
                    source = state.files.get(request.get("input_file_id", ""))
                if source is None:
                    return self._error(400, f"no input file {request.get('input_file_id')}")
                extra = {
                    "input_file_id": request["input_file_id"],
                    "metadata": request.get("metadata"),
                }
                try:
                    reply = state.create(
                        "batch",
                        _requests(source),
                        lambda job: _batch_object(state, job),
                        extra=extra,
                    )
                except ValueError as exc:
                    return self._error(400, str(exc))
                return self._send(200, reply)
            with state.lock:
                if path.startswith("/v1/batches/") and path.endswith("/cancel"):
                    target = state.jobs.get(path.split("/")[3])
                    if target is None:
                        return self._error(404, "no such batch")
                    target.cancelled = True
                    state.advance(target, now)
                    return self._send(200, _batch_object(state, target))
            return self._error(404, f"no route POST {path}")

    return Handler


class OpenAIBatchTestServer(JobsServer):
    """``with OpenAIBatchTestServer(config) as server:``; ``server.base_url`` ends in /v1."""

    def __init__(self, config: BatchServerConfig | None = None, *, port: int = 0) -> None:
        self._config = config or BatchServerConfig()
        state = _Jobs(self._config)
        super().__init__(state, _handler(state), port=port)

    @property
    def base_url(self) -> str:
        return f"{self.root}/v1"

    @property
    def config(self) -> BatchServerConfig:
        return self._config


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
    print(f"listening on {server.root}", flush=True)
    stop.wait()
    server.stop()


if __name__ == "__main__":
    main()

"""A local server for the batch protocols of Anthropic, Mistral and the Gemini API, for tests.

One server speaks all three, as their official SDKs call them (point the SDK's base-URL
option at ``server.base_url``):

- Anthropic Message Batches: ``POST /v1/messages/batches``, ``GET /v1/messages/batches``
  (newest first), ``GET /v1/messages/batches/{id}``, ``GET .../{id}/results`` (JSONL),
  ``POST .../{id}/cancel``. An expired job ends with its unanswered requests ``expired``.
- Mistral batch jobs: ``POST /v1/files`` (JSONL upload, multipart), ``POST /v1/batch/jobs``,
  ``GET /v1/batch/jobs`` (newest first), ``GET /v1/batch/jobs/{id}``,
  ``GET /v1/files/{id}/content``, ``POST /v1/batch/jobs/{id}/cancel``.
- Gemini API batch mode (inline requests): ``POST /v1beta/models/{model}:batchGenerateContent``,
  ``GET /v1beta/batches`` (newest first), ``GET /v1beta/batches/{id}``,
  ``POST /v1beta/batches/{id}:cancel`` (and the same under ``/v1/``).

Jobs finish in stages, refuse some requests and expire as :mod:`alambic.testing.batch_jobs`
says; ``stats`` counts what was submitted per request id. Standard-library HTTP server:
job traffic is a few calls per job.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable
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

__all__ = ["JobsConfig", "ProviderBatchTestServer"]

Reply = tuple[int, Any]  # status, JSON body (bytes: sent as they are)


def _iso(t: float | None) -> str | None:
    if t is None:
        return None
    return dt.datetime.fromtimestamp(t, dt.UTC).isoformat().replace("+00:00", "Z")


def _last_user(messages: list[Any]) -> str:
    for m in reversed(messages or []):
        if isinstance(m, dict) and m.get("role") == "user":
            content = m.get("content")
            if isinstance(content, list):
                return " ".join(str(c.get("text", "")) for c in content if isinstance(c, dict))
            return str(content)
    return ""


# -- Anthropic ---------------------------------------------------------------------------------


def _anthropic_batch(state: StagedJobs, job: Job, root: str) -> dict[str, Any]:
    outcomes = state.outcomes(job)
    ended = job.state != "running"
    counts = {"processing": 0, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
    for _, outcome in outcomes:
        if not ended:
            counts["processing"] += 1
        elif outcome == "unanswered" and job.state == "failed":
            counts["errored"] += 1
        elif outcome == "unanswered":
            counts["canceled" if job.state == "cancelled" else "expired"] += 1
        else:
            counts["succeeded" if outcome == "answer" else "errored"] += 1
    return {
        "id": job.id,
        "type": "message_batch",
        "processing_status": "ended" if ended else "canceling" if job.cancelled else "in_progress",
        "request_counts": counts,
        "created_at": _iso(job.created),
        "expires_at": _iso(job.created + 86_400),
        "ended_at": _iso(job.finished_at),
        "cancel_initiated_at": None,
        "archived_at": None,
        "results_url": f"{root}/v1/messages/batches/{job.id}/results" if ended else None,
    }


def _anthropic_result(state: StagedJobs, job: Job, request: BatchRequest, outcome: str) -> Any:
    if outcome == "unanswered" and job.state == "failed":  # no job failure: each request errs
        error = {"type": "api_error", "message": "the test server failed this job"}
        return {"type": "errored", "error": {"type": "error", "error": error}}
    if outcome == "unanswered":
        return {"type": "canceled" if job.state == "cancelled" else "expired"}
    if outcome == "refused":
        kind = "invalid_request_error" if state.config.fail_status < 500 else "api_error"
        error = {"type": kind, "message": "refused by the test server"}
        return {"type": "errored", "error": {"type": "error", "error": error}}
    words, cut = reply_words(request.prompt, request.max_tokens)
    message = {
        "id": f"msg_{job.id}_{request.custom_id[:8]}",
        "type": "message",
        "role": "assistant",
        "model": request.model,
        "content": [{"type": "text", "text": " ".join(words)}],
        "stop_reason": "max_tokens" if cut else "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": len(request.prompt.split()), "output_tokens": len(words)},
    }
    return {"type": "succeeded", "message": message}


def _anthropic(state: StagedJobs, method: str, path: str, body: bytes, root: str) -> Reply | None:
    if not path.startswith("/v1/messages/batches"):
        return None
    parts = path.split("/")  # ['', 'v1', 'messages', 'batches', id?, action?]
    if method == "POST" and len(parts) == 4:
        requests = [
            BatchRequest(
                r["custom_id"],
                _last_user(r["params"].get("messages")),
                r["params"].get("max_tokens"),
                r["params"].get("model", "test-model"),
            )
            for r in json.loads(body)["requests"]
        ]
        return _create(state, "msgbatch", requests, lambda job: _anthropic_batch(state, job, root))
    with state.lock:
        now = time.time()
        if method == "GET" and len(parts) == 4:
            jobs = [j for j in state.jobs.values() if j.id.startswith("msgbatch")]
            for each in jobs:
                state.advance(each, now)
            data = [_anthropic_batch(state, j, root) for j in sorted(jobs, key=lambda j: j.id)]
            data.reverse()
            first, last = (data[0]["id"], data[-1]["id"]) if data else (None, None)
            return 200, {"data": data, "has_more": False, "first_id": first, "last_id": last}
        job = state.jobs.get(parts[4])
        if job is None:
            return 404, {"type": "error", "error": {"type": "not_found_error", "message": path}}
        if method == "POST" and parts[-1] == "cancel":
            job.cancelled = True
        state.advance(job, now)
        if method == "GET" and parts[-1] == "results":
            if job.state == "running":
                return 400, {"type": "error", "error": {"type": "invalid_request_error"}}
            lines = [
                {"custom_id": r.custom_id, "result": _anthropic_result(state, job, r, outcome)}
                for r, outcome in state.outcomes(job)
            ]
            return 200, jsonl(lines)
        state.polls += 1
        return 200, _anthropic_batch(state, job, root)


# -- Mistral -----------------------------------------------------------------------------------

_MISTRAL_STATE = {
    "running": "RUNNING",
    "completed": "SUCCESS",
    "expired": "TIMEOUT_EXCEEDED",
    "cancelled": "CANCELLED",
    "failed": "FAILED",
}


def _mistral_job(state: StagedJobs, job: Job) -> dict[str, Any]:
    outcomes = state.outcomes(job)
    answered = [o for _, o in outcomes if o != "unanswered"]
    if job.state != "running" and "output_file" not in job.extra:
        out, err = [], []
        for i, (r, outcome) in enumerate(outcomes):
            if outcome == "answer":
                words, cut = reply_words(r.prompt, r.max_tokens)
                prompt = len(r.prompt.split())
                completion = {
                    "id": f"cmpl-{job.id}-{i}",
                    "object": "chat.completion",
                    "model": job.model,
                    "created": int(time.time()),
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": " ".join(words)},
                            "finish_reason": "length" if cut else "stop",
                        }
                    ],
                    "usage": {
                        "prompt_tokens": prompt,
                        "completion_tokens": len(words),
                        "total_tokens": prompt + len(words),
                    },
                }
                response = {"status_code": 200, "body": completion}
                out.append({"id": f"r{i}", "custom_id": r.custom_id, "response": response})
            elif outcome == "refused":
                error = {"message": "refused by the test server", "code": "3000"}
                status = state.config.fail_status
                response = {"status_code": status, "body": {"object": "error", **error}}
                err.append(
                    {"id": f"r{i}", "custom_id": r.custom_id, "response": response, "error": error}
                )
        for name, lines in (("output_file", out), ("error_file", err)):
            if lines:
                job.extra[name] = state.store(jsonl(lines))
    return {
        "id": job.id,
        "object": "batch",
        "input_files": [job.extra.get("input_file", "")],
        "endpoint": "/v1/chat/completions",
        "model": job.model,
        "errors": [{"message": "the test server failed this job", "count": len(job.requests)}]
        if job.state == "failed"
        else [],
        "status": _MISTRAL_STATE[job.state],
        "created_at": int(job.created),
        "total_requests": len(job.requests),
        "completed_requests": len(answered),
        "succeeded_requests": answered.count("answer"),
        "failed_requests": answered.count("refused"),
        "metadata": {"alambic_job": job.tag} if job.tag else None,
        "output_file": job.extra.get("output_file"),
        "error_file": job.extra.get("error_file"),
        "started_at": int(job.created),
        "completed_at": int(job.finished_at) if job.finished_at else None,
    }


def _mistral(state: StagedJobs, method: str, path: str, body: bytes, ctype: str) -> Reply | None:
    if path == "/v1/files" and method == "POST":
        content, filename = multipart_file(ctype, body)
        with state.lock:
            file_id = state.store(content)
        return 200, {
            "id": file_id,
            "object": "file",
            "size_bytes": len(content),
            "created_at": int(time.time()),
            "filename": filename,
            "purpose": "batch",
            "sample_type": "batch_request",
            "source": "upload",
        }
    if path.startswith("/v1/files/") and path.endswith("/content"):
        with state.lock:
            raw = state.files.get(path.split("/")[3])
        return (404, {"message": "no such file"}) if raw is None else (200, raw)
    if not path.startswith("/v1/batch/jobs"):
        return None
    parts = path.split("/")  # ['', 'v1', 'batch', 'jobs', id?, action?]
    if method == "POST" and len(parts) == 4:
        request = json.loads(body)
        with state.lock:
            source = state.files.get(request["input_files"][0], b"")
        requests = []
        for line in source.decode().splitlines():
            if line.strip():
                item = json.loads(line)
                b = item["body"]
                requests.append(
                    BatchRequest(item["custom_id"], _last_user(b["messages"]), b.get("max_tokens"))
                )
        tag = (request.get("metadata") or {}).get("alambic_job")
        return _create(
            state,
            "mjob",
            requests,
            lambda job: _mistral_job(state, job),
            tag=tag,
            model=request.get("model") or "test-model",
            extra={"input_file": request["input_files"][0]},
        )
    with state.lock:
        now = time.time()
        if method == "GET" and len(parts) == 4:
            jobs = sorted(
                (j for j in state.jobs.values() if j.id.startswith("mjob")), key=lambda j: j.id
            )
            for each in jobs:
                state.advance(each, now)
            data = [_mistral_job(state, j) for j in reversed(jobs)]
            return 200, {"data": data, "object": "list", "total": len(data)}
        job = state.jobs.get(parts[4])
        if job is None:
            return 404, {"object": "error", "message": f"no batch job {parts[4]}"}
        if method == "POST" and parts[-1] == "cancel":
            job.cancelled = True
        state.polls += 1
        state.advance(job, now)
        return 200, _mistral_job(state, job)


# -- Gemini ------------------------------------------------------------------------------------

_GEMINI_STATE = {
    "running": "BATCH_STATE_RUNNING",
    "completed": "BATCH_STATE_SUCCEEDED",
    "expired": "BATCH_STATE_EXPIRED",
    "cancelled": "BATCH_STATE_CANCELLED",
    "failed": "BATCH_STATE_FAILED",
}


def _gemini_operation(state: StagedJobs, job: Job) -> dict[str, Any]:
    batch: dict[str, Any] = {
        "@type": "type.googleapis.com/google.ai.generativelanguage.v1beta.GenerateContentBatch",
        "name": f"batches/{job.id}",
        "displayName": job.tag,
        "model": f"models/{job.model}",
        "state": _GEMINI_STATE[job.state],
        "createTime": _iso(job.created),
        "updateTime": _iso(job.finished_at or job.created),
    }
    if job.state != "running":
        batch["endTime"] = _iso(job.finished_at)
        responses = []
        for r, outcome in state.outcomes(job):
            metadata = {"key": r.custom_id}
            if outcome == "answer":
                words, cut = reply_words(r.prompt, r.max_tokens)
                candidate = {
                    "content": {"role": "model", "parts": [{"text": " ".join(words)}]},
                    "finishReason": "MAX_TOKENS" if cut else "STOP",
                    "index": 0,
                }
                usage = {
                    "promptTokenCount": len(r.prompt.split()),
                    "candidatesTokenCount": len(words),
                    "totalTokenCount": len(r.prompt.split()) + len(words),
                }
                response = {"candidates": [candidate], "usageMetadata": usage}
                responses.append({"response": response, "metadata": metadata})
            elif outcome == "refused":
                error = {"code": state.config.fail_status, "message": "refused by the test server"}
                responses.append({"error": error, "metadata": metadata})
        if responses:
            batch["output"] = {"inlinedResponses": {"inlinedResponses": responses}}
    return {"name": f"batches/{job.id}", "metadata": batch, "done": job.state != "running"}


def _gemini(state: StagedJobs, method: str, path: str, body: bytes) -> Reply | None:
    version, _, rest = path.removeprefix("/").partition("/")
    if version not in ("v1", "v1beta") or not rest.startswith(("models/", "batches")):
        return None
    if method == "POST" and rest.endswith(":batchGenerateContent"):
        model = rest.removeprefix("models/").removesuffix(":batchGenerateContent")
        batch = json.loads(body)["batch"]
        requests = []
        for item in batch["inputConfig"]["requests"]["requests"]:
            request = item["request"]
            config = request.get("generationConfig") or {}
            texts = [
                " ".join(p.get("text", "") for p in c.get("parts", []))
                for c in request.get("contents", [])
                if c.get("role", "user") == "user"
            ]
            key = (item.get("metadata") or {}).get("key", "")
            requests.append(
                BatchRequest(key, texts[-1] if texts else "", config.get("maxOutputTokens"))
            )
        return _create(
            state,
            "gbatch",
            requests,
            lambda job: _gemini_operation(state, job),
            tag=batch.get("displayName"),
            model=model,
        )
    with state.lock:
        now = time.time()
        if method == "GET" and rest == "batches":
            jobs = sorted(
                (j for j in state.jobs.values() if j.id.startswith("gbatch")), key=lambda j: j.id
            )
            for each in jobs:
                state.advance(each, now)
            return 200, {"operations": [_gemini_operation(state, j) for j in reversed(jobs)]}
        if rest.startswith("batches/"):
            name, _, action = rest.removeprefix("batches/").partition(":")
            job = state.jobs.get(name)
            if job is None:
                return 404, {"error": {"code": 404, "message": f"no batch {name}"}}
            if method == "POST" and action == "cancel":
                job.cancelled = True
                state.advance(job, now)
                return 200, {}
            state.polls += 1
            state.advance(job, now)
            return 200, _gemini_operation(state, job)
    return None


# -- shared ------------------------------------------------------------------------------------


def _create(
    state: StagedJobs,
    prefix: str,
    requests: list[BatchRequest],
    render: Callable[[Job], dict[str, Any]],
    **kw: Any,
) -> Reply:
    try:
        return 200, state.create(prefix, requests, render, **kw)
    except ValueError as exc:
        return 400, {"error": {"code": 400, "message": str(exc)}}


def _submits(path: str) -> bool:
    """Whether a POST sends a job's requests (a job's creation, or its file's upload)."""
    return path in ("/v1/messages/batches", "/v1/files") or path.endswith(":batchGenerateContent")


def _handler(state: StagedJobs) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            return

        def _serve(self, method: str) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            path = self.path.split("?")[0].rstrip("/")
            root = f"http://{self.headers.get('Host')}"
            reply: Reply | None
            if method == "POST" and _submits(path) and not state.submit_arrived(self.connection):
                return  # the client died while sending: nothing was received
            if path == "/_stats":
                reply = 200, state.stats()
            else:
                reply = (
                    _anthropic(state, method, path, body, root)
                    or _mistral(state, method, path, body, self.headers.get("Content-Type", ""))
                    or _gemini(state, method, path, body)
                )
            status, data = reply or (404, {"error": {"message": f"no route {method} {path}"}})
            raw = data if isinstance(data, bytes) else json.dumps(data).encode()
            self.send_response(status)
            kind = "application/octet-stream" if isinstance(data, bytes) else "application/json"
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

    return Handler


class ProviderBatchTestServer(JobsServer):
    """``with ProviderBatchTestServer(config) as server:``; ``server.base_url`` is the root
    (``http://127.0.0.1:PORT``), as the Anthropic, Mistral and google-genai SDKs take it."""

    def __init__(self, config: JobsConfig | None = None, *, port: int = 0) -> None:
        state = StagedJobs(config or JobsConfig())
        super().__init__(state, _handler(state), port=port)

    @property
    def base_url(self) -> str:
        return self.root

    @property
    def config(self) -> JobsConfig:
        return self.state.config

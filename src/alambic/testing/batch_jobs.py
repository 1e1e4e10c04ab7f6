"""Batch jobs that finish in stages, shared by the provider batch test servers.

A job completes ``1/stages`` of its requests each ``stage_s`` seconds after it was created,
then ends (or expires after ``expire_after_stages``, keeping what was answered). A request
whose prompt contains one of ``fail_on`` is refused (400). Each request is answered
``"reply to: <last user message>"``, ``max_tokens`` words at most (a token is a word).
``stats()`` counts the requests submitted in created jobs, per id too, so a test can assert
that no request was ever submitted twice. :class:`JobsServer` runs a server's handler on
127.0.0.1 in a thread.
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

__all__ = ["BatchRequest", "Job", "JobsConfig", "JobsServer", "StagedJobs"]

_R = TypeVar("_R")
_S = TypeVar("_S", bound="JobsServer")


@dataclass
class JobsConfig:
    stages: int = 2
    """A job completes in this many equal parts."""
    stage_s: float = 0.05
    """Seconds between two parts (the simulated wait)."""
    expire_after_stages: int | None = None
    """After this many parts, the job expires with the rest unanswered."""
    fail_on: list[str] = field(default_factory=list)
    """A request whose prompt contains one of these is refused (with ``fail_status``)."""
    fail_status: int = 400
    """400: the request's fault; 500: a passing server error (a rerun sends it again)."""
    fail_jobs: bool = False
    """A job ends failed as a whole (nothing answered) instead of completed."""
    max_requests_per_job: int = 100_000
    submit_delay_s: float = 0.0
    """Seconds a job's creation (or its file's upload) takes before the server stores it: a
    client killed then never created the job."""
    create_delay_s: float = 0.0
    """Seconds between storing a new job and replying: a client killed then never heard of it."""


@dataclass
class BatchRequest:
    custom_id: str
    prompt: str
    """The last user message."""
    max_tokens: int | None
    model: str = "test-model"
    line: dict[str, Any] = field(default_factory=dict)
    """The request as the client sent it, for a server whose reply needs more than the prompt."""


@dataclass
class Job:
    id: str
    requests: list[BatchRequest]
    created: float
    tag: str | None = None
    """What the client tagged the job with (metadata, display name)."""
    model: str = "test-model"
    state: str = "running"
    """running, completed, expired, cancelled or failed."""
    answered: int = 0
    """How many requests (in order) have their outcome."""
    cancelled: bool = False
    finished_at: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class StagedJobs:
    """The jobs of one server and what was submitted; callers hold ``lock``."""

    job_class: type[Job] = Job
    """What :meth:`add` makes (a server's subclass may add views of its own)."""

    def __init__(self, config: JobsConfig) -> None:
        self.config = config
        self.lock = threading.Lock()
        self.jobs: dict[str, Job] = {}
        self.files: dict[str, bytes] = {}
        self.counter = 0
        self.submitted: Counter[str] = Counter()
        self.polls = 0
        self.submits_started = 0

    def next_id(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}_{self.counter:08d}"

    def add(self, prefix: str, requests: list[BatchRequest], now: float, **kw: Any) -> Job:
        if len(requests) > self.config.max_requests_per_job:
            raise ValueError(
                f"{len(requests)} requests in one job; the limit is "
                f"{self.config.max_requests_per_job}"
            )
        job = self.job_class(self.next_id(prefix), requests, now, **kw)
        self.jobs[job.id] = job
        self.submitted.update(r.custom_id for r in requests)
        return job

    def create(
        self, prefix: str, requests: list[BatchRequest], render: Callable[[Job], _R], **kw: Any
    ) -> _R:
        """Store a job (``ValueError`` when it is too large) and render the reply to its
        creation, which the client gets ``create_delay_s`` later. Takes ``lock``."""
        with self.lock:
            job = self.add(prefix, requests, time.time(), **kw)
            reply = render(job)
            delay = self.config.create_delay_s
        time.sleep(delay)
        return reply

    def store(self, content: bytes) -> str:
        """Keep a file (an upload, a job's results); its id."""
        file_id = self.next_id("file")
        self.files[file_id] = content
        return file_id

    def submit_arrived(self, connection: socket.socket) -> bool:
        """Count a request that sends a job's requests (its creation, or its file's upload),
        wait ``submit_delay_s``, and say whether the client is still there to be answered
        (one killed meanwhile never submitted anything). Takes ``lock``."""
        with self.lock:
            self.submits_started += 1
            delay = self.config.submit_delay_s
        if delay <= 0:
            return True
        time.sleep(delay)
        connection.setblocking(False)
        try:
            return bool(connection.recv(1, socket.MSG_PEEK))
        except BlockingIOError:
            return True
        except OSError:
            return False
        finally:
            connection.setblocking(True)

    def advance(self, job: Job, now: float) -> None:
        if job.state != "running":
            return
        cfg = self.config
        stages = max(1, cfg.stages)
        done = int((now - job.created) / cfg.stage_s) if cfg.stage_s > 0 else stages
        job.answered = min(len(job.requests), len(job.requests) * max(0, done) // stages)
        if job.cancelled:
            job.state = "cancelled"
        elif cfg.expire_after_stages is not None and done > cfg.expire_after_stages:
            job.answered = len(job.requests) * cfg.expire_after_stages // stages
            job.state = "expired"
        elif done >= stages and cfg.fail_jobs:
            job.answered, job.state = 0, "failed"
        elif done >= stages:
            job.state = "completed"
        if job.state != "running":
            job.finished_at = now

    def refused(self, request: BatchRequest) -> bool:
        return any(needle in request.prompt for needle in self.config.fail_on)

    def outcomes(self, job: Job) -> list[tuple[BatchRequest, str]]:
        """Per request: ``answer``, ``refused`` or ``unanswered`` (so far)."""
        return [
            (r, "unanswered" if i >= job.answered else "refused" if self.refused(r) else "answer")
            for i, r in enumerate(job.requests)
        ]

    def stats(self) -> dict[str, Any]:
        with self.lock:
            return {
                "requests_submitted": sum(self.submitted.values()),
                "unique_requests": len(self.submitted),
                "submitted_twice": sorted(k for k, v in self.submitted.items() if v > 1),
                "jobs": len(self.jobs),
                "polls": self.polls,
                "submits_started": self.submits_started,
                "states": dict(Counter(j.state for j in self.jobs.values())),
                "job_sizes": [len(j.requests) for j in self.jobs.values()],
                **self.extra_stats(),
            }

    def extra_stats(self) -> dict[str, Any]:
        """More of ``stats`` (in a server's own words), taken under ``lock``."""
        return {}


def reply_words(prompt: str, max_tokens: int | None) -> tuple[list[str], bool]:
    """The reply's words and whether ``max_tokens`` cut it."""
    words = f"reply to: {prompt}".split()
    if max_tokens is not None and len(words) > max_tokens:
        return words[:max_tokens], True
    return words, False


def jsonl(items: list[dict[str, Any]]) -> bytes:
    return ("\n".join(json.dumps(i) for i in items) + "\n").encode()


def multipart_file(content_type: str, body: bytes) -> tuple[bytes, str]:
    """The ``file`` part of a multipart upload: its content and file name."""
    parser = email.parser.BytesParser(policy=email.policy.HTTP)
    message = parser.parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + body)
    for part in message.iter_parts():
        if part.get_param("name", header="content-disposition") == "file":
            payload = part.get_payload(decode=True)
            return (payload if isinstance(payload, bytes) else b""), str(part.get_filename())
    raise ValueError("no 'file' part in the upload")


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # a client killed mid-request (the kill tests do it) resets its connection: not news
        return


class JobsServer:
    """A batch test server's HTTP side: ``handler`` on 127.0.0.1, served by a thread between
    :meth:`start` and :meth:`stop` (or in a ``with`` block); ``state`` holds its jobs."""

    def __init__(
        self, state: StagedJobs, handler: type[BaseHTTPRequestHandler], *, port: int = 0
    ) -> None:
        self.state = state
        self._server = _QuietServer(("127.0.0.1", port), handler)
        self._thread: threading.Thread | None = None

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def stats(self) -> dict[str, Any]:
        return self.state.stats()

    def start(self: _S) -> _S:
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self: _S) -> _S:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

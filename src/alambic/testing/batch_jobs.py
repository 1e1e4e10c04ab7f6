"""Batch jobs that finish in stages, shared by the provider batch test servers.

A job completes ``1/stages`` of its requests each ``stage_s`` seconds after it was created,
then ends (or expires after ``expire_after_stages``, keeping what was answered). A request
whose prompt contains one of ``fail_on`` is refused (400). Each request is answered
``"reply to: <last user message>"``, ``max_tokens`` words at most (a token is a word).
``stats()`` counts the requests submitted in created jobs, per id too, so a test can assert
that no request was ever submitted twice.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

__all__ = ["BatchRequest", "Job", "JobsConfig", "StagedJobs"]


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
        job = Job(self.next_id(prefix), requests, now, **kw)
        self.jobs[job.id] = job
        self.submitted.update(r.custom_id for r in requests)
        return job

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
            }


def reply_words(prompt: str, max_tokens: int | None) -> tuple[list[str], bool]:
    """The reply's words and whether ``max_tokens`` cut it."""
    words = f"reply to: {prompt}".split()
    if max_tokens is not None and len(words) > max_tokens:
        return words[:max_tokens], True
    return words, False

"""Mistral's batch jobs: a JSONL file uploaded (``client.files``), a job created on it
(``client.batch.jobs``), polled, and its output and error files downloaded. A job created
but never recorded is found by the ``alambic_job`` tag in its metadata."""

from __future__ import annotations

import asyncio
import json
from typing import Any, Final

from alambic.llms.batch.base import Batcher, JobView, refusal
from alambic.llms.batch.journal import JobRecord

__all__ = ["MistralBatcher"]

_FINISHED: Final = frozenset({"SUCCESS", "FAILED", "TIMEOUT_EXCEEDED", "CANCELLED"})
_RESUBMIT: Final = frozenset({"TIMEOUT_EXCEEDED", "CANCELLED"})
_ENDPOINT: Final = "/v1/chat/completions"
_OUTCOME: Final = {"TIMEOUT_EXCEEDED": "expired", "CANCELLED": "cancelled", "FAILED": "failed"}


class MistralBatcher(Batcher):
    """Chat requests (``custom_id`` = content key, ``body`` = the request) of one model."""

    provider = "Mistral"

    def __init__(self, client: Any, journal: Any, *, model: str, **limits: Any) -> None:
        super().__init__(client, journal, **limits)
        self.model = model

    async def create_job(self, local_id: str, items: list[tuple[str, dict[str, Any]]]) -> str:
        lines = [
            json.dumps({"custom_id": key, "body": body}, ensure_ascii=False) for key, body in items
        ]
        uploaded = await self.client.files.upload_async(
            file={"file_name": f"alambic-{local_id}.jsonl", "content": "\n".join(lines).encode()},
            purpose="batch",
        )
        await asyncio.to_thread(self.journal.set, local_id, file_id=uploaded.id)
        job = await self.client.batch.jobs.create_async(
            input_files=[uploaded.id],
            endpoint=_ENDPOINT,
            model=self.model,
            metadata={"alambic_job": local_id},
        )
        batch_id: str = job.id
        return batch_id

    async def find_job(self, record: JobRecord, keys: list[str]) -> str | None:
        page = 0
        while True:
            listed = await self.client.batch.jobs.list_async(page=page, page_size=100)
            for job in listed.data or []:
                tag = (job.metadata or {}).get("alambic_job")
                if tag == record.local_id or (
                    record.file_id is not None and record.file_id in (job.input_files or [])
                ):
                    found: str = job.id
                    return found
                if job.created_at < record.created - 3600:
                    return None  # newest first: the rest are older still
            if not listed.data or (page + 1) * 100 >= (listed.total or 0):
                return None
            page += 1

    async def poll_job(self, batch_id: str) -> JobView:
        job = await self.client.batch.jobs.get_async(job_id=batch_id)
        status = str(job.status)
        reason = "; ".join(str(getattr(e, "message", e)) for e in job.errors or [])
        return JobView(
            status=status,
            finished=status in _FINISHED,
            resubmit=status in _RESUBMIT,
            outcome=_OUTCOME.get(status, "completed"),
            raw=job,
            reason=reason,
        )

    async def read_results(self, view: JobView) -> list[tuple[str, Any]]:
        out: list[tuple[str, Any]] = []
        for file_id in (view.raw.output_file, view.raw.error_file):
            if not isinstance(file_id, str) or not file_id:
                continue
            response = await self.client.files.download_async(file_id=file_id)
            try:
                text = (await response.aread()).decode()
            finally:
                await response.aclose()
            for line in text.splitlines():
                if not line.strip():
                    continue
                item = json.loads(line)
                key = item.get("custom_id")
                reply = item.get("response") or {}
                status = reply.get("status_code")
                if status == 200:
                    out.append((key, reply.get("body") or {}))
                elif reply or item.get("error"):  # refused: a failed row with the reason
                    body = reply.get("body") or {}
                    error = item.get("error") or body.get("error") or body
                    message = error.get("message") if isinstance(error, dict) else str(error)
                    out.append((key, refusal(message or f"status {status}", status)))
        return out

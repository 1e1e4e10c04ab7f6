"""OpenAI's (and Azure OpenAI's) Batch API: a JSONL file uploaded, a job created on it,
polled, and its output and error files read. A job created but never recorded is found by
the ``alambic_job`` tag in its metadata (or its input file's id)."""

from __future__ import annotations

import asyncio
import json
from typing import Any, Final

from alambic.llms.batch.base import Batcher, JobView, refusal
from alambic.llms.batch.journal import JobRecord

__all__ = ["OpenAIBatcher"]

_FINISHED: Final = frozenset({"completed", "expired", "cancelled", "failed"})
_RESUBMIT: Final = frozenset({"expired", "cancelled"})


class OpenAIBatcher(Batcher):
    """Chat-completion requests through ``client.files`` and ``client.batches``."""

    provider = "OpenAI"

    def __init__(self, client: Any, journal: Any, *, endpoint: str, **limits: Any) -> None:
        super().__init__(client, journal, **limits)
        self.endpoint = endpoint

    async def create_job(self, local_id: str, items: list[tuple[str, dict[str, Any]]]) -> str:
        lines = [
            json.dumps(
                {"custom_id": key, "method": "POST", "url": self.endpoint, "body": body},
                ensure_ascii=False,
            )
            for key, body in items
        ]
        data = ("\n".join(lines) + "\n").encode()
        uploaded = await self.client.files.create(
            file=(f"alambic-{local_id}.jsonl", data), purpose="batch"
        )
        await asyncio.to_thread(self.journal.set, local_id, file_id=uploaded.id)
        job = await self.client.batches.create(
            input_file_id=uploaded.id,
            endpoint=self.endpoint,
            completion_window="24h",
            metadata={"alambic_job": local_id},
        )
        batch_id: str = job.id
        return batch_id

    async def find_job(self, record: JobRecord, keys: list[str]) -> str | None:
        async for job in self.client.batches.list(limit=100):
            tag = (job.metadata or {}).get("alambic_job")
            if tag == record.local_id or (
                record.file_id is not None and job.input_file_id == record.file_id
            ):
                found: str = job.id
                return found
        return None

    async def poll_job(self, batch_id: str) -> JobView:
        job = await self.client.batches.retrieve(batch_id)
        errors = getattr(job, "errors", None)
        reason = "; ".join(
            str(getattr(e, "message", e)) for e in (getattr(errors, "data", None) or [])
        )
        return JobView(
            status=job.status,
            finished=job.status in _FINISHED,
            resubmit=job.status in _RESUBMIT,
            outcome=job.status if job.status in _FINISHED else "completed",
            raw=job,
            reason=reason,
        )

    async def read_results(self, view: JobView) -> list[tuple[str, Any]]:
        job = view.raw
        out: list[tuple[str, Any]] = []
        for file_id in (job.output_file_id, job.error_file_id):
            if not file_id:
                continue
            content = await self.client.files.content(file_id)
            for line in content.text.splitlines():
                if not line.strip():
                    continue
                item = json.loads(line)
                key = item.get("custom_id")
                response = item.get("response") or {}
                status = response.get("status_code")
                if status == 200:
                    out.append((key, response.get("body") or {}))
                elif response:  # the provider refused this request: a failed row, its reason
                    error = (response.get("body") or {}).get("error") or {}
                    out.append((key, refusal(error.get("message") or f"status {status}", status)))
        return out

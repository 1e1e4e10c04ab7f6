"""Anthropic's Message Batches: ``client.messages.batches`` create, retrieve, results.

Message Batches keep no metadata, so a job created but never recorded (the run was killed
between the provider creating it and the client writing its id) is found on the list of
batches by what the journal knows of it: not recorded by any other job, created within an
hour of the journal entry, and holding exactly as many requests; the nearest in time wins.
Its results are read by ``custom_id``, so a wrong guess can only leave requests unanswered
(which are then submitted again), never answer one wrongly.
"""

from __future__ import annotations

import asyncio
from typing import Any

from alambic.llms.batch.base import Batcher, JobView, refusal
from alambic.llms.batch.journal import JobRecord

__all__ = ["AnthropicBatcher"]

_WINDOW_S = 3600.0


class AnthropicBatcher(Batcher):
    """Messages requests (``custom_id`` = content key, ``params`` = the request)."""

    provider = "Anthropic"

    async def create_job(self, local_id: str, items: list[tuple[str, dict[str, Any]]]) -> str:
        batch = await self.client.messages.batches.create(
            requests=[{"custom_id": key, "params": body} for key, body in items]
        )
        batch_id: str = batch.id
        return batch_id

    async def find_job(self, record: JobRecord, keys: list[str]) -> str | None:
        claimed = await asyncio.to_thread(self.journal.batch_ids)
        best: tuple[float, str] | None = None
        async for batch in self.client.messages.batches.list(limit=100):
            created = batch.created_at.timestamp()
            if created < record.created - _WINDOW_S:
                break  # newest first: the rest are older still
            counts = batch.request_counts
            total = (
                counts.processing
                + counts.succeeded
                + counts.errored
                + counts.canceled
                + counts.expired
            )
            if batch.id in claimed or total != len(keys) or created > record.created + _WINDOW_S:
                continue
            distance = abs(created - record.created)
            if best is None or distance < best[0]:
                best = (distance, batch.id)
        return None if best is None else best[1]

    async def poll_job(self, batch_id: str) -> JobView:
        batch = await self.client.messages.batches.retrieve(batch_id)
        ended = batch.processing_status == "ended"
        counts = batch.request_counts
        status = batch.processing_status
        if ended and (counts.expired or counts.canceled):
            status = f"ended ({counts.expired} expired, {counts.canceled} canceled)"
        # an ended batch's unanswered requests are expired or canceled ones: send them again
        return JobView(status=status, finished=ended, resubmit=True, raw=batch)

    async def read_results(self, view: JobView) -> list[tuple[str, Any]]:
        out: list[tuple[str, Any]] = []
        async for item in await self.client.messages.batches.results(view.raw.id):
            result = item.result
            if result.type == "succeeded":
                out.append((item.custom_id, result.message))
            elif result.type == "errored":
                error = result.error.error
                status = 400 if error.type == "invalid_request_error" else 500
                out.append((item.custom_id, refusal(f"{error.type}: {error.message}", status)))
        return out

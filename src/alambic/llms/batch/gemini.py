"""The Gemini API's batch mode through ``google-genai``: ``client.batches.create`` with the
requests inline (each tagged ``metadata={"key": <content key>}``), polled with
``batches.get``; answers come back inline. A job created but never recorded is found by its
display name, ``alambic-<job>``. (Vertex AI's batch prediction reads its input from Cloud
Storage or BigQuery instead, and is not supported here.)"""

from __future__ import annotations

from typing import Any, Final

from alambic.llms.batch.base import Batcher, JobView, refusal
from alambic.llms.batch.journal import JobRecord

__all__ = ["GeminiBatcher"]

_FINISHED: Final = frozenset(
    {"JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED"}
)
_RESUBMIT: Final = frozenset({"JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED"})
_OUTCOME: Final = {
    "JOB_STATE_EXPIRED": "expired",
    "JOB_STATE_CANCELLED": "cancelled",
    "JOB_STATE_FAILED": "failed",
}


def _state(job: Any) -> str:
    state = job.state
    return str(getattr(state, "value", state))


class GeminiBatcher(Batcher):
    """``generate_content`` requests of one model as inline batch requests."""

    provider = "Gemini"

    def __init__(self, client: Any, journal: Any, *, model: str, **limits: Any) -> None:
        super().__init__(client, journal, **limits)
        self.model = model

    async def create_job(self, local_id: str, items: list[tuple[str, dict[str, Any]]]) -> str:
        requests = [
            {
                "contents": body["contents"],
                "config": body.get("config") or None,
                "metadata": {"key": key},
            }
            for key, body in items
        ]
        job = await self.client.batches.create(
            model=self.model, src=requests, config={"display_name": f"alambic-{local_id}"}
        )
        name: str = job.name
        return name

    async def find_job(self, record: JobRecord, keys: list[str]) -> str | None:
        tag = f"alambic-{record.local_id}"
        async for job in await self.client.batches.list(config={"page_size": 100}):
            if job.display_name == tag:
                found: str = job.name
                return found
        return None

    async def poll_job(self, batch_id: str) -> JobView:
        job = await self.client.batches.get(name=batch_id)
        state = _state(job)
        error = getattr(job, "error", None)
        return JobView(
            status=state,
            finished=state in _FINISHED,
            resubmit=state in _RESUBMIT,
            outcome=_OUTCOME.get(state, "completed"),
            raw=job,
            reason=str(getattr(error, "message", None) or error or ""),
        )

    async def read_results(self, view: JobView) -> list[tuple[str, Any]]:
        out: list[tuple[str, Any]] = []
        dest = view.raw.dest
        for item in (dest.inlined_responses if dest else None) or []:
            key = (item.metadata or {}).get("key")
            if key is None:
                continue  # not a request of ours (requests are always tagged)
            if item.error is not None:
                code = item.error.code
                message = item.error.message or f"error {code}"
                out.append((key, refusal(message, code)))
            elif item.response is not None:
                out.append((key, item.response))
        return out

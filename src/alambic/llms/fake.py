"""A deterministic LLM for unit tests: no network, no model, every call recorded.

>>> llm = FakeLLM()
>>> llm.generate([[{"role": "user", "content": "hi"}]])[0]["generations"]
['fake reply to: hi']

Queue exact replies with ``enqueue``, make chosen prompts fail with ``fail_on``, or compute
replies with ``reply_fn``; ``history`` lists every request received.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable
from typing import Any, ClassVar

from pydantic import Field, PrivateAttr

from alambic.errors import ErrorKind, LLMRequestError
from alambic.llms.base import AsyncLLM, split_input
from alambic.llms.typing import ChatType, FormattedInput, GenerateOutput


def _words(text: str) -> int:
    return len(text.split())


class FakeLLM(AsyncLLM):
    """Replies ``f"{prefix}{last user message}"`` (``#i`` appended for generation ``i > 0``)."""

    model: str = "fake-model"
    prefix: str = "fake reply to: "
    latency: float = Field(default=0.0, ge=0, description="Seconds each request takes.")
    fail_on: list[str] = Field(
        default_factory=list,
        description="A request whose last user message contains one of these fails for good.",
    )
    reply_fn: Callable[[ChatType, int], str] | None = Field(default=None, exclude=True)

    _cache_exclude: ClassVar[frozenset[str]] = AsyncLLM._cache_exclude | {"latency"}
    _queue: deque[str] = PrivateAttr(default_factory=deque)
    _history: list[dict[str, Any]] = PrivateAttr(default_factory=list)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @property
    def model_name(self) -> str:
        return self.model

    @property
    def history(self) -> list[dict[str, Any]]:
        """Every request received: ``{"messages", "num_generations", "generation_kwargs"}``."""
        return self._history

    def enqueue(self, *replies: str) -> None:
        """Reply with these texts, in order, before falling back to the default reply."""
        self._queue.extend(replies)

    async def _agenerate(
        self, input: FormattedInput, num_generations: int, **generation_kwargs: Any
    ) -> GenerateOutput:
        messages, schema = split_input(input)
        with self._lock:
            self._history.append(
                {
                    "messages": messages,
                    "schema": schema,
                    "num_generations": num_generations,
                    "generation_kwargs": generation_kwargs,
                }
            )
        if self.latency:
            await asyncio.sleep(self.latency)
        last_user = next((m["content"] for m in reversed(messages) if m.get("role") == "user"), "")
        for needle in self.fail_on:
            if needle in last_user:
                raise LLMRequestError(
                    f"FakeLLM was told to fail on {needle!r}", kind=ErrorKind.BAD_REQUEST
                )
        texts: list[str] = []
        for i in range(num_generations):
            if self._queue:
                texts.append(self._queue.popleft())
            elif self.reply_fn is not None:
                texts.append(self.reply_fn(messages, i))
            else:
                texts.append(f"{self.prefix}{last_user}" + (f" #{i}" if i else ""))
        prompt_tokens = sum(_words(str(m.get("content", ""))) for m in messages)
        return {
            "generations": list(texts),
            "statistics": {
                "input_tokens": [prompt_tokens] * num_generations,
                "output_tokens": [_words(t) for t in texts],
            },
        }


__all__ = ["FakeLLM"]

"""The bodies of the generation endpoints: chat (JSON or SSE), legacy completions,
embeddings, models."""

from __future__ import annotations

import base64
import json
import random
import struct
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from alambic.testing.openai_server.config import (
    ServerConfig,
    _content_text,
    _embedding,
    _last_user_text,
    _numbered,
    _words,
    schema_instance,
)
from alambic.testing.openai_server.replies import _error, _json_reply, _Reply

if TYPE_CHECKING:
    from alambic.testing.openai_server.app import _Stats


class _Generation:
    """The generation endpoints; mixed into the app, which holds ``config`` and ``rng``."""

    config: ServerConfig
    rng: random.Random
    id_counter: int
    stats: _Stats

    def _models(self, path: str) -> _Reply:
        model = {"id": self.config.model, "object": "model", "created": 0, "owned_by": "alambic"}
        if path == "/v1/models":
            return _json_reply({"object": "list", "data": [model]})
        wanted = path[len("/v1/models/") :]
        if wanted == self.config.model:
            return _json_reply(model)
        return _error(404, f"The model '{wanted}' does not exist")

    def _generate(self, path: str, request: dict[str, Any]) -> tuple[_Reply, tuple[int, int]]:
        if path == "/v1/chat/completions":
            return self._chat(request)
        if path == "/v1/completions":
            return self._completions(request)
        return self._embeddings(request)

    def _next_id(self, prefix: str) -> str:
        self.id_counter += 1
        return f"{prefix}-{self.id_counter:08d}"

    def _texts(
        self, request: dict[str, Any], default: Callable[[int], str], count: int
    ) -> tuple[list[tuple[str, str]], int]:
        """(content, finish_reason) per choice, and total completion words."""
        reply_fn = self.config.reply
        limit = request.get("max_completion_tokens")
        if limit is None:
            limit = request.get("max_tokens")
        out: list[tuple[str, str]] = []
        words_total = 0
        for i in range(count):
            text = reply_fn(request, i) if reply_fn is not None else default(i)
            words = text.split()
            finish = "stop"
            if limit is not None and len(words) > int(limit):
                words = words[: max(0, int(limit))]
                text = " ".join(words)
                finish = "length"
            words_total += len(words)
            out.append((text, finish))
        return out, words_total

    def _choice_count(self, request: dict[str, Any]) -> int:
        n = request.get("n")
        if not self.config.honour_n or n is None:
            return 1
        if int(n) < 1:
            raise ValueError("n must be >= 1")
        return int(n)

    def _chat(self, request: dict[str, Any]) -> tuple[_Reply, tuple[int, int]]:
        messages = request["messages"]
        if not isinstance(messages, list):
            raise ValueError("messages must be a list")
        prompt_words = sum(
            _words(_content_text(m.get("content"))) for m in messages if isinstance(m, dict)
        )
        base = f"reply to: {_last_user_text(messages)}"
        fmt = request.get("response_format")
        structured: str | None = None
        if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
            spec = fmt.get("json_schema") or {}
            structured = json.dumps(schema_instance(spec.get("schema") or {"type": "object"}))
        elif isinstance(fmt, dict) and fmt.get("type") == "json_object":
            structured = json.dumps({"reply": base})

        default = _numbered(base) if structured is None else (lambda _i: structured)
        texts, completion_words = self._texts(request, default, self._choice_count(request))
        model = request.get("model", self.config.model)
        ident = self._next_id("chatcmpl")
        created = int(time.time())
        usage: dict[str, Any] = {
            "prompt_tokens": prompt_words,
            "completion_tokens": completion_words,
            "total_tokens": prompt_words + completion_words,
        }
        cached = min(self.config.cached_prompt_tokens, prompt_words)
        if cached:
            usage["prompt_tokens_details"] = {"cached_tokens": cached}
        tokens = (prompt_words, completion_words)
        if request.get("stream"):
            reply = self._chat_stream(request, ident, created, model, texts, usage)
            reply.cached_tokens = cached
            return reply, tokens
        data = {
            "id": ident,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [
                {
                    "index": i,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": finish,
                    "logprobs": None,
                }
                for i, (text, finish) in enumerate(texts)
            ],
            "usage": usage,
        }
        reply = _json_reply(data)
        reply.cached_tokens = cached
        return reply, tokens

    def _chat_stream(
        self,
        request: dict[str, Any],
        ident: str,
        created: int,
        model: str,
        texts: list[tuple[str, str]],
        usage: dict[str, Any],
    ) -> _Reply:
        head = {"id": ident, "object": "chat.completion.chunk", "created": created, "model": model}

        def chunk(choices: list[dict[str, Any]], **extra: Any) -> bytes:
            return b"data: " + json.dumps({**head, "choices": choices, **extra}).encode() + b"\n\n"

        include_usage = bool((request.get("stream_options") or {}).get("include_usage"))
        chunks: list[bytes] = []
        for i, (text, finish) in enumerate(texts):
            delta0 = {"role": "assistant", "content": ""}
            chunks.append(
                chunk([{"index": i, "delta": delta0, "finish_reason": None, "logprobs": None}])
            )
            for j, word in enumerate(text.split(" ")):
                piece = word if j == 0 else " " + word
                if piece:
                    delta = {"content": piece}
                    chunks.append(
                        chunk(
                            [{"index": i, "delta": delta, "finish_reason": None, "logprobs": None}]
                        )
                    )
            chunks.append(
                chunk([{"index": i, "delta": {}, "finish_reason": finish, "logprobs": None}])
            )
        if include_usage:
            chunks.append(chunk([], usage=usage))
        chunks.append(b"data: [DONE]\n\n")
        return _Reply(200, chunks, "text/event-stream", chunk_delay=self.config.stream_delay_s)

    def _completions(self, request: dict[str, Any]) -> tuple[_Reply, tuple[int, int]]:
        prompt = request.get("prompt", "")
        prompts = (
            prompt
            if isinstance(prompt, list) and all(isinstance(p, str) for p in prompt)
            else [prompt]
        )
        prompts = [p if isinstance(p, str) else json.dumps(p) for p in prompts] or [""]
        n = self._choice_count(request)
        prompt_words = sum(_words(p) for p in prompts)
        texts: list[tuple[str, str]] = []
        completion_words = 0
        for p in prompts:
            part, words = self._texts(request, _numbered(f"reply to: {p}"), n)
            texts += part
            completion_words += words
        model = request.get("model", self.config.model)
        ident = self._next_id("cmpl")
        created = int(time.time())
        usage = {
            "prompt_tokens": prompt_words,
            "completion_tokens": completion_words,
            "total_tokens": prompt_words + completion_words,
        }
        tokens = (prompt_words, completion_words)
        if request.get("stream"):
            head = {"id": ident, "object": "text_completion", "created": created, "model": model}
            chunks = []
            for i, (text, finish) in enumerate(texts):
                pieces = text.split(" ")
                for j, word in enumerate(pieces):
                    last = j == len(pieces) - 1
                    choice = {
                        "index": i,
                        "text": word if j == 0 else " " + word,
                        "logprobs": None,
                        "finish_reason": finish if last else None,
                    }
                    chunks.append(
                        b"data: " + json.dumps({**head, "choices": [choice]}).encode() + b"\n\n"
                    )
            if (request.get("stream_options") or {}).get("include_usage"):
                chunks.append(
                    b"data: "
                    + json.dumps({**head, "choices": [], "usage": usage}).encode()
                    + b"\n\n"
                )
            chunks.append(b"data: [DONE]\n\n")
            return _Reply(
                200, chunks, "text/event-stream", chunk_delay=self.config.stream_delay_s
            ), tokens
        data = {
            "id": ident,
            "object": "text_completion",
            "created": created,
            "model": model,
            "choices": [
                {"index": i, "text": text, "logprobs": None, "finish_reason": finish}
                for i, (text, finish) in enumerate(texts)
            ],
            "usage": usage,
        }
        return _json_reply(data), tokens

    def _embeddings(self, request: dict[str, Any]) -> tuple[_Reply, tuple[int, int]]:
        raw = request["input"]
        if isinstance(raw, str) or (isinstance(raw, list) and raw and isinstance(raw[0], int)):
            raw = [raw]
        if not isinstance(raw, list):
            raise ValueError("input must be a string or a list")
        texts = [item if isinstance(item, str) else " ".join(map(str, item)) for item in raw]
        dim = int(request.get("dimensions") or self.config.embedding_dim)
        as_b64 = request.get("encoding_format") == "base64"
        data = []
        for i, text in enumerate(texts):
            vec: Any = _embedding(text, dim)
            if as_b64:
                vec = base64.b64encode(struct.pack(f"<{dim}f", *vec)).decode()
            data.append({"object": "embedding", "index": i, "embedding": vec})
        words = sum(_words(t) for t in texts)
        body = {
            "object": "list",
            "data": data,
            "model": request.get("model", self.config.model),
            "usage": {"prompt_tokens": words, "total_tokens": words},
        }
        return _json_reply(body), (words, 0)

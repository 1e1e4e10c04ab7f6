"""Gemini models through the official ``google-genai`` SDK: the Gemini API (a key) or
Vertex AI (a Google Cloud project and application-default credentials)."""

from __future__ import annotations

import mimetypes
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field

from alambic.errors import AlambicUserError
from alambic.llms._content import content_text, decode_data_url, with_reasonings
from alambic.llms.base import split_input
from alambic.llms.batch.llm import BatchAPILLM
from alambic.llms.provider import drop_none, json_schema_of
from alambic.llms.typing import ChatType, FormattedInput, GenerateOutput

if TYPE_CHECKING:
    from alambic.llms.structured import StructuredSpec

_RENAMED = {
    "max_new_tokens": "max_output_tokens",
    "max_tokens": "max_output_tokens",
    "stop": "stop_sequences",
}


def to_gemini_parts(content: Any) -> list[dict[str, Any]]:
    """Gemini ``parts`` for a message ``content``: text parts as ``text``, inline images
    (``data:`` URLs) as ``inline_data`` with their bytes, other URLs as ``file_data``."""
    if not isinstance(content, list):
        return [{"text": content_text(content)}]
    parts: list[dict[str, Any]] = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            parts.append({"text": part["text"]})
        elif kind == "image_url":
            url = str(part["image_url"]["url"])
            if url.startswith("data:"):
                mime, data = decode_data_url(url)
                parts.append({"inline_data": {"mime_type": mime, "data": data}})
            else:
                mime = mimetypes.guess_type(url.split("?", 1)[0])[0] or "image/jpeg"
                parts.append({"file_data": {"file_uri": url, "mime_type": mime}})
        else:
            raise ValueError(
                f"VertexAILLM cannot send a content part of type {kind!r}; known: 'text', "
                "'image_url' (see alambic.llms._content.image_part)."
            )
    return parts


def to_gemini_contents(messages: ChatType) -> tuple[str | None, list[dict[str, Any]]]:
    """System text and ``contents`` (roles ``user``/``model``) from OpenAI-style messages;
    image parts become Gemini's native parts (see :func:`to_gemini_parts`)."""
    system = [content_text(m["content"]) for m in messages if m["role"] in ("system", "developer")]
    contents = [
        {
            "role": "model" if m["role"] == "assistant" else "user",
            "parts": to_gemini_parts(m["content"]),
        }
        for m in messages
        if m["role"] in ("user", "assistant")
    ]
    return ("\n\n".join(system) if system else None), contents


class VertexAILLM(BatchAPILLM):
    """Gemini through ``google-genai``.

    With ``vertexai=False`` (the default) it calls the Gemini API with ``api_key``,
    ``GOOGLE_API_KEY`` or ``GEMINI_API_KEY``. With ``vertexai=True`` it calls Vertex AI in
    ``project``/``location`` (or ``GOOGLE_CLOUD_PROJECT``/``GOOGLE_CLOUD_LOCATION``) with
    application-default credentials, and needs no key. Several generations use
    ``candidate_count`` in one request; structured output uses ``response_json_schema``.
    Thought summaries (``generation_kwargs={"thinking_config": {"include_thoughts": True}}``)
    are kept apart from the reply, as its reasoning.

    ``use_batch_api=True`` sends requests through the Gemini API's batch mode (inline
    requests, at most ``batch_max_requests`` and about 19 MB per job; see docs/cost.md).
    """

    vertexai: bool = False
    project: str | None = None
    location: str | None = None
    api_version: str | None = Field(default=None, description="e.g. 'v1'; default: the SDK's.")

    sdk_module: ClassVar[str] = "google.genai"
    sdk_package: ClassVar[str | None] = "google-genai"
    extra_name: ClassVar[str] = "vertexai"
    api_key_env_var: ClassVar[str | None] = "GOOGLE_API_KEY"
    api_key_env_aliases: ClassVar[tuple[str, ...]] = ("GEMINI_API_KEY",)
    batch_max_bytes: ClassVar[int | None] = 19 * 2**20  # inline requests: 20 MB in all

    def load(self) -> None:
        if self.use_batch_api and self.vertexai:
            raise AlambicUserError(
                f"{self.owner()} has use_batch_api=True and vertexai=True: alambic sends "
                "batch jobs through the Gemini API's batch mode only (Vertex AI batch "
                "prediction reads from Cloud Storage or BigQuery). Use vertexai=False with "
                "a Gemini API key, or use_batch_api=False."
            )
        super().load()

    def _new_batcher(self, journal: Any, limits: dict[str, Any]) -> Any:
        from alambic.llms.batch.gemini import GeminiBatcher

        return GeminiBatcher(self._make_client(), journal, model=self.model, **limits)

    def supports_native_structured_output(self, spec: StructuredSpec) -> bool:
        return True

    def resolved_api_key(self) -> str | None:
        if self.vertexai and self.api_key is None:
            return None
        return super().resolved_api_key()

    def _make_client(self) -> Any:
        genai = self.sdk()
        types = genai.types
        http_options = types.HttpOptions(
            **drop_none(
                {
                    "base_url": self.resolved_base_url(),
                    "api_version": self.api_version,
                    "timeout": int((self.timeout or 120.0) * 1000),
                }
            ),
        )
        if hasattr(types, "HttpRetryOptions"):  # google-genai >= 1.15 retries on its own
            http_options.retry_options = types.HttpRetryOptions(attempts=1)
        if self.vertexai:
            return genai.Client(
                vertexai=True,
                project=self.project,
                location=self.location,
                http_options=http_options,
            ).aio
        return genai.Client(api_key=self.resolved_api_key(), http_options=http_options).aio

    def request_kwargs(
        self, input: FormattedInput, num_generations: int, generation_kwargs: dict[str, Any]
    ) -> dict[str, Any]:
        """The ``models.generate_content`` arguments for one conversation."""
        messages, schema = split_input(input)
        system, contents = to_gemini_contents(messages)
        config = {_RENAMED.get(k, k): v for k, v in generation_kwargs.items()}
        if isinstance(config.get("stop_sequences"), str):
            config["stop_sequences"] = [config["stop_sequences"]]
        config["system_instruction"] = system
        if num_generations > 1:
            config["candidate_count"] = num_generations
        if schema is not None:
            config["response_mime_type"] = "application/json"
            config["response_json_schema"] = json_schema_of(schema)
        return {"model": self.model, "contents": contents, "config": drop_none(config)}

    async def _agenerate(
        self, input: FormattedInput, num_generations: int, **generation_kwargs: Any
    ) -> GenerateOutput:
        request = self.request_kwargs(input, num_generations, generation_kwargs)
        if self.use_batch_api:
            return parse_gemini_response(await self._batcher().submit(request))
        return parse_gemini_response(await self._client().models.generate_content(**request))


def parse_gemini_response(response: Any) -> GenerateOutput:
    """Texts, token counts and reasoning of a ``GenerateContentResponse``: thought-summary
    parts (``thinking_config={"include_thoughts": True}``) are kept apart as reasoning."""
    texts: list[str | None] = []
    reasonings: list[str | None] = []
    for candidate in response.candidates or []:
        parts = (candidate.content.parts if candidate.content else None) or []
        texts.append("".join(p.text or "" for p in parts if not getattr(p, "thought", False)))
        thoughts = "".join(p.text or "" for p in parts if getattr(p, "thought", False))
        reasonings.append(thoughts if thoughts.strip() else None)
    usage = response.usage_metadata
    prompt = getattr(usage, "prompt_token_count", None)
    completion = getattr(usage, "candidates_token_count", None)
    n = len(texts)
    per_output: list[int | None] = [None] * n
    if completion is not None and n:
        per_output = [completion // n] * n
    return with_reasonings(
        {
            "generations": texts,
            "statistics": {"input_tokens": [prompt] * n, "output_tokens": per_output},
        },
        reasonings,
    )


__all__ = ["VertexAILLM", "parse_gemini_response", "to_gemini_contents", "to_gemini_parts"]

"""Count a prompt's input tokens the way the model will, without sending it.

In order of preference:

- a counter the user gives (a callable, or the path of a Hugging Face tokenizer);
- the model's own Hugging Face tokenizer with its chat template, for engines in this process
  (transformers, vLLM): exact;
- ``tiktoken`` for OpenAI models, when the model's encoding file is already on this machine
  (tiktoken downloads it at first use; alambic never does: put it in ``TIKTOKEN_CACHE_DIR``
  to count exactly offline), with OpenAI's published framing of 3 tokens per message and 3
  to prime the reply;
- otherwise a stated approximation: 4 characters per token plus 4 per message.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from alambic.llms.base import LLM
    from alambic.llms.typing import ChatType

__all__ = ["TokenCounter", "approximate_counter", "hf_counter", "token_counter_for"]

_CHARS_PER_TOKEN: Final = 4
_TIKTOKEN_URL: Final = "https://openaipublic.blob.core.windows.net/encodings/{}.tiktoken"


@dataclass(frozen=True, slots=True)
class TokenCounter:
    """``count(messages)`` is a prompt's input tokens; ``exact`` says whether it is the
    provider's own count; ``method`` says how it is counted."""

    count: Callable[[ChatType], int]
    exact: bool
    method: str


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # multimodal parts: their text counts
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return "" if content is None else str(content)


def approximate_counter() -> TokenCounter:
    def count(messages: ChatType) -> int:
        return sum(
            math.ceil(len(_text_of(m.get("content"))) / _CHARS_PER_TOKEN) + 4 for m in messages
        )

    return TokenCounter(
        count, exact=False, method="approximation: 4 characters per token + 4 per message"
    )


def hf_counter(tokenizer: Any, *, name: str = "") -> TokenCounter:
    """Count with a Hugging Face tokenizer (an object or a folder/hub id), chat template
    applied with the generation prompt, as a local engine renders the prompt."""
    if isinstance(tokenizer, (str, Path)):
        from transformers import AutoTokenizer

        name = name or str(tokenizer)
        tokenizer = AutoTokenizer.from_pretrained(str(tokenizer))

    def count(messages: ChatType) -> int:
        if getattr(tokenizer, "chat_template", None) is None:
            text = "\n".join(_text_of(m.get("content")) for m in messages) + "\n"
        else:
            text = tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=True
            )
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    return TokenCounter(count, exact=True, method=f"Hugging Face tokenizer {name}".rstrip())


def _tiktoken_cached(encoding_name: str) -> bool:
    cache_dir = (
        os.environ.get("TIKTOKEN_CACHE_DIR")
        or os.environ.get("DATA_GYM_CACHE_DIR")
        or os.path.join(tempfile.gettempdir(), "data-gym-cache")
    )
    key = hashlib.sha1(_TIKTOKEN_URL.format(encoding_name).encode()).hexdigest()
    return os.path.isfile(os.path.join(cache_dir, key))


def tiktoken_counter(model: str) -> TokenCounter | None:
    """tiktoken's count for an OpenAI ``model``, or ``None`` when tiktoken, the model or its
    encoding file (offline) is missing."""
    try:
        import tiktoken
    except ImportError:
        return None
    try:
        encoding_name = tiktoken.encoding_name_for_model(model)
    except KeyError:
        return None
    if not _tiktoken_cached(encoding_name):
        return None
    encoding = tiktoken.get_encoding(encoding_name)

    def count(messages: ChatType) -> int:
        total = 3
        for message in messages:
            total += 3 + len(encoding.encode(_text_of(message.get("content"))))
            total += len(encoding.encode(str(message.get("role", ""))))
            if message.get("name"):
                total += 1 + len(encoding.encode(str(message["name"])))
        return total

    return TokenCounter(count, exact=True, method=f"tiktoken {encoding_name}")


def _hf_tokenizer_of(llm: LLM) -> Any:
    loaded = getattr(llm, "_tokenizer", None)
    if loaded is not None:
        return loaded
    model = getattr(llm, "tokenizer", None) or getattr(llm, "model", None)
    if isinstance(model, str) and Path(model).is_dir():
        return model
    return None


def token_counter_for(llm: LLM, override: Any = None) -> TokenCounter:
    """The best counter for ``llm``'s prompts; ``override`` is a :class:`TokenCounter`, a
    callable ``messages -> int`` (taken as exact) or a Hugging Face tokenizer path."""
    if isinstance(override, TokenCounter):
        return override
    if callable(override):
        return TokenCounter(override, exact=True, method="counter given to estimate()")
    if override is not None:
        return hf_counter(override)
    names = {cls.__name__ for cls in type(llm).__mro__}
    if names & {"TransformersLLM", "vLLM"}:
        tokenizer = _hf_tokenizer_of(llm)
        if tokenizer is not None:
            return hf_counter(tokenizer, name=str(getattr(llm, "model", "")))
    if "OpenAILLM" in names:
        counter = tiktoken_counter(llm.model_name)
        if counter is not None:
            return counter
    return approximate_counter()


def schema_tokens(counter: TokenCounter, schema: Any) -> int:
    """Tokens a structured-output schema adds to a request (sent as JSON)."""
    text = json.dumps(schema, sort_keys=True) if not isinstance(schema, str) else schema
    return max(0, counter.count([{"role": "user", "content": text}]) - counter.count([]))

"""GGUF models in this process through ``llama-cpp-python``."""

from __future__ import annotations

import atexit
import os
import threading
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field, PrivateAttr

from alambic.errors import AlambicUserError, ModelNotAvailableError
from alambic.llms.base import LLM, engine_generation_kwargs, split_input
from alambic.llms.magpie import PRE_QUERY_TEMPLATES, MagpieChatTemplateMixin
from alambic.llms.provider import json_schema_of
from alambic.llms.typing import FormattedInput, GenerateOutput
from alambic.utils.imports import require

if TYPE_CHECKING:
    from alambic.llms.structured import StructuredSpec

_RENAMED = {"max_new_tokens": "max_tokens", "repetition_penalty": "repeat_penalty"}
_ALLOWED = {
    "max_tokens",
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "stop",
    "seed",
    "repeat_penalty",
    "presence_penalty",
    "frequency_penalty",
}


def llamacpp_kwargs(generation_kwargs: dict[str, Any]) -> dict[str, Any]:
    """``create_chat_completion``/``create_completion`` arguments from alambic's settings;
    an unknown setting is an error that lists the known ones."""
    return engine_generation_kwargs(
        generation_kwargs, engine="LlamaCppLLM", renamed=_RENAMED, allowed=_ALLOWED
    )


class LlamaCppLLM(LLM, MagpieChatTemplateMixin):
    """A GGUF model run by llama.cpp: ``model_path`` is the ``.gguf`` file (or ``repo_id``
    plus ``model_file`` a file pattern to fetch from the hub).

    The model is loaded once at ``load()``; llama.cpp answers one prompt at a time, so a batch
    is a loop (calls are serialised by a lock, the engine is not thread-safe), and several
    generations are several calls (give a ``seed`` per call or a temperature above 0 to get
    different ones). Conversations use the GGUF's chat template (or ``chat_format``);
    ``complete`` sends raw prompts. Structured output uses llama.cpp's JSON-schema grammar
    (``response_format={"type": "json_object", "schema": ...}``). ``n_gpu_layers=-1`` offloads
    every layer where llama.cpp was built with GPU support.

    For Magpie, ``magpie_pre_query_template="qwen2"`` (distilabel's
    :class:`~alambic.llms.magpie.MagpieChatTemplateMixin`) tells the ``Magpie`` tasks the
    model's template; ``generate`` on a conversation that does not end with a user message
    then continues the conversation written in that template, up to the text opening a user
    turn, so the reply is the next user message (as distilabel's does).
    """

    model_path: str | None = Field(default=None, description="A local .gguf file.")
    repo_id: str | None = Field(default=None, description="Hub repository holding the GGUF.")
    model_file: str | None = Field(default=None, description="File name or glob in repo_id.")
    chat_format: str | None = None
    n_ctx: int = 2048
    n_gpu_layers: int = 0
    n_threads: int | None = None
    seed: int = 0
    extra_kwargs: dict[str, Any] = Field(default_factory=dict, description="More Llama(...) args.")

    supports_raw_completion: ClassVar[bool] = True
    _cache_exclude: ClassVar[frozenset[str]] = frozenset(
        {"generation_kwargs", "n_gpu_layers", "n_threads"}
    )
    _llama: Any = PrivateAttr(default=None)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @property
    def model_name(self) -> str:
        return self.model_path or f"{self.repo_id}/{self.model_file}"

    def load(self) -> None:
        if self._llama is not None:
            return
        if self.model_path and not os.path.isfile(self.model_path):
            # Checked before importing llama-cpp-python (whose check only says the path does
            # not exist), so the message can say what to give instead.
            raise ModelNotAvailableError(
                f"LlamaCppLLM model_path {self.model_path!r} is not a file "
                f"(resolved to {os.path.abspath(self.model_path)!r}); give the path of a "
                "local .gguf file, or repo_id='owner/name' and model_file='*.gguf' to "
                "download one from the Hugging Face Hub."
            )
        llama_cpp = require(
            "llama_cpp", feature="LlamaCppLLM", extra="llama-cpp", package="llama-cpp-python"
        )
        settings = {
            "n_ctx": self.n_ctx,
            "n_gpu_layers": self.n_gpu_layers,
            "n_threads": self.n_threads,
            "seed": self.seed,
            "chat_format": self.chat_format,
            "verbose": False,
            **self.extra_kwargs,
        }
        if self.model_path:
            self._llama = llama_cpp.Llama(model_path=self.model_path, **settings)
        elif self.repo_id and self.model_file:
            self._llama = llama_cpp.Llama.from_pretrained(
                repo_id=self.repo_id, filename=self.model_file, **settings
            )
        else:
            raise ValueError(
                "LlamaCppLLM needs model_path='model.gguf', or repo_id and model_file; "
                f"got model_path={self.model_path!r}, repo_id={self.repo_id!r}, "
                f"model_file={self.model_file!r}."
            )
        if hasattr(self._llama, "close"):
            # Free the model before the interpreter tears modules down: left to
            # Llama.__del__ at exit, llama-cpp-python prints "Exception ignored ... 'NoneType'
            # object is not callable" once its C bindings are gone (seen with torch loaded).
            atexit.register(self._llama.close)
        super().load()

    def unload(self) -> None:
        if self._llama is not None and hasattr(self._llama, "close"):
            atexit.unregister(self._llama.close)
            self._llama.close()
        self._llama = None
        super().unload()

    def supports_native_structured_output(self, spec: StructuredSpec) -> bool:
        return True

    def _generate(
        self, inputs: list[FormattedInput], num_generations: int, **generation_kwargs: Any
    ) -> list[GenerateOutput]:
        self.load()
        kwargs = llamacpp_kwargs(generation_kwargs)
        results: list[GenerateOutput] = []
        with self._lock:
            for input in inputs:
                messages, schema = split_input(input)
                magpie = self._magpie_prompt(messages) if schema is None else None
                if magpie is not None:
                    completions = [
                        self._llama.create_completion(prompt=magpie, **_seeded(kwargs, j))
                        for j in range(num_generations)
                    ]
                    results.append(_collect(completions, chat=False))
                    continue
                call = dict(kwargs)
                if schema is not None:
                    call["response_format"] = {
                        "type": "json_object",
                        "schema": json_schema_of(schema),
                    }
                replies = [
                    self._llama.create_chat_completion(messages=messages, **_seeded(call, j))
                    for j in range(num_generations)
                ]
                results.append(_collect(replies, chat=True))
        return results

    def _magpie_prompt(self, messages: list[Any]) -> str | None:
        """With Magpie on and ``messages`` not ending with a user turn: the conversation in
        the Magpie template's format followed by the text opening a user turn; else None."""
        template = self.magpie_template()
        if template is None or (messages and messages[-1].get("role") == "user"):
            return None
        if messages and not template.system:
            raise AlambicUserError(
                f"LlamaCppLLM: magpie_pre_query_template={self.magpie_pre_query_template!r} is "
                "raw text, which can only start a conversation, but this one already has "
                f"{len(messages)} message(s). Use a preset ({sorted(PRE_QUERY_TEMPLATES)}) so "
                "earlier turns and the system prompt can be written in the model's format."
            )
        return template.render(messages)

    def _complete(
        self, prompts: list[str], num_generations: int, **generation_kwargs: Any
    ) -> list[GenerateOutput]:
        """Continue raw prompts, with no chat template applied."""
        self.load()
        kwargs = llamacpp_kwargs(generation_kwargs)
        with self._lock:
            return [
                _collect(
                    [
                        self._llama.create_completion(prompt=prompt, **_seeded(kwargs, j))
                        for j in range(num_generations)
                    ],
                    chat=False,
                )
                for prompt in prompts
            ]


def _seeded(kwargs: dict[str, Any], j: int) -> dict[str, Any]:
    """Generation ``j`` of a seeded request gets seed ``seed + j``, so they differ."""
    if j and kwargs.get("seed") is not None:
        return {**kwargs, "seed": int(kwargs["seed"]) + j}
    return kwargs


def _collect(replies: list[dict[str, Any]], *, chat: bool) -> GenerateOutput:
    texts: list[str | None] = []
    prompt_tokens: list[int | None] = []
    output_tokens: list[int | None] = []
    for reply in replies:
        choice = reply["choices"][0]
        texts.append(choice["message"]["content"] if chat else choice["text"])
        usage = reply.get("usage") or {}
        prompt_tokens.append(usage.get("prompt_tokens"))
        output_tokens.append(usage.get("completion_tokens"))
    return {
        "generations": texts,
        "statistics": {"input_tokens": prompt_tokens, "output_tokens": output_tokens},
    }


__all__ = ["LlamaCppLLM", "llamacpp_kwargs"]

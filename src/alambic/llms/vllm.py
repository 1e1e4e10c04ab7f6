"""vLLM's offline engine (``vllm.LLM``) in this process: continuous batching on GPUs."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field, PositiveInt, PrivateAttr

from alambic.llms.base import LLM, engine_generation_kwargs, split_input
from alambic.llms.magpie import MagpieChatTemplateMixin
from alambic.llms.provider import json_schema_of
from alambic.llms.typing import FormattedInput, GenerateOutput
from alambic.runtime_parameters import RuntimeParameter
from alambic.utils.imports import require

if TYPE_CHECKING:
    from alambic.llms.structured import StructuredSpec

_RENAMED = {"max_new_tokens": "max_tokens", "min_new_tokens": "min_tokens"}
_SAMPLING = {
    "max_tokens",
    "min_tokens",
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "seed",
    "stop",
    "stop_token_ids",
    "presence_penalty",
    "frequency_penalty",
    "repetition_penalty",
    "logprobs",
    "skip_special_tokens",
    "ignore_eos",
}


def sampling_kwargs(generation_kwargs: dict[str, Any], num_generations: int) -> dict[str, Any]:
    """``SamplingParams`` arguments from alambic's generation settings.

    ``max_new_tokens``/``min_new_tokens`` become ``max_tokens``/``min_tokens``;
    ``do_sample=False`` means greedy (``temperature=0``). An unknown setting is an error that
    lists the known ones, rather than a silently ignored value.
    """
    kwargs = engine_generation_kwargs(
        generation_kwargs, engine="vLLM", renamed=_RENAMED, allowed=_SAMPLING
    )
    return {"n": num_generations, **kwargs}


class vLLM(LLM, MagpieChatTemplateMixin):
    """A model run by vLLM's offline engine: ``model`` is a local folder or a hub id.

    The engine is created once at ``load()`` (so a pipeline step loads its model once) and
    every ``generate`` call hands all its prompts to vLLM at once, which batches them
    continuously. Conversations are rendered with the tokenizer's chat template (or
    ``chat_template``); ``complete`` sends raw prompts. Several generations use
    ``SamplingParams(n=...)``. Structured output is enforced by vLLM's guided decoding
    (``StructuredOutputsParams`` or, on older versions, ``GuidedDecodingParams``) with the
    JSON schema. vLLM needs a GPU (or a supported accelerator).

    For Magpie, ``magpie_pre_query_template="llama3"`` (distilabel's
    :class:`~alambic.llms.magpie.MagpieChatTemplateMixin`) tells the ``Magpie`` tasks the
    model's template; ``generate`` on a conversation that does not end with a user message
    then renders it and appends the text opening a user turn, as distilabel's does.
    """

    model: str = Field(description="Local folder or Hugging Face hub id.")
    tokenizer: str | None = None
    revision: str | None = None
    chat_template: str | None = None
    dtype: str = "auto"
    quantization: str | None = None
    trust_remote_code: bool = False
    tensor_parallel_size: PositiveInt = 1
    gpu_memory_utilization: float = Field(default=0.9, gt=0, le=1)
    max_model_len: int | None = None
    seed: int = 0
    extra_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="More vllm.LLM(...) arguments."
    )
    batch_size: RuntimeParameter[PositiveInt] = Field(
        default=256, description="Prompts handed to the engine per call (it batches inside)."
    )

    supports_raw_completion: ClassVar[bool] = True
    _cache_exclude: ClassVar[frozenset[str]] = frozenset(
        {"generation_kwargs", "batch_size", "gpu_memory_utilization", "tensor_parallel_size"}
    )
    _engine: Any = PrivateAttr(default=None)
    _tokenizer: Any = PrivateAttr(default=None)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @property
    def model_name(self) -> str:
        return self.model

    def load(self) -> None:
        if self._engine is not None:
            return
        vllm = require("vllm", feature="vLLM", extra="vllm")
        self._engine = vllm.LLM(
            model=self.model,
            tokenizer=self.tokenizer,
            revision=self.revision,
            dtype=self.dtype,
            quantization=self.quantization,
            trust_remote_code=self.trust_remote_code,
            tensor_parallel_size=self.tensor_parallel_size,
            gpu_memory_utilization=self.gpu_memory_utilization,
            max_model_len=self.max_model_len,
            seed=self.seed,
            **self.extra_kwargs,
        )
        self._tokenizer = self._engine.get_tokenizer()
        if self.chat_template is not None:
            self._tokenizer.chat_template = self.chat_template
        super().load()

    def unload(self) -> None:
        self._engine = None
        self._tokenizer = None
        super().unload()

    def supports_native_structured_output(self, spec: StructuredSpec) -> bool:
        return True

    def prepare_prompt(self, input: FormattedInput) -> str:
        """Render a conversation with the chat template, ready for generation."""
        messages, _ = split_input(input)
        if getattr(self._tokenizer, "chat_template", None) is None:
            return "\n".join(str(m["content"]) for m in messages) + "\n"
        if self.magpie_template() is not None and (not messages or messages[-1]["role"] != "user"):
            # Magpie (distilabel's mixin): the conversation, then the text opening a user turn
            rendered: str = (
                self._tokenizer.apply_chat_template(
                    messages, tokenize=False, add_generation_prompt=False
                )
                if messages
                else ""
            )
            return self.apply_magpie_pre_query_template(rendered, messages)
        prompt: str = self._tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True
        )
        return prompt

    def sampling_params(
        self, generation_kwargs: dict[str, Any], num_generations: int, schema: dict[str, Any] | None
    ) -> Any:
        """A ``vllm.SamplingParams``, with guided decoding when ``schema`` is given."""
        vllm = require("vllm", feature="vLLM", extra="vllm")
        kwargs = sampling_kwargs(generation_kwargs, num_generations)
        if schema is not None:
            kwargs.update(guided_decoding_kwargs(json_schema_of(schema)))
        return vllm.SamplingParams(**kwargs)

    def _generate(
        self, inputs: list[FormattedInput], num_generations: int, **generation_kwargs: Any
    ) -> list[GenerateOutput]:
        self.load()
        prompts = [self.prepare_prompt(i) for i in inputs]
        schemas = [split_input(i)[1] for i in inputs]
        return self._run(prompts, schemas, num_generations, generation_kwargs)

    def _complete(
        self, prompts: list[str], num_generations: int, **generation_kwargs: Any
    ) -> list[GenerateOutput]:
        """Continue raw prompts, with no chat template applied."""
        self.load()
        return self._run(prompts, [None] * len(prompts), num_generations, generation_kwargs)

    def _run(
        self,
        prompts: list[str],
        schemas: list[dict[str, Any] | None],
        num_generations: int,
        generation_kwargs: dict[str, Any],
    ) -> list[GenerateOutput]:
        if not any(schemas):
            params: Any = self.sampling_params(generation_kwargs, num_generations, None)
        else:
            params = [self.sampling_params(generation_kwargs, num_generations, s) for s in schemas]
        size = self.batch_size or 256
        results: list[GenerateOutput] = []
        with self._lock:
            for start in range(0, len(prompts), size):
                chunk = params[start : start + size] if isinstance(params, list) else params
                outputs = self._engine.generate(
                    prompts[start : start + size], sampling_params=chunk, use_tqdm=False
                )
                results.extend(request_output_to_generate_output(o) for o in outputs)
        return results


def guided_decoding_kwargs(json_schema: dict[str, Any]) -> dict[str, Any]:
    """``SamplingParams`` arguments constraining the reply to ``json_schema``, for the
    installed vLLM: ``structured_outputs=`` (0.10.2 and later) or ``guided_decoding=``."""
    params = require("vllm.sampling_params", feature="vLLM", extra="vllm")
    if hasattr(params, "StructuredOutputsParams"):
        return {"structured_outputs": params.StructuredOutputsParams(json=json_schema)}
    return {"guided_decoding": params.GuidedDecodingParams(json=json_schema)}


def request_output_to_generate_output(output: Any) -> GenerateOutput:
    """Texts and token counts from one ``vllm.RequestOutput``."""
    prompt_tokens = len(output.prompt_token_ids or [])
    completions = sorted(output.outputs, key=lambda c: c.index)
    return {
        "generations": [c.text for c in completions],
        "statistics": {
            "input_tokens": [prompt_tokens] * len(completions),
            "output_tokens": [len(c.token_ids) for c in completions],
        },
    }


__all__ = ["guided_decoding_kwargs", "request_output_to_generate_output", "sampling_kwargs", "vLLM"]

"""vLLM's offline engine (``vllm.LLM``) in this process: continuous batching on GPUs.

Conversations with image parts go through ``LLM.chat`` (the model's own multimodal chat
processing: placeholders and image preprocessing are vLLM's); text-only ones are rendered with
the chat template and sent to ``LLM.generate``. With ``reasoning_parser`` (a name vLLM's
``ReasoningParserManager`` knows: ``"deepseek_r1"``, ``"qwen3"``...) each completion is split
into reasoning and answer by that parser, as ``vllm serve --reasoning-parser`` does.

Neither path has been run against a real vLLM here (it needs a GPU): the message form and
the reading of outputs follow vLLM's documented API (0.6 to 0.11) and are unit-tested.
"""

from __future__ import annotations

import importlib
import threading
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field, PositiveInt, PrivateAttr

from alambic.llms._content import image_urls
from alambic.llms.base import LLM, engine_generation_kwargs, split_input
from alambic.llms.magpie import MagpieChatTemplateMixin
from alambic.llms.provider import json_schema_of
from alambic.llms.typing import ChatType, FormattedInput, GenerateOutput
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
    reasoning_parser: str | None = Field(
        default=None,
        description="A vLLM reasoning parser name (e.g. 'deepseek_r1', 'qwen3'): the "
        "reasoning is split from each reply and kept in alambic_metadata.",
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
    _reasoning: Any = PrivateAttr(default=None)
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
        if self.reasoning_parser is not None:
            self._reasoning = load_reasoning_parser(self.reasoning_parser, self._tokenizer)
        super().load()

    def unload(self) -> None:
        self._engine = None
        self._tokenizer = None
        self._reasoning = None
        super().unload()

    def supports_native_structured_output(self, spec: StructuredSpec) -> bool:
        return True

    def prepare_prompt(self, input: FormattedInput) -> str:
        """Render a conversation with the chat template, ready for generation."""
        messages, _ = split_input(input)
        if getattr(self._tokenizer, "chat_template", None) is None:
            return "\n".join(str(m["content"]) for m in messages) + "\n"
        magpie = self.magpie_prompt(self._tokenizer, messages)  # distilabel's Magpie mixin
        if magpie is not None:
            return magpie
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
        conversations = [split_input(i)[0] for i in inputs]
        schemas = [split_input(i)[1] for i in inputs]
        visual = [i for i, c in enumerate(conversations) if has_images(c)]
        if not visual:
            prompts = [self.prepare_prompt(i) for i in inputs]
            return self._run(prompts, schemas, num_generations, generation_kwargs)
        # conversations with images go through LLM.chat; the others through generate
        results: list[GenerateOutput | None] = [None] * len(inputs)
        chats = self._run_chat(
            [to_vllm_messages(conversations[i]) for i in visual],
            [schemas[i] for i in visual],
            num_generations,
            generation_kwargs,
        )
        for i, out in zip(visual, chats, strict=True):
            results[i] = out
        text = [i for i in range(len(inputs)) if results[i] is None]
        if text:
            prompts = [self.prepare_prompt(inputs[i]) for i in text]
            outs = self._run(
                prompts, [schemas[i] for i in text], num_generations, generation_kwargs
            )
            for i, out in zip(text, outs, strict=True):
                results[i] = out
        return [r for r in results if r is not None]

    def _run_chat(
        self,
        conversations: list[list[dict[str, Any]]],
        schemas: list[dict[str, Any] | None],
        num_generations: int,
        generation_kwargs: dict[str, Any],
    ) -> list[GenerateOutput]:
        """``LLM.chat`` on conversations in vLLM's message form (images as ``image_url``
        parts holding ``data:`` URLs), in chunks of ``batch_size``."""
        params = [self.sampling_params(generation_kwargs, num_generations, s) for s in schemas]
        size = self.batch_size or 256
        results: list[GenerateOutput] = []
        with self._lock:
            for start in range(0, len(conversations), size):
                outputs = self._engine.chat(
                    conversations[start : start + size],
                    sampling_params=params[start : start + size],
                    chat_template=self.chat_template,
                    add_generation_prompt=True,
                    use_tqdm=False,
                )
                results.extend(
                    request_output_to_generate_output(o, self._reasoning) for o in outputs
                )
        return results

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
                results.extend(
                    request_output_to_generate_output(o, self._reasoning) for o in outputs
                )
        return results


def has_images(messages: ChatType) -> bool:
    """Whether any message of a conversation holds an image part."""
    return any(image_urls(m.get("content")) for m in messages)


def to_vllm_messages(messages: ChatType) -> list[dict[str, Any]]:
    """A conversation in the form ``vllm.LLM.chat`` reads: OpenAI chat messages whose
    content is text or a list of ``{"type": "text"}`` and ``{"type": "image_url",
    "image_url": {"url": ...}}`` parts. Local images are already ``data:`` URLs (see
    :func:`alambic.llms._content.image_part`), which vLLM decodes in process; ``http(s)``
    URLs are fetched by vLLM itself. Any other part type is refused with the known ones."""
    converted: list[dict[str, Any]] = []
    for message in messages:
        content = message["content"]
        if isinstance(content, list):
            parts: list[dict[str, Any]] = []
            for part in content:
                kind = part.get("type") if isinstance(part, dict) else None
                if kind == "text":
                    parts.append({"type": "text", "text": part["text"]})
                elif kind == "image_url":
                    parts.append({"type": "image_url", "image_url": {"url": image_urls([part])[0]}})
                else:
                    raise ValueError(
                        f"vLLM cannot send a content part of type {kind!r}; known: 'text', "
                        "'image_url' (see alambic.llms._content.image_part)."
                    )
            content = parts
        converted.append({"role": message["role"], "content": content})
    return converted


def load_reasoning_parser(name: str, tokenizer: Any) -> Any:
    """vLLM's reasoning parser ``name`` bound to ``tokenizer`` (``vllm.reasoning`` since
    0.8; ``vllm.entrypoints.openai.reasoning_parsers`` in 0.7)."""
    require("vllm", feature="vLLM(reasoning_parser=...)", extra="vllm")
    try:
        module = importlib.import_module("vllm.reasoning")
    except ImportError:  # vLLM 0.7 kept them with the server
        module = require(
            "vllm.entrypoints.openai.reasoning_parsers",
            feature="vLLM(reasoning_parser=...)",
            extra="vllm",
        )
    manager = module.ReasoningParserManager
    try:
        parser_class = manager.get_reasoning_parser(name)
    except KeyError as exc:
        known = sorted(getattr(manager, "reasoning_parsers", {}) or [])
        raise ValueError(
            f"vLLM(reasoning_parser={name!r}): this vLLM has no such reasoning parser; known: "
            f"{known}."
        ) from exc
    return parser_class(tokenizer)


def split_reasoning(parser: Any, text: str) -> tuple[str | None, str]:
    """``(reasoning, answer)`` of one completion by a vLLM reasoning parser.

    Parsers expose ``extract_reasoning`` (vLLM 0.11+) or ``extract_reasoning_content``
    (0.7 to 0.10), both ``(model_output, request) -> (reasoning, content)``; the built-in
    parsers of plain think-tag models do not read the request, so none is passed. A reply
    with no reasoning keeps its whole text as the answer.
    """
    extract = getattr(parser, "extract_reasoning", None) or parser.extract_reasoning_content
    reasoning, content = extract(text, None)
    if isinstance(reasoning, str) and not reasoning.strip():
        reasoning = None
    return reasoning, content if content is not None else ""


def guided_decoding_kwargs(json_schema: dict[str, Any]) -> dict[str, Any]:
    """``SamplingParams`` arguments constraining the reply to ``json_schema``, for the
    installed vLLM: ``structured_outputs=`` (0.10.2 and later) or ``guided_decoding=``."""
    params = require("vllm.sampling_params", feature="vLLM", extra="vllm")
    if hasattr(params, "StructuredOutputsParams"):
        return {"structured_outputs": params.StructuredOutputsParams(json=json_schema)}
    return {"guided_decoding": params.GuidedDecodingParams(json=json_schema)}


def request_output_to_generate_output(output: Any, reasoning_parser: Any = None) -> GenerateOutput:
    """Texts and token counts from one ``vllm.RequestOutput``; with ``reasoning_parser``,
    each text is split into reasoning (kept under ``reasonings``) and answer."""
    prompt_tokens = len(output.prompt_token_ids or [])
    completions = sorted(output.outputs, key=lambda c: c.index)
    texts: list[str | None] = [c.text for c in completions]
    reasonings: list[str | None] = [None] * len(texts)
    if reasoning_parser is not None:
        for k, text in enumerate(texts):
            reasonings[k], texts[k] = split_reasoning(reasoning_parser, text or "")
    result: GenerateOutput = {
        "generations": texts,
        "statistics": {
            "input_tokens": [prompt_tokens] * len(completions),
            "output_tokens": [len(c.token_ids) for c in completions],
        },
    }
    if any(r is not None for r in reasonings):
        result["reasonings"] = reasonings
    return result


__all__ = [
    "guided_decoding_kwargs",
    "has_images",
    "load_reasoning_parser",
    "request_output_to_generate_output",
    "sampling_kwargs",
    "split_reasoning",
    "to_vllm_messages",
    "vLLM",
]

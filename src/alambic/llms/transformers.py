"""Local models through Hugging Face transformers: batched generation on CPU or GPU."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field, PositiveInt, PrivateAttr

from alambic.errors import ModelNotAvailableError
from alambic.llms._content import image_urls, to_processor_messages
from alambic.llms.base import LLM, split_input
from alambic.llms.few_shot import FewShotPromptFormat
from alambic.llms.magpie import MagpieChatTemplateMixin
from alambic.llms.structured import resolve_spec
from alambic.llms.typing import FormattedInput, GenerateOutput
from alambic.runtime_parameters import RuntimeParameter
from alambic.utils.imports import require

if TYPE_CHECKING:
    from alambic.llms.structured import StructuredSpec

logger = logging.getLogger("alambic")

_MAX_PROCESSORS = 32
"""Compiled schemas kept per model: compiling one (regex -> token index) is the slow part."""

_LOAD_LOCK = threading.Lock()
"""``from_pretrained`` is not thread-safe (meta-tensor initialisation): load one at a time."""

_DEFAULTS: dict[str, Any] = {
    "max_new_tokens": 128,
    "temperature": 0.7,
    "top_p": 1.0,
    "do_sample": True,
}
_ALLOWED = {
    "max_new_tokens",
    "min_new_tokens",
    "temperature",
    "top_p",
    "top_k",
    "do_sample",
    "repetition_penalty",
    "stop",
    "seed",
}


class TransformersLLM(LLM, MagpieChatTemplateMixin):
    """A chat model run in this process with ``transformers``.

    ``model`` is a local folder or a hub id; prompts are rendered with the tokenizer's chat
    template (or ``chat_template``) and generated in batches of ``batch_size`` with left
    padding. Runs on the CPU unless ``device`` says otherwise: ``"cuda"``, ``"cuda:1"``,
    ``"mps"``, or ``"auto"`` (the first GPU if torch sees one, else the CPU); ``device_map``
    (``"auto"`` needs ``accelerate``) spreads a model too large for one device instead.
    Prompts are sorted by length before batching (``sort_by_length``), so each batch pads
    less; outputs keep the input order.

    Structured output is native when ``outlines`` is installed (``pip install
    "alambic[outlines]"``): the JSON schema is compiled once per model into a token index
    (``outlines_core``) and a logits processor masks, at every step, the tokens that would
    break the schema, so the reply is valid JSON unless ``max_new_tokens`` cuts it short. A
    schema ``outlines_core`` cannot compile, or a missing ``outlines``, falls back to the
    schema in the prompt; replies are validated and re-asked either way.

    For Magpie, ``magpie_pre_query_template="qwen2"`` (distilabel's
    :class:`~alambic.llms.magpie.MagpieChatTemplateMixin`) tells the ``Magpie`` tasks the
    model's chat format, and makes ``generate`` on a conversation that does not end with a
    user message end the prompt with the text that opens a user turn.

    A *base* model (pretrained only, no chat template) answers better when prompted with a
    few worked examples than with a chat format: ``prompt_format=FewShotPromptFormat()``
    writes each conversation as a plain-text few-shot prompt instead of applying the chat
    template, stops at the end of the answer and strips it (see ``alambic.llms.few_shot``).

    A vision-language model (its config has a ``vision_config``: Llava, Idefics3/SmolVLM,
    Qwen2-VL...) is loaded with ``AutoModelForImageTextToText`` and its ``AutoProcessor``:
    image parts of the messages (see ``alambic.llms._content.image_part``) are decoded to
    PIL images, rendered by the processor's chat template as its image token, and handed to
    the processor, whose ``pixel_values`` go to ``generate`` with the prompt.
    """

    model: str = Field(description="Local folder or Hugging Face hub id.")
    revision: str = "main"
    tokenizer: str | None = Field(default=None, description="Tokenizer, if not the model's.")
    chat_template: str | None = None
    torch_dtype: str = "auto"
    device: str | None = "cpu"
    device_map: str | dict[str, Any] | None = None
    trust_remote_code: bool = False
    model_kwargs: dict[str, Any] = Field(default_factory=dict)
    batch_size: RuntimeParameter[PositiveInt | None] = Field(
        default=None,
        description="Prompts generated together in one forward pass; None: every prompt of "
        "the call at once (in a pipeline: the task's input_batch_size).",
    )
    sort_by_length: bool = Field(
        default=True, description="Batch prompts of similar length together (less padding)."
    )
    prompt_format: FewShotPromptFormat | None = Field(
        default=None,
        description="Few-shot plain-text prompts for base models, instead of the chat template.",
    )

    _cache_exclude: ClassVar[frozenset[str]] = frozenset(
        {"generation_kwargs", "batch_size", "device", "device_map"}
    )
    _model: Any = PrivateAttr(default=None)
    _tokenizer: Any = PrivateAttr(default=None)
    _processor: Any = PrivateAttr(default=None)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    _outlines_backend: Any = PrivateAttr(default=None)
    _processors: dict[str, Any] = PrivateAttr(default_factory=dict)

    @property
    def model_name(self) -> str:
        return self.model

    def load(self) -> None:
        with _LOAD_LOCK:
            if self._model is None:
                self._load_unlocked()

    def _load_unlocked(self) -> None:
        transformers = require("transformers", feature="TransformersLLM", extra="transformers")
        require("torch", feature="TransformersLLM", extra="transformers")
        is_local = Path(self.model).expanduser().exists()
        processor = None
        try:
            where = {k: v for k, v in self.model_kwargs.items() if k in ("gguf_file", "subfolder")}
            config = transformers.AutoConfig.from_pretrained(
                self.model,
                revision=self.revision,
                trust_remote_code=self.trust_remote_code,
                **where,
            )
            auto_model = transformers.AutoModelForCausalLM
            if getattr(config, "vision_config", None) is not None:
                processor = transformers.AutoProcessor.from_pretrained(
                    self.tokenizer or self.model,
                    revision=self.revision,
                    trust_remote_code=self.trust_remote_code,
                )
                tokenizer = processor.tokenizer
                auto_model = (  # the older name in transformers < 4.46
                    getattr(transformers, "AutoModelForImageTextToText", None)
                    or transformers.AutoModelForVision2Seq
                )
            else:
                tokenizer = transformers.AutoTokenizer.from_pretrained(
                    self.tokenizer or self.model,
                    revision=self.revision,
                    trust_remote_code=self.trust_remote_code,
                )
            model = auto_model.from_pretrained(
                self.model,
                revision=self.revision,
                dtype=self.torch_dtype,
                device_map=self.device_map,
                trust_remote_code=self.trust_remote_code,
                **self.model_kwargs,
            )
        except OSError as exc:
            if is_local:
                raise ModelNotAvailableError(
                    f"Could not load the model in {self.model!r}: {exc}"
                ) from exc
            offline = os.environ.get("HF_HUB_OFFLINE") == "1"
            raise ModelNotAvailableError(
                f"Could not download the model {self.model!r} from the Hugging Face Hub"
                + (" (HF_HUB_OFFLINE=1 is set)" if offline else " (no network, or no access)")
                + ". Download it where the Hub is reachable (`hf download "
                f"{self.model} --local-dir ./model`) and pass the folder instead, or point "
                "alambic at an OpenAI-compatible server."
            ) from exc
        if self.device_map is None and self.device:
            model = model.to(self.resolved_device())
        model.eval()
        tokenizer.padding_side = "left"
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        if self.chat_template is not None:
            tokenizer.chat_template = self.chat_template
            if processor is not None:
                processor.chat_template = self.chat_template
        self._model, self._tokenizer, self._processor = model, tokenizer, processor
        super().load()

    def unload(self) -> None:
        self._model = None
        self._tokenizer = None
        self._processor = None
        self._outlines_backend = None
        self._processors = {}
        super().unload()

    def supports_native_structured_output(self, spec: StructuredSpec) -> bool:
        """Native (constrained decoding with ``outlines``) when it is installed and compiles
        the schema; otherwise the base writes the schema into the prompt."""
        if importlib.util.find_spec("outlines") is None or self._processor is not None:
            return False  # no outlines, or a vision model (outlines wraps text models)
        if self._model is None:
            return True  # compiled on first use, after load()
        try:
            self._json_processor(spec.schema)
        except Exception as exc:  # any compile failure means prompt + parse
            logger.warning(
                "TransformersLLM: outlines could not compile the JSON schema %.200s (%s: %s); "
                "the schema goes into the prompt instead.",
                json.dumps(spec.schema),
                type(exc).__name__,
                exc,
            )
            return False
        return True

    def _json_processor(self, schema: dict[str, Any]) -> Any:
        """The outlines logits processor for ``schema``, compiled once per model and schema.

        The processor keeps per-row parser state, so it is ``reset()`` before each batch and
        used under ``_lock`` only (one generation at a time per model).
        """
        key = json.dumps(schema)
        processor = self._processors.get(key)
        if processor is not None:
            return processor
        if self._outlines_backend is None:
            require("outlines", feature="TransformersLLM structured output", extra="outlines")
            from outlines.backends.outlines_core import OutlinesCoreBackend
            from outlines.models.transformers import Transformers

            # building the outlines vocabulary walks the whole tokenizer: once per model
            wrapper = Transformers(self._model, self._tokenizer)
            self._outlines_backend = OutlinesCoreBackend(wrapper)
        processor = self._outlines_backend.get_json_schema_logits_processor(key)
        if len(self._processors) >= _MAX_PROCESSORS:
            self._processors.pop(next(iter(self._processors)))
        self._processors[key] = processor
        return processor

    def prepare_prompt(self, input: FormattedInput) -> str:
        """Render a conversation with the chat template, ready for generation."""
        messages, _ = split_input(input)
        if (
            self._processor is not None
            and self.prompt_format is None
            and (
                getattr(self._tokenizer, "chat_template", None) is None
                or any(image_urls(m.get("content")) for m in messages)
            )
        ):
            # a vision model's template (on its processor) renders the image tokens
            converted, _ = to_processor_messages(messages, decode=False)
            visual: str = self._processor.apply_chat_template(
                converted, tokenize=False, add_generation_prompt=True
            )
            return visual
        if self.prompt_format is not None:
            # no chat template adds the BOS token here, and encoding skips special tokens
            bos = self._tokenizer.bos_token if self.prompt_format.add_bos else None
            return (bos or "") + self.prompt_format.render(messages)
        if self._tokenizer.chat_template is None:
            return "\n".join(str(m["content"]) for m in messages) + "\n"
        magpie = self.magpie_prompt(self._tokenizer, messages)  # distilabel's Magpie mixin
        if magpie is not None:
            return magpie
        prompt: str = self._tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True
        )
        return prompt

    supports_raw_completion: ClassVar[bool] = True

    def _complete(
        self, prompts: list[str], num_generations: int, **generation_kwargs: Any
    ) -> list[GenerateOutput]:
        """Continue raw prompts (no chat template), batched like ``generate``."""
        if self._model is None:
            self.load()
        kwargs = {**_DEFAULTS, **generation_kwargs}
        return self._generate_batches(prompts, num_generations, kwargs)

    def _generate(
        self, inputs: list[FormattedInput], num_generations: int, **generation_kwargs: Any
    ) -> list[GenerateOutput]:
        if self._model is None:
            self.load()
        unknown = set(generation_kwargs) - _ALLOWED
        if unknown:
            raise ValueError(
                f"TransformersLLM got unknown generation settings {sorted(unknown)}; "
                f"known: {sorted(_ALLOWED)}."
            )
        kwargs = {**_DEFAULTS, **generation_kwargs}
        if self.prompt_format is not None:
            # stop generating at the end of the answer rather than at max_new_tokens
            kwargs.setdefault("stop", self.prompt_format.stop)
            kwargs.update(stop_strings=self.prompt_format.stop, tokenizer=self._tokenizer)
        # group by schema: one logits processor constrains a whole batch
        groups: dict[str | None, list[int]] = {}
        schemas: dict[str, dict[str, Any]] = {}
        for i, item in enumerate(inputs):
            _, wire = split_input(item)
            key = None
            if wire is not None:
                schema = resolve_spec(wire).schema
                key = json.dumps(schema)
                schemas[key] = schema
            groups.setdefault(key, []).append(i)
        results: list[GenerateOutput | None] = [None] * len(inputs)
        for key, indices in groups.items():
            prompts = [self.prepare_prompt(inputs[i]) for i in indices]
            images = [self._images_of(inputs[i]) for i in indices]
            group_schema = schemas[key] if key is not None else None
            outs = self._generate_batches(
                prompts, num_generations, kwargs, group_schema, images if any(images) else None
            )
            for i, out in zip(indices, outs, strict=True):
                results[i] = out
        if self.prompt_format is not None:
            for result in results:
                if result is not None:
                    texts = result["generations"]
                    result["generations"] = [self.prompt_format.cut(t or "") for t in texts]
        return [r for r in results if r is not None]

    def _images_of(self, input: FormattedInput) -> list[Any]:
        """The images of a conversation as PIL images (none for text-only ones)."""
        messages, _ = split_input(input)
        if not any(image_urls(m.get("content")) for m in messages):
            return []
        if self._processor is None:
            raise ValueError(
                f"TransformersLLM(model={self.model!r}) got a message with an image, but this "
                "model is a text-only model (its config has no vision_config). Use a "
                "vision-language model (e.g. Llava, SmolVLM, Qwen2-VL) or drop the image."
            )
        return to_processor_messages(messages)[1]

    def encode(self, prompts: list[str], images: list[list[Any]] | None = None) -> dict[str, Any]:
        """Model inputs for rendered ``prompts`` (left-padded), on the model's device; with
        ``images`` (one list per prompt, in token order) the processor adds ``pixel_values``
        (in the model's dtype)."""
        if images is not None and any(images):
            flat = [image for row in images for image in row]
            encoded = self._processor(
                text=prompts,
                images=flat,
                return_tensors="pt",
                padding=True,
                add_special_tokens=False,
            )
        else:
            encoded = self._tokenizer(
                prompts, return_tensors="pt", padding=True, add_special_tokens=False
            )
        model = self._model
        return {
            k: v.to(model.device, dtype=model.dtype)
            if v.is_floating_point()
            else v.to(model.device)
            for k, v in encoded.items()
        }

    def resolved_device(self) -> str:
        """The torch device ``device`` names; ``"auto"`` is CUDA, else Apple MPS, else CPU."""
        if self.device != "auto":
            return self.device or "cpu"
        import torch

        if torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return "mps"
        return "cpu"

    def _generate_batches(
        self,
        prompts: list[str],
        num_generations: int,
        kwargs: dict[str, Any],
        schema: dict[str, Any] | None = None,
        images: list[list[Any]] | None = None,
    ) -> list[GenerateOutput]:
        """Generate in batches of ``batch_size``, shortest prompts together when
        ``sort_by_length``, and return the outputs in the order of ``prompts``; with
        ``schema``, every reply is constrained to it (outlines); ``images`` are each
        prompt's images (vision models)."""
        order = list(range(len(prompts)))
        if self.sort_by_length:
            order.sort(key=lambda i: len(prompts[i]))
        size = self.batch_size or max(len(order), 1)
        results: list[GenerateOutput | None] = [None] * len(prompts)
        with self._lock:
            for start in range(0, len(order), size):
                chunk = order[start : start + size]
                outs = self._generate_batch(
                    [prompts[i] for i in chunk],
                    num_generations,
                    kwargs,
                    schema,
                    [images[i] for i in chunk] if images is not None else None,
                )
                for i, out in zip(chunk, outs, strict=True):
                    results[i] = out
        return [r for r in results if r is not None]

    def _generate_batch(
        self,
        prompts: list[str],
        num_generations: int,
        kwargs: dict[str, Any],
        schema: dict[str, Any] | None = None,
        images: list[list[Any]] | None = None,
    ) -> list[GenerateOutput]:
        import torch

        tokenizer, model = self._tokenizer, self._model
        kwargs = dict(kwargs)
        seed = kwargs.pop("seed", None)
        stop = kwargs.pop("stop", None)
        if seed is not None:
            torch.manual_seed(int(seed))
        if not kwargs.get("do_sample", True) or kwargs.get("temperature") == 0:
            kwargs["do_sample"] = False
            kwargs.pop("temperature", None)
            kwargs.pop("top_p", None)
            kwargs.pop("top_k", None)
        repeat = 1
        if not kwargs.get("do_sample", True) and num_generations > 1:
            # greedy decoding gives the same text every time: decode once, repeat it
            repeat, num_generations = num_generations, 1
        encoded = self.encode(prompts, images)
        if schema is not None:
            from transformers import LogitsProcessorList

            processor = self._json_processor(schema)
            processor.reset()  # fresh parser state for each row of this batch
            kwargs["logits_processor"] = LogitsProcessorList([processor])
        with torch.inference_mode():
            output = model.generate(
                **encoded,
                num_return_sequences=num_generations,
                pad_token_id=tokenizer.pad_token_id,
                **kwargs,
            )
        prompt_len = encoded["input_ids"].shape[1]
        new_tokens = output[:, prompt_len:]
        input_counts = encoded["attention_mask"].sum(dim=1).tolist()
        eos = model.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos]) | {tokenizer.pad_token_id}
        results: list[GenerateOutput] = []
        for i in range(len(prompts)):
            texts: list[str | None] = []
            counts: list[int | None] = []
            for j in range(num_generations):
                ids = new_tokens[i * num_generations + j].tolist()
                kept = []
                for tok in ids:
                    if tok in eos_ids:
                        break
                    kept.append(tok)
                text = tokenizer.decode(kept, skip_special_tokens=True)
                if stop:
                    for s in [stop] if isinstance(stop, str) else stop:
                        cut = text.find(s)
                        if cut >= 0:
                            text = text[:cut]
                texts.append(text)
                counts.append(len(kept))
            results.append(
                {
                    "generations": texts * repeat,
                    "statistics": {
                        "input_tokens": [
                            int(input_counts[i]) for _ in range(num_generations * repeat)
                        ],
                        "output_tokens": counts * repeat,
                    },
                }
            )
        return results


__all__ = ["TransformersLLM"]

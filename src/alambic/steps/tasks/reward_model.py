"""RewardModelScore: score instruction/response pairs with a reward model, no generation.

A reward model is a sequence-classification transformer trained on human (or AI)
preferences that outputs one number for a conversation: higher means preferred. Scoring is
one forward pass per batch, far cheaper than an LLM judge, which makes it a common way to
rank candidate generations or to rate pairs for preference data (its ``score`` feeds
``FormatTextGenerationDPO`` after grouping, with ``input_mappings={"ratings": ...}``).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from pydantic import Field, PositiveInt, PrivateAttr

from alambic.errors import AlambicUserError, ColumnTypeError, ModelNotAvailableError
from alambic.llms.typing import ChatType
from alambic.runtime_parameters import RuntimeParameter
from alambic.steps.base import Step
from alambic.steps.typing import Row, StepColumns, StepInput, StepOutput
from alambic.utils.imports import require

_LOAD_LOCK = threading.Lock()
"""transformers' from_pretrained is not thread-safe and the executor loads steps in parallel."""


class RewardModelScore(Step):
    """Add ``score`` (a float) to rows with an ``instruction`` and a ``generation``.

    ``model`` is a local folder or hub id of an ``AutoModelForSequenceClassification`` reward
    model (for example ``OpenAssistant/reward-model-deberta-v3-large-v2`` or a Skywork /
    ArmoRM-style model). The conversation -- optional ``system_prompt``, the instruction as
    the user turn, the generation as the assistant turn -- is rendered with the tokenizer's
    chat template when it has one (as reward models trained on chats expect), else as the
    two texts separated by a blank line. ``score`` is the model's output logit: the only one
    for a single-output model, or the one at ``score_index`` otherwise. Rows whose
    ``generation`` is ``None`` (a failed generation) get ``score=None``.

    Runs on the CPU unless ``device`` says otherwise; rows are scored ``batch_size`` at a time.
    """

    model: str = Field(description="Local folder or Hugging Face hub id of the reward model.")
    revision: str = "main"
    tokenizer: str | None = Field(default=None, description="Tokenizer, if not the model's.")
    device: str | None = "cpu"
    torch_dtype: str = "auto"
    trust_remote_code: bool = False
    max_length: PositiveInt | None = Field(
        default=None, description="Truncate conversations to this many tokens."
    )
    score_index: int | None = Field(
        default=None, description="Which output logit is the score, for multi-output models."
    )
    batch_size: RuntimeParameter[PositiveInt] = Field(
        default=8, description="Conversations scored together in one forward pass."
    )

    _model: Any = PrivateAttr(default=None)
    _tokenizer: Any = PrivateAttr(default=None)
    _index: int = PrivateAttr(default=0)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @property
    def inputs(self) -> StepColumns:
        return {"instruction": True, "generation": True, "system_prompt": False}

    @property
    def outputs(self) -> StepColumns:
        return ["score"]

    def load(self) -> None:
        super().load()
        if self._model is not None:
            return
        transformers = require("transformers", feature="RewardModelScore", extra="transformers")
        require("torch", feature="RewardModelScore", extra="transformers")
        try:
            with _LOAD_LOCK:
                tokenizer = transformers.AutoTokenizer.from_pretrained(
                    self.tokenizer or self.model,
                    revision=self.revision,
                    trust_remote_code=self.trust_remote_code,
                )
                model = transformers.AutoModelForSequenceClassification.from_pretrained(
                    self.model,
                    revision=self.revision,
                    dtype=self.torch_dtype,
                    trust_remote_code=self.trust_remote_code,
                )
        except (OSError, ValueError) as exc:
            if Path(self.model).expanduser().exists():
                raise ModelNotAvailableError(
                    f"Step {self.name!r}: could not load the reward model in {self.model!r} "
                    f"(is it a sequence-classification model folder?): {exc}"
                ) from exc
            if not isinstance(exc, OSError):
                raise
            offline = (
                " (HF_HUB_OFFLINE=1 is set)" if os.environ.get("HF_HUB_OFFLINE") == "1" else ""
            )
            raise ModelNotAvailableError(
                f"Step {self.name!r}: could not download the reward model {self.model!r}"
                f"{offline}. Download it where the Hub is reachable (`hf download {self.model} "
                "--local-dir ./reward-model`) and pass the folder instead."
            ) from exc
        labels = int(getattr(model.config, "num_labels", 1))
        if self.score_index is None and labels != 1:
            raise AlambicUserError(
                f"Step {self.name!r}: the model {self.model!r} has {labels} outputs "
                f"({getattr(model.config, 'id2label', {})}); say which one is the reward with "
                "score_index=<n>."
            )
        index = self.score_index or 0
        if not 0 <= index < labels:
            raise AlambicUserError(
                f"Step {self.name!r}: score_index={index} but the model has {labels} outputs "
                f"(0 to {labels - 1})."
            )
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        if getattr(model.config, "pad_token_id", None) is None:
            model.config.pad_token_id = tokenizer.pad_token_id
        if self.device:
            model = model.to(self.device)
        model.eval()
        self._model, self._tokenizer, self._index = model, tokenizer, index

    def unload(self) -> None:
        self._model = None
        self._tokenizer = None
        super().unload()

    def _conversation(self, row: Row) -> ChatType | None:
        instruction = row.get("instruction")
        generation = row.get("generation")
        if not isinstance(instruction, str):
            raise ColumnTypeError(
                f"Step {self.name!r} (RewardModelScore): column 'instruction' must hold text, "
                f"got {type(instruction).__name__} {instruction!r:.80}."
            )
        if generation is None:
            return None
        if not isinstance(generation, str):
            raise ColumnTypeError(
                f"Step {self.name!r} (RewardModelScore): column 'generation' must hold text or "
                f"None, got {type(generation).__name__} {generation!r:.80}. For a list of "
                "generations, ExpandColumns first."
            )
        messages: ChatType = []
        system = row.get("system_prompt")
        if isinstance(system, str):
            messages.append({"role": "system", "content": system})
        messages.append({"role": "user", "content": instruction})
        messages.append({"role": "assistant", "content": generation})
        return messages

    def score(self, conversations: list[ChatType]) -> list[float]:
        """Reward of each conversation (loads the model on first use)."""
        if self._model is None:
            self.load()
        import torch

        tokenizer = self._tokenizer
        with_template = getattr(tokenizer, "chat_template", None) is not None
        if with_template:
            texts = [tokenizer.apply_chat_template(c, tokenize=False) for c in conversations]
        else:
            texts = ["\n\n".join(m["content"] for m in c) for c in conversations]
        scores: list[float] = []
        size = self.batch_size or 8
        with self._lock, torch.no_grad():
            for start in range(0, len(texts), size):
                encoded = tokenizer(
                    texts[start : start + size],
                    padding=True,
                    truncation=self.max_length is not None,
                    max_length=self.max_length,
                    add_special_tokens=not with_template,
                    return_tensors="pt",
                ).to(self._model.device)
                logits = self._model(**encoded).logits
                scores.extend(float(v) for v in logits[:, self._index].float().tolist())
        return scores

    def process(self, inputs: StepInput) -> StepOutput:  # type: ignore[override]
        conversations = [self._conversation(row) for row in inputs]
        present = [c for c in conversations if c is not None]
        values = iter(self.score(present) if present else [])
        yield [
            {**row, "score": next(values) if c is not None else None}
            for row, c in zip(inputs, conversations, strict=True)
        ]


__all__ = ["RewardModelScore"]

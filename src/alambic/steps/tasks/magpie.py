"""Magpie: an aligned chat model writes the user's turns itself, from an empty prompt.

Xu et al., 2024, "Magpie: Alignment Data Synthesis from Scratch by Prompting Aligned LLMs with
Nothing" (https://arxiv.org/abs/2406.08464). Give an instruction-tuned model only the start of
its own chat format up to where a user message begins (the *pre-query template*, e.g.
``<|im_start|>user\\n``) and it completes it with a plausible user request, since that is what
it was trained to see there. The model then answers the request through the normal chat
template; repeating the two steps gives multi-turn conversations.

Writing the user turn needs raw text completion, with no chat template applied: the LLM must
implement ``complete`` (``supports_raw_completion``), as local engines do
(``TransformersLLM``) and as ``OpenAILLM`` does against servers with ``/v1/completions``; or
it carries :class:`~alambic.llms.magpie.MagpieChatTemplateMixin` with a pre-query template
(distilabel's way), and then renders the prompt itself inside ``generate``.
"""

from __future__ import annotations

import json
import math
import random
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, Field, PositiveInt, field_validator, model_validator

from alambic.errors import AlambicUserError, ColumnTypeError
from alambic.llms._overrides import as_generate_output
from alambic.llms.magpie import (
    PRE_QUERY_TEMPLATES,
    MagpieChatTemplateMixin,
    MagpieTemplate,
    resolve_template,
)
from alambic.llms.typing import ChatType
from alambic.steps.tasks._evolution import EvolutionChain, rows_from_chains
from alambic.steps.tasks._lenient import LenientFormatOutput
from alambic.steps.tasks.base import GeneratorTask, Task
from alambic.steps.typing import GeneratorOutput, Row, StepColumns, StepInput, StepOutput

MAGPIE_MULTI_TURN_SYSTEM_PROMPT: str = (
    "You are a capable and friendly AI assistant. The user will talk with you over several "
    "rounds: a first question, then follow-up questions on the same subject. Answer each one "
    "fully, accurately and to the point, building on what was said before."
)
"""The system prompt of multi-turn Magpie conversations (alambic's wording), under
distilabel's name. As in distilabel, it is used when ``n_turns > 1`` and neither the row nor
the task gives a system prompt; ``multi_turn_system_prompt=False`` turns that off."""


class _MagpieBase(BaseModel):
    """Settings and the conversation loop shared by :class:`Magpie` and the generator."""

    n_turns: PositiveInt = Field(default=1, description="User/assistant exchanges per row.")
    only_instruction: bool = Field(
        default=False, description="Only write the first user message (no answer)."
    )
    pre_query_template: str | MagpieTemplate = Field(
        default="llama3",
        description="A preset name (llama3, qwen2, chatml), a MagpieTemplate, or the raw "
        "text that opens a user turn.",
    )
    system_prompt: str | list[str] | dict[str, str | tuple[str, float]] | None = Field(
        default=None,
        description="System prompt; or a list to draw one from per row (seeded); or a dict "
        "name -> prompt (equal chances) or name -> (prompt, probability), drawn per row, the "
        "name written to `system_prompt_key`.",
    )
    seed: int = Field(default=42, description="Seed of the system-prompt draws.")
    include_system_prompt: bool = Field(
        default=False,
        description="Keep the system message in the output conversation (distilabel's "
        "option; with n_turns=1 a row that had a system prompt is then a `conversation`).",
    )
    end_with_user: bool = Field(
        default=False,
        description="End the conversation with the last user message, unanswered "
        "(output `conversation`).",
    )
    multi_turn_system_prompt: bool = Field(
        default=True,
        description="With n_turns > 1 and no system prompt, use "
        "MAGPIE_MULTI_TURN_SYSTEM_PROMPT (distilabel's behaviour).",
    )
    conversation_output: bool = Field(
        default=False,
        description="Output `conversation` (system message included) even when n_turns=1, "
        "instead of distilabel's `instruction` + `response`: alambic's earlier shape.",
    )

    @field_validator("system_prompt")
    @classmethod
    def _check_weights(cls, value: Any) -> Any:
        if isinstance(value, dict):
            check_system_prompt_weights(value)
        return value

    @model_validator(mode="after")
    def _check_turns(self) -> _MagpieBase:
        if self.only_instruction and self.n_turns != 1:
            raise ValueError(
                f"only_instruction=True writes one user message, but n_turns={self.n_turns}; "
                "set n_turns=1 or only_instruction=False."
            )
        return self

    def template(self) -> MagpieTemplate:
        """The resolved template; a custom string works for one turn with no system prompt.

        When ``pre_query_template`` is left at its default and the LLM carries
        :class:`MagpieChatTemplateMixin` with a template, the LLM's template is used.
        """
        from_llm = _llm_template(getattr(self, "llm", None))
        if from_llm is not None and "pre_query_template" not in self.model_fields_set:
            return from_llm
        return resolve_template(self.pre_query_template)

    def _delegated(self) -> bool:
        """True when the LLM renders Magpie prompts itself (distilabel's mixin, no raw
        completions): user turns are then asked through its ``generate``."""
        llm = getattr(self, "llm", None)
        return _llm_template(llm) is not None and not getattr(llm, "supports_raw_completion", False)

    def _check_setup(self, step: str, llm: Any, uses_system: bool) -> None:
        if self._delegated():
            return  # the LLM's own chat template renders every turn and the system prompt
        if not getattr(llm, "supports_raw_completion", False):
            raise AlambicUserError(
                f"Step {step!r} (Magpie) needs raw text completions to let the model write "
                f"the user's turn, but {type(llm).__name__} (model {llm.model_name!r}) only "
                "accepts chat messages. Use a local engine such as TransformersLLM, or "
                "OpenAILLM pointed at a server with a /v1/completions endpoint (vLLM, "
                "llama.cpp, TGI); or, for your own LLM class, add MagpieChatTemplateMixin "
                "(alambic.llms.magpie), create it with magpie_pre_query_template=..., and "
                "call apply_magpie_pre_query_template on the prompts it renders."
            )
        template = self.template()
        custom = not template.system
        if custom and (self.n_turns > 1 or uses_system):
            raise AlambicUserError(
                f"Step {step!r} (Magpie): pre_query_template={template.user_header[:60]!r} is not a "
                f"preset ({sorted(PRE_QUERY_TEMPLATES)}) and a plain string cannot render "
                "earlier turns or a system prompt. Pass a MagpieTemplate(system=..., "
                "user=..., assistant=..., user_header=..., stop=[...]) instead."
            )

    def _draw(self, key: str) -> tuple[str | None, str | None]:
        """``(system prompt, its name)`` for the row drawn under ``key`` (the name only for a
        dict of prompts). Draws are seeded by ``seed`` and ``key``, so a rerun or a resumed
        run draws the same ones."""
        prompts = self.system_prompt
        rng = random.Random(f"{self.seed}\x00{key}")
        if isinstance(prompts, dict):
            names = list(prompts)
            weights = [e[1] for e in prompts.values() if not isinstance(e, str)]
            if len(weights) == len(names):  # (prompt, probability) pairs, checked to sum to 1
                name = rng.choices(names, weights=weights)[0]
            else:
                name = rng.choice(names)
            entry = prompts[name]
            return (entry if isinstance(entry, str) else entry[0]), name
        if isinstance(prompts, list):
            return (rng.choice(prompts) if prompts else None), None
        return prompts, None

    def _has_prompts(self) -> bool | None:
        """Whether the task's own ``system_prompt`` gives every row a system prompt: ``True``
        (all its prompts have text), ``False`` (none, or empty), ``None`` (some are empty)."""
        prompts = self.system_prompt
        if isinstance(prompts, list | dict):
            texts = [
                p if isinstance(p, str) else p[0]
                for p in (prompts.values() if isinstance(prompts, dict) else prompts)
            ]
            if all(texts) or not any(texts):
                return bool(texts) and all(texts)
            return None
        return bool(prompts)

    def _converse(self, task: Task | GeneratorTask, chains: list[EvolutionChain]) -> None:
        """Advance every chain through ``n_turns`` user (completion) and assistant turns."""
        template = self.template()
        llm = task.llm
        delegated = self._delegated()
        for turn in range(self.n_turns):
            live = [c for c in chains if c.error is None]
            if not live:
                return
            by_prompt: dict[str, list[EvolutionChain]] = defaultdict(list)
            requests: dict[str, Any] = {}
            for chain in live:
                conversation = chain.extra["conversation"]
                if delegated:  # the LLM renders it and appends the pre-query template
                    key = json.dumps(conversation, sort_keys=True)
                    requests[key] = list(conversation)
                else:
                    key = template.render(conversation)
                    requests[key] = key
                by_prompt[key].append(chain)
            # identical prompts are asked once with num_generations=k, so each row gets its
            # own sample (and its own request-cache entry) instead of k copies of one reply
            by_count: dict[int, list[str]] = defaultdict(list)
            for prompt, group in by_prompt.items():
                by_count[len(group)].append(prompt)
            for count, prompts in by_count.items():
                batch = [requests[p] for p in prompts]
                if delegated:
                    outputs = _normalized(llm.generate(batch, num_generations=count), count)
                else:
                    outputs = llm.complete(batch, num_generations=count)
                for prompt, request, out in zip(prompts, batch, outputs, strict=True):
                    for j, chain in enumerate(by_prompt[prompt]):
                        text = chain.record(request, _pick(out, j))
                        if text is None:
                            continue
                        user = template.cut(text)
                        if not user:
                            chain.fail(
                                "ReplyParseError",
                                "format_output",
                                "the model wrote an empty user message (check "
                                "pre_query_template matches the model's chat format)",
                            )
                            continue
                        chain.extra["conversation"].append({"role": "user", "content": user})
            if self.only_instruction or (self.end_with_user and turn == self.n_turns - 1):
                return
            live = [c for c in chains if c.error is None]
            if not live:
                return
            conversations = [list(c.extra["conversation"]) for c in live]
            outputs = _normalized(llm.generate(conversations, num_generations=1), 1)
            for chain, conversation, out in zip(live, conversations, outputs, strict=True):
                text = chain.record(conversation, out)
                if text is None:
                    continue
                answer = template.cut(text)
                if not answer:
                    chain.fail("ReplyParseError", "format_output", "the assistant reply is empty")
                    continue
                chain.extra["conversation"].append({"role": "assistant", "content": answer})

    def _output_columns(self) -> list[str]:
        """distilabel's shape: ``instruction`` (only_instruction), ``instruction`` +
        ``response`` (one turn), else ``conversation``; ``system_prompt_key`` when
        ``system_prompt`` is a dict; then ``model_name``.

        With one turn and ``include_system_prompt``, distilabel gives a row that had a system
        prompt as a ``conversation`` (system message first) and the others as a pair: when
        the task cannot tell beforehand (``Magpie`` with no ``system_prompt`` of its own, where
        the row's column decides), all three columns are declared and each row fills its own.
        """
        if self.only_instruction:
            columns = ["instruction"]
        elif self.conversation_output or self.n_turns > 1 or self.end_with_user:
            columns = ["conversation"]
        elif not self.include_system_prompt:
            columns = ["instruction", "response"]
        else:
            with_system = self._always_has_system()
            if with_system is None:
                columns = ["instruction", "response", "conversation"]
            else:
                columns = ["conversation"] if with_system else ["instruction", "response"]
        if isinstance(self.system_prompt, dict):
            columns.append("system_prompt_key")
        return [*columns, "model_name"]

    def _always_has_system(self) -> bool | None:
        """Whether every row has a system prompt (``None``: it depends on the row)."""
        return self._has_prompts()

    def _row_is_pair(self, had_system: bool) -> bool:
        """distilabel's rule: one turn gives ``instruction`` + ``response``, unless the
        conversation keeps a system message (``include_system_prompt``), ends with the user,
        or ``conversation_output`` asks for ``conversation``."""
        return (
            self.n_turns == 1
            and not self.conversation_output
            and not self.end_with_user
            and not (self.include_system_prompt and had_system)
        )

    def _keeps_system(self) -> bool:
        return self.include_system_prompt or self.conversation_output

    def _default_system(self, system: str | None) -> str | None:
        """The row's system prompt, or the multi-turn one when there is none."""
        if system:
            return system
        if self.n_turns > 1 and self.multi_turn_system_prompt and not self.only_instruction:
            return MAGPIE_MULTI_TURN_SYSTEM_PROMPT
        return system

    def _values(self, chain: EvolutionChain) -> dict[str, Any]:
        conversation = chain.extra["conversation"]
        if self.only_instruction:
            return {"instruction": conversation[-1]["content"]}
        had_system = bool(conversation) and conversation[0]["role"] == "system"
        if not self._keeps_system():
            conversation = [m for m in conversation if m["role"] != "system"]
        if self._row_is_pair(had_system):
            return {
                "instruction": conversation[0]["content"],
                "response": conversation[1]["content"],
            }
        return {"conversation": conversation}

    def _drawn_key(self, chain: EvolutionChain) -> dict[str, Any]:
        """The ``system_prompt_key`` column (kept on failed rows too: the draw happened)."""
        if isinstance(self.system_prompt, dict):
            return {"system_prompt_key": chain.extra.get("system_prompt_key")}
        return {}


def check_system_prompt_weights(prompts: dict[str, str | tuple[str, float]]) -> None:
    """Refuse a dict of system prompts that cannot be drawn from, naming the fix."""
    if not prompts:
        raise ValueError(
            "system_prompt={} holds no prompts; give at least one name -> prompt, or name -> "
            "(prompt, probability), or leave system_prompt unset."
        )
    weighted = {name: entry[1] for name, entry in prompts.items() if not isinstance(entry, str)}
    if not weighted:
        return
    if len(weighted) != len(prompts):
        plain = sorted(set(prompts) - set(weighted))
        raise ValueError(
            f"system_prompt mixes plain prompts and (prompt, probability) pairs: {plain} have "
            "no probability. Give every entry a probability (they must add up to 1), or none "
            "(then each is equally likely)."
        )
    for name, weight in weighted.items():
        if not math.isfinite(weight) or not 0 <= weight <= 1:
            raise ValueError(
                f"system_prompt[{name!r}] has probability {weight!r}; each probability must be "
                "between 0 and 1, and together they must add up to 1."
            )
    total = math.fsum(weighted.values())
    if not math.isclose(total, 1.0, rel_tol=0, abs_tol=1e-6):
        scaled = (
            {name: round(weight / total, 4) for name, weight in weighted.items()}
            if total > 0
            else {}
        )
        raise ValueError(
            f"system_prompt probabilities {weighted} add up to {total:g}, not 1. Give "
            "probabilities that sum to 1"
            + (f", e.g. scaled: {scaled}" if scaled else "")
            + "; or pass name -> prompt (without probabilities) for equal chances."
        )


def _normalized(outputs: Sequence[Any], count: int) -> list[Any]:
    """``generate``'s outputs, each a full ``GenerateOutput``: a user's ``generate`` override
    (distilabel style) may return plain texts, or dicts without token counts."""
    return [
        out if isinstance(out, dict) and "statistics" in out else as_generate_output(out, count)
        for out in outputs
    ]


def _llm_template(llm: Any) -> MagpieTemplate | None:
    if isinstance(llm, MagpieChatTemplateMixin):
        return llm.magpie_template()
    return None


def _pick(out: Any, j: int) -> Any:
    errors = out.get("errors") or [None] * len(out["generations"])
    picked = {
        "generations": [out["generations"][j] if j < len(out["generations"]) else None],
        "statistics": {
            "input_tokens": [_at(out["statistics"]["input_tokens"], j)],
            "output_tokens": [_at(out["statistics"]["output_tokens"], j)],
        },
    }
    error = errors[j] if j < len(errors) else None
    if j >= len(out["generations"]) and error is None:
        error = {"type": "EmptyReply", "kind": "invalid_response", "message": "no completion"}
    if error is not None:
        picked["errors"] = [error]
    return picked


def _at(values: list[Any], j: int) -> Any:
    return values[j] if j < len(values) else None


def _start(row: Row, index: int, system: Any) -> EvolutionChain:
    chain = EvolutionChain(row=row, index=index, texts=[])
    conversation: ChatType = []
    if system:  # an empty prompt (e.g. "" in a list) means none
        conversation.append({"role": "system", "content": system})
    chain.extra["conversation"] = conversation
    return chain


class Magpie(LenientFormatOutput, _MagpieBase, Task):
    """Write conversations (or instructions) with Magpie, one per input row.

    Optional input column ``system_prompt`` (wins over the ``system_prompt`` setting). Output
    columns as distilabel's: ``instruction`` + ``response`` for one turn, ``conversation``
    (OpenAI-style messages) for ``n_turns > 1`` or ``end_with_user``, ``instruction`` alone
    with ``only_instruction``. ``include_system_prompt`` keeps the system message first in
    ``conversation``; with one turn it makes a row that had a system prompt a
    ``conversation``, as distilabel does (see ``_output_columns``).
    ``conversation_output=True`` always gives ``conversation``. ``system_prompt`` may be a
    list (drawn per row) or a dict name -> prompt or name -> (prompt, probability) (drawn per
    row with those weights; the name goes to the ``system_prompt_key`` column). With ``n_turns > 1`` and no system prompt, ``MAGPIE_MULTI_TURN_SYSTEM_PROMPT`` is used
    (``multi_turn_system_prompt=False`` to start from nothing). A completion is cut at the template's
    end-of-turn markers; an empty user or assistant message fails the row (reason in
    ``alambic_metadata``). ``num_generations`` > 1 writes several conversations per row.

    Raises at ``load()`` when the LLM cannot do raw completions.
    """

    @property
    def inputs(self) -> StepColumns:
        return {"system_prompt": False}

    @property
    def outputs(self) -> StepColumns:
        return self._output_columns()

    def load(self) -> None:
        self._check_setup(str(self.name), self.llm, self.system_prompt is not None)
        super().load()

    def _always_has_system(self) -> bool | None:
        # a row's own system_prompt column wins; without a task-level prompt, the row decides
        return True if self._has_prompts() is True else None

    def format_input(self, input: dict[str, Any]) -> ChatType:
        """The conversation so far for a row: its system message, if any."""
        return self._opening(input, repr(sorted(input.items())))[0]

    def _opening(self, input: dict[str, Any], key: str) -> tuple[ChatType, str | None]:
        """The row's opening conversation and, for a dict of prompts, the drawn name."""
        name = None
        system = input.get("system_prompt")
        if not system:
            system, name = self._draw(key)
        if system is None or isinstance(system, str):
            system = self._default_system(system)
        if system is not None and not isinstance(system, str):
            raise ColumnTypeError(
                f"Step {self.name!r} (Magpie): column 'system_prompt' must hold text, got "
                f"{type(system).__name__}."
            )
        if system and not self._delegated() and not self.template().system:
            raise AlambicUserError(
                f"Step {self.name!r} (Magpie): the row has a system prompt, but the plain-string "
                "pre_query_template cannot render one. Pass a MagpieTemplate instead."
            )
        return ([{"role": "system", "content": system}] if system else []), name

    def parse_output(
        self, output: str | None, input: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """A user-turn completion, cut at the template's end-of-turn markers."""
        text = self.template().cut(output or "")
        if not text:
            raise ValueError("the model wrote an empty user message")
        return {"instruction": text}

    def process(self, inputs: StepInput) -> StepOutput:  # type: ignore[override]
        chains: list[EvolutionChain] = []
        seen: Counter[str] = Counter()
        for row in inputs:
            content = repr(sorted(row.items()))
            for index in range(self.num_generations or 1):
                # identical rows (and each generation of a row) draw their own system prompt
                occurrence = seen[content]
                seen[content] += 1
                key = content if occurrence == 0 else f"{content}\x00{occurrence}"
                chain = _start(row, index, None)
                try:
                    conversation, name = self._opening(row, key)
                    chain.extra["conversation"] = conversation
                    chain.extra["system_prompt_key"] = name
                except ValueError as exc:
                    chain.fail(type(exc).__name__, "format_input", str(exc))
                chains.append(chain)
        self._converse(self, chains)
        yield rows_from_chains(self, chains, self._values, always=self._drawn_key)


class MagpieGenerator(LenientFormatOutput, _MagpieBase, GeneratorTask):
    """Generate ``num_rows`` Magpie conversations (or instructions) from nothing.

    Same settings and outputs as :class:`Magpie`; rows come in batches of ``batch_size``. With
    a list or dict of system prompts, row ``i`` draws its own from ``seed`` and ``i``, so a
    resumed run continues with the same draws. Every row then has a system prompt, so with
    one turn and ``include_system_prompt`` the output is ``conversation``.
    """

    num_rows: PositiveInt = Field(description="How many rows to generate.")

    @property
    def outputs(self) -> StepColumns:
        return self._output_columns()

    def load(self) -> None:
        self._check_setup(str(self.name), self.llm, self.system_prompt is not None)
        super().load()

    def parse_output(
        self, output: str | None, input: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """A user-turn completion, cut at the template's end-of-turn markers."""
        text = self.template().cut(output or "")
        if not text:
            raise ValueError("the model wrote an empty user message")
        return {"instruction": text}

    def process(self, offset: int = 0) -> GeneratorOutput:
        size = self.batch_size or 50
        for start in range(offset, self.num_rows, size):
            stop = min(start + size, self.num_rows)
            chains = []
            for i in range(start, stop):
                system, name = self._draw(str(i))
                chain = _start({}, 0, self._default_system(system))
                chain.extra["system_prompt_key"] = name
                chains.append(chain)
            self._converse(self, chains)
            rows = rows_from_chains(self, chains, self._values, always=self._drawn_key)
            yield rows, stop >= self.num_rows


__all__ = [
    "MAGPIE_MULTI_TURN_SYSTEM_PROMPT",
    "PRE_QUERY_TEMPLATES",
    "Magpie",
    "MagpieChatTemplateMixin",
    "MagpieGenerator",
    "MagpieTemplate",
]

"""Evol-Instruct: make instructions harder (in depth) or different (in breadth), step by step.

Xu et al., 2023, "WizardLM: Empowering Large Language Models to Follow Complex Instructions"
(https://arxiv.org/abs/2304.12244). Starting from simple instructions, an LLM rewrites each one
several times; each rewrite applies one mutation: in-depth evolving (add a constraint, deepen
the question, make it concrete, ask for more reasoning steps) or in-breadth evolving (a new
instruction on a rarer topic of the same domain). Failed evolutions are eliminated, and the
evolved instructions can be answered by the same LLM to make instruction-response pairs.
"""

from __future__ import annotations

import logging
import random
from typing import Any

from pydantic import Field, PositiveInt, model_validator

from alambic.errors import AlambicUserError
from alambic.llms.typing import ChatType
from alambic.steps.tasks._evolution import (
    EvolutionChain,
    EvolutionTask,
    check_mutation_templates,
    clean_rewrite,
    fill_mutation_template,
)
from alambic.steps.tasks._lenient import LenientFormatOutput
from alambic.steps.tasks._parsing import ReplyParseError
from alambic.steps.tasks._templates import render
from alambic.steps.tasks.base import METADATA_COLUMN, GeneratorTask
from alambic.steps.typing import GeneratorOutput, Row, StepColumns

logger = logging.getLogger("alambic")

IN_DEPTH_MUTATIONS: dict[str, str] = {
    "constraints": "add one more constraint or requirement that the answer must satisfy.",
    "deepen": "if the prompt touches on a question or topic, make the question deeper and "
    "broader, so that it needs more knowledge to answer.",
    "concretize": "replace general concepts with more specific ones.",
    "reasoning": "if the prompt can be solved with a few simple steps of thinking, rewrite it "
    "so that it explicitly asks for reasoning in several steps.",
}
"""WizardLM's in-depth evolving methods (our wording)."""

IN_BREADTH_MUTATIONS: dict[str, str] = {
    "breadth": "write a new prompt on a rarer topic of the same domain.",
}
"""WizardLM's in-breadth evolving method (our wording)."""


def mutation_prompt(mutation: str, method: str, instruction: str) -> ChatType:
    """The request that applies an in-depth or in-breadth mutation to ``instruction``."""
    template = "in_breadth" if mutation in IN_BREADTH_MUTATIONS else "in_depth"
    content = render("evol_instruct", template, method=method, instruction=instruction)
    return [{"role": "user", "content": content}]


PROMPT_PLACEHOLDER = "<PROMPT>"
"""Where the instruction goes in a distilabel-style mutation template."""

_DISTILABEL_NAMES = {
    "CONSTRAINTS": "constraints",
    "DEEPENING": "deepen",
    "CONCRETIZING": "concretize",
    "INCREASED_REASONING_STEPS": "reasoning",
    "BREADTH": "breadth",
}


def _whole_prompt(name: str) -> str:
    methods = {**IN_DEPTH_MUTATIONS, **IN_BREADTH_MUTATIONS}
    content = mutation_prompt(name, methods[name], PROMPT_PLACEHOLDER)[0]["content"]
    assert isinstance(content, str)
    return content


MUTATION_TEMPLATES: dict[str, str] = {
    key: _whole_prompt(name) for key, name in _DISTILABEL_NAMES.items()
}
"""distilabel's names for the Evol-Instruct mutations -> the whole rewriting prompt (alambic's
wording), ``<PROMPT>`` where the instruction goes. Pass it, or your own dict of that form, as
``mutation_templates=`` to :class:`EvolInstruct` or :class:`EvolInstructGenerator`."""

GENERATION_MUTATION_TEMPLATES: dict[str, str] = {
    "FRESH_START": "Write one new question or request for an AI assistant that uses one or "
    "more of these words: <PROMPT>\nReply with the request only.",
    **MUTATION_TEMPLATES,
}
""":data:`MUTATION_TEMPLATES` plus ``FRESH_START`` (a new request from words of a pooled
one), distilabel's set for :class:`EvolInstructGenerator`."""


class _MutationTemplates:
    """distilabel's ``mutation_templates`` argument: name -> the whole rewriting prompt."""

    name: str | None
    mutation_templates: dict[str, str] | None

    @model_validator(mode="after")
    def _check_mutation_templates(self) -> Any:
        check_mutation_templates(
            f"Step {self.name!r} ({type(self).__name__})",
            self.mutation_templates,
            [PROMPT_PLACEHOLDER],
        )
        return self

    def _mutation_request(self, mutation: str, methods: dict[str, str], text: str) -> ChatType:
        if self.mutation_templates:
            template = self.mutation_templates[mutation]
            return fill_mutation_template(template, {PROMPT_PLACEHOLDER: text})
        return mutation_prompt(mutation, methods[mutation], text)


class EvolInstruct(_MutationTemplates, EvolutionTask):
    """Evolve each ``instruction`` ``num_evolutions`` times (WizardLM's Evol-Instruct).

    Output columns: ``evolved_instruction`` (the last version) or, with ``store_evolutions``,
    ``evolved_instructions`` (every version, in order); with ``generate_answers`` also
    ``answer`` (or ``answers``, one per stored version), written by the same LLM.
    ``mutations`` maps a mutation name to its method (the default has the four in-depth
    methods and the in-breadth one); ``include_original_instruction`` puts the input first in
    ``evolved_instructions``. Each step draws one mutation per row from ``seed``.

    An evolution that comes back empty, unchanged or quoting the rewriting prompt ends its
    chain, as does an empty answer: that row keeps ``None`` outputs and the reason in
    ``alambic_metadata``. ``num_generations`` > 1 runs independent chains per row.
    """

    mutations: dict[str, str] = Field(
        default_factory=lambda: {**IN_DEPTH_MUTATIONS, **IN_BREADTH_MUTATIONS},
        description="Mutation name -> how to rewrite (picked at random each step).",
    )
    mutation_templates: dict[str, str] | None = Field(
        default=None,
        description="distilabel's form: name -> the whole rewriting prompt with <PROMPT> "
        "where the instruction goes (e.g. MUTATION_TEMPLATES); replaces mutations.",
    )
    generate_answers: bool = Field(default=False, description="Also answer the instructions.")
    include_original_instruction: bool = Field(
        default=False, description="With store_evolutions, list the input first."
    )

    @property
    def source_column(self) -> str:
        return "instruction"

    @property
    def inputs(self) -> StepColumns:
        return ["instruction"]

    @property
    def outputs(self) -> StepColumns:
        columns = ["evolved_instructions" if self.store_evolutions else "evolved_instruction"]
        if self.generate_answers:
            columns.append("answers" if self.store_evolutions else "answer")
        return [*columns, "model_name"]

    def mutation_prompt(self, mutation: str, row: Row, text: str) -> ChatType:
        return self._mutation_request(mutation, self.mutations, text)

    def _stored(self, chain: EvolutionChain) -> list[str]:
        return chain.texts if self.include_original_instruction else chain.texts[1:]

    def finish(self, chains: list[EvolutionChain]) -> None:
        if not self.generate_answers:
            return
        generate_answers_for(
            self, chains, lambda c: self._stored(c) if self.store_evolutions else [c.current]
        )

    def chain_values(self, chain: EvolutionChain) -> dict[str, Any]:
        if self.store_evolutions:
            values: dict[str, Any] = {"evolved_instructions": self._stored(chain)}
            if self.generate_answers:
                values["answers"] = chain.extra["answers"]
            return values
        values = {"evolved_instruction": chain.current}
        if self.generate_answers:
            values["answer"] = chain.extra["answers"][-1]
        return values


def generate_answers_for(task: Any, chains: list[EvolutionChain], texts_of: Any) -> None:
    """Answer each live chain's instructions (``texts_of(chain)``) in one batched call."""
    live = [c for c in chains if c.error is None]
    jobs = [(c, text) for c in live for text in texts_of(c)]
    if not jobs:
        return
    prompts: list[ChatType] = [[{"role": "user", "content": text}] for _, text in jobs]
    outputs = task.llm.generate(prompts, num_generations=1)
    for (chain, _), prompt, out in zip(jobs, prompts, outputs, strict=True):
        if chain.error is not None:
            continue
        answer = chain.record(prompt, out)
        if answer is None:
            continue
        if not answer.strip():
            chain.fail("ReplyParseError", "format_output", "eliminated: the answer is empty")
            continue
        chain.extra.setdefault("answers", []).append(answer.strip())


_SEED_INSTRUCTIONS = [
    "Explain how a refrigerator keeps food cold.",
    "Write a short poem about the first day of spring.",
    "Give three tips for staying focused while studying.",
    "Summarise the causes of the French Revolution in a paragraph.",
    "Write a Python function that checks whether a string is a palindrome.",
    "What is the difference between weather and climate?",
    "Suggest a simple vegetarian dinner recipe.",
    "Describe how to change a flat bicycle tyre.",
]


class EvolInstructGenerator(_MutationTemplates, LenientFormatOutput, GeneratorTask):
    """Generate ``num_instructions`` new instructions by evolving a seed pool (WizardLM).

    Each round takes instructions from the pool (``seed_instructions`` at first, then also
    the accepted ones), applies a random mutation from ``mutations`` to each, and accepts the
    rewrites that pass the elimination checks, are ``min_length``-``max_length`` characters
    long and are not duplicates; accepted instructions join the pool, so later rounds evolve
    evolved ones. Output columns ``instruction`` and, with ``generate_answers``, ``answer``.

    It stops after ``max_rounds`` rounds even if fewer instructions were accepted (a model
    that keeps failing cannot hang the pipeline), with a warning.
    """

    num_instructions: PositiveInt = Field(description="How many instructions to generate.")
    seed_instructions: list[str] = Field(
        default_factory=lambda: list(_SEED_INSTRUCTIONS),
        min_length=1,
        description="The instructions evolution starts from.",
    )
    mutations: dict[str, str] = Field(
        default_factory=lambda: {**IN_DEPTH_MUTATIONS, **IN_BREADTH_MUTATIONS},
        description="Mutation name -> how to rewrite.",
    )
    mutation_templates: dict[str, str] | None = Field(
        default=None,
        description="distilabel's form: name -> the whole rewriting prompt with <PROMPT> "
        "where the instruction goes (e.g. GENERATION_MUTATION_TEMPLATES); replaces mutations.",
    )
    generate_answers: bool = Field(default=False, description="Also answer each instruction.")
    min_length: int = Field(default=10, ge=0, description="Shortest accepted instruction (chars).")
    max_length: int = Field(default=2048, ge=1, description="Longest accepted instruction (chars).")
    max_rounds: PositiveInt = Field(default=20, description="Rounds before giving up.")
    seed: int = Field(default=42, description="Seed of pool sampling and mutation choices.")

    @property
    def outputs(self) -> StepColumns:
        columns = ["instruction", "answer"] if self.generate_answers else ["instruction"]
        return [*columns, "model_name"]

    def load(self) -> None:
        self.check_counts()
        super().load()

    def check_counts(self) -> None:
        """Refuse, before any request, settings that cannot produce ``num_instructions`` rows.

        Called by ``load()`` and ``process()``: the lengths and ``batch_size`` may be changed
        after construction (``run(parameters=...)``).
        """
        owner = f"Step {self.name!r} (EvolInstructGenerator)"
        if self.min_length > self.max_length:
            raise AlambicUserError(
                f"{owner}: min_length={self.min_length} is above max_length={self.max_length}, "
                "so every evolved instruction would be eliminated. Give min_length <= "
                f"max_length (e.g. min_length={min(10, self.max_length)})."
            )
        if not self.mutations and not self.mutation_templates:
            raise AlambicUserError(
                f"{owner}: mutations is empty, so no instruction can be evolved. Leave it out "
                "for the default in-depth and in-breadth methods, or give {name: method}."
            )
        per_round = self.batch_size or 50
        reachable = per_round * self.max_rounds
        if self.num_instructions > reachable:
            rounds = -(-self.num_instructions // per_round)
            raise AlambicUserError(
                f"{owner}: num_instructions={self.num_instructions} cannot be reached: at most "
                f"batch_size ({per_round}) x max_rounds ({self.max_rounds}) = {reachable} "
                f"rewrites are tried. Raise max_rounds to at least {rounds} (more if the model "
                "often fails the elimination checks) or batch_size, or ask for fewer."
            )

    def parse_output(
        self, output: str | None, input: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """One evolution reply, cleaned and length-checked."""
        if output is None:
            raise ReplyParseError("the LLM returned no text")
        previous = str((input or {}).get("instruction", ""))
        text = clean_rewrite(output, previous)
        if not self.min_length <= len(text) <= self.max_length:
            raise ReplyParseError(
                f"eliminated: {len(text)} characters, outside {self.min_length}-{self.max_length}"
            )
        return {"instruction": text}

    def process(self, offset: int = 0) -> GeneratorOutput:
        self.check_counts()
        rng = random.Random(self.seed)
        names = sorted(self.mutation_templates or self.mutations)
        pool = list(self.seed_instructions)
        seen = {" ".join(s.split()).casefold() for s in pool}
        produced = 0
        target = self.num_instructions
        for round_index in range(self.max_rounds):
            if produced >= target:
                break
            size = min(self.batch_size or 50, target - produced)
            bases = [rng.choice(pool) for _ in range(size)]
            chosen = [rng.choice(names) for _ in range(size)]
            prompts = [
                self._mutation_request(m, self.mutations, base)
                for m, base in zip(chosen, bases, strict=True)
            ]
            outputs = self.llm.generate(prompts, num_generations=1)
            accepted: list[tuple[str, str, int | None, int | None]] = []
            for base, out in zip(bases, outputs, strict=True):
                text = out["generations"][0]
                try:
                    instruction = self.parse_output(text, {"instruction": base})["instruction"]
                except ReplyParseError:
                    continue
                key = " ".join(instruction.split()).casefold()
                if key in seen:
                    continue
                seen.add(key)
                pool.append(instruction)
                stats = out["statistics"]
                accepted.append(
                    (instruction, text or "", stats["input_tokens"][0], stats["output_tokens"][0])
                )
            rows = self._rows(accepted)
            if self.generate_answers:
                rows = self._answer(rows)
            # a resumed run skips the rows an earlier run already wrote
            skip = max(0, min(len(rows), offset - produced))
            produced += len(rows)
            if rows[skip:]:
                yield rows[skip:], produced >= target
            logger.debug("EvolInstructGenerator round %d: %d accepted", round_index, len(rows))
        if produced < target:
            logger.warning(
                "Step %r (EvolInstructGenerator): %d of %d instructions after max_rounds=%d; "
                "the LLM's rewrites kept being eliminated. Raise max_rounds or check the model.",
                self.name,
                produced,
                target,
                self.max_rounds,
            )
            yield [], True

    def _rows(self, accepted: list[tuple[str, str, int | None, int | None]]) -> list[Row]:
        rows: list[Row] = []
        for instruction, raw, in_tok, out_tok in accepted:
            meta: dict[str, Any] = {
                f"statistics_{self.name}": {"input_tokens": in_tok, "output_tokens": out_tok}
            }
            if self.add_raw_output:
                meta[f"raw_output_{self.name}"] = raw
            rows.append(
                {
                    "instruction": instruction,
                    METADATA_COLUMN: meta,
                    "model_name": self.llm.model_name,
                }
            )
        return rows

    def _answer(self, rows: list[Row]) -> list[Row]:
        if not rows:
            return rows
        prompts: list[ChatType] = [[{"role": "user", "content": r["instruction"]}] for r in rows]
        outputs = self.llm.generate(prompts, num_generations=1)
        answered: list[Row] = []
        for row, out in zip(rows, outputs, strict=True):
            text = out["generations"][0]
            errors = out.get("errors") or [None]
            row = {**row, "answer": text.strip() if text and text.strip() else None}
            if row["answer"] is None:
                error = errors[0] or {
                    "type": "ReplyParseError",
                    "kind": "format_output",
                    "message": "the answer is empty",
                }
                row[METADATA_COLUMN] = {**row[METADATA_COLUMN], f"error_{self.name}": dict(error)}
                self._record_failure(error)
            # keep model_name last
            row["model_name"] = row.pop("model_name")
            answered.append(row)
        return answered


__all__ = [
    "GENERATION_MUTATION_TEMPLATES",
    "IN_BREADTH_MUTATIONS",
    "IN_DEPTH_MUTATIONS",
    "MUTATION_TEMPLATES",
    "PROMPT_PLACEHOLDER",
    "EvolInstruct",
    "EvolInstructGenerator",
    "mutation_prompt",
]

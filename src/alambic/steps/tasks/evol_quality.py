"""Deita's quality evolution: rewrite a response to make it better, step by step.

Liu et al., 2023, "What Makes Good Data for Alignment?" (Deita,
https://arxiv.org/abs/2312.15685). To learn how to score a response's quality, Deita asks an
LLM to improve a response several times, each time along one axis (helpfulness, relevance,
depth, creativity, level of detail), giving variants of increasing quality for a judge to rank.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from alambic.errors import ColumnTypeError
from alambic.llms.typing import ChatType
from alambic.steps.tasks._evolution import (
    EvolutionChain,
    EvolutionTask,
    check_mutation_templates,
    fill_mutation_template,
)
from alambic.steps.tasks._templates import render
from alambic.steps.typing import Row, StepColumns

QUALITY_MUTATIONS: dict[str, str] = {
    "helpfulness": "make it more helpful to the user, for example with useful background the "
    "user will need.",
    "relevance": "make it more relevant to the request: drop what does not serve it and "
    "address every part of it.",
    "deepening": "make it deeper: explain the reasons and mechanisms behind what it says.",
    "creativity": "make it more creative and engaging, while staying accurate.",
    "details": "add details, examples or steps that make it more complete and precise.",
}
"""Deita's response-quality evolution axes (our wording)."""

PROMPT_PLACEHOLDER = "<PROMPT>"
RESPONSE_PLACEHOLDER = "<RESPONSE>"


def _whole_prompt(method: str) -> str:
    return render(
        "evol_quality",
        "rewrite",
        method=method,
        instruction=PROMPT_PLACEHOLDER,
        response=RESPONSE_PLACEHOLDER,
    )


MUTATION_TEMPLATES: dict[str, str] = {
    name.upper(): _whole_prompt(method) for name, method in QUALITY_MUTATIONS.items()
}
"""distilabel's names (``HELPFULNESS``, ``RELEVANCE``, ``DEEPENING``, ``CREATIVITY``,
``DETAILS``) -> the whole rewriting prompt (alambic's wording), with ``<PROMPT>`` (the
instruction) and ``<RESPONSE>`` (the response to improve); for ``mutation_templates=``."""


class EvolQuality(EvolutionTask):
    """Improve each ``response`` to its ``instruction`` ``num_evolutions`` times (Deita).

    Output column ``evolved_response`` (the last version) or, with ``store_evolutions``,
    ``evolved_responses`` (every version, in order; ``include_original_response`` puts the
    input first). ``mutations`` maps an axis name to how to rewrite. A rewrite that comes back
    empty, unchanged or quoting the rewriting prompt ends the chain: the row keeps ``None``
    outputs and the reason in ``alambic_metadata``.
    """

    mutations: dict[str, str] = Field(
        default_factory=lambda: dict(QUALITY_MUTATIONS),
        description="Mutation name -> how to rewrite (picked at random each step).",
    )
    mutation_templates: dict[str, str] | None = Field(
        default=None,
        description="distilabel's form: name -> the whole rewriting prompt with <PROMPT> "
        "and <RESPONSE> (e.g. MUTATION_TEMPLATES); replaces mutations.",
    )
    include_original_response: bool = Field(
        default=False, description="With store_evolutions, list the input first."
    )

    @model_validator(mode="after")
    def _check_mutation_templates(self) -> EvolQuality:
        check_mutation_templates(
            f"Step {self.name!r} (EvolQuality)",
            self.mutation_templates,
            [PROMPT_PLACEHOLDER, RESPONSE_PLACEHOLDER],
        )
        return self

    @property
    def source_column(self) -> str:
        return "response"

    @property
    def inputs(self) -> StepColumns:
        return ["instruction", "response"]

    @property
    def outputs(self) -> StepColumns:
        return ["evolved_responses" if self.store_evolutions else "evolved_response", "model_name"]

    def mutation_prompt(self, mutation: str, row: Row, text: str) -> ChatType:
        instruction = row.get("instruction")
        if not isinstance(instruction, str):
            raise ColumnTypeError(
                f"Step {self.name!r} (EvolQuality): column 'instruction' must hold text, got "
                f"{type(instruction).__name__}."
            )
        if self.mutation_templates:
            return fill_mutation_template(
                self.mutation_templates[mutation],
                {PROMPT_PLACEHOLDER: instruction, RESPONSE_PLACEHOLDER: text},
            )
        content = render(
            "evol_quality",
            "rewrite",
            method=self.mutations[mutation],
            instruction=instruction,
            response=text,
        )
        return [{"role": "user", "content": content}]

    def chain_values(self, chain: EvolutionChain) -> dict[str, Any]:
        if self.store_evolutions:
            texts = chain.texts if self.include_original_response else chain.texts[1:]
            return {"evolved_responses": texts}
        return {"evolved_response": chain.current}


__all__ = [
    "MUTATION_TEMPLATES",
    "PROMPT_PLACEHOLDER",
    "QUALITY_MUTATIONS",
    "RESPONSE_PLACEHOLDER",
    "EvolQuality",
]

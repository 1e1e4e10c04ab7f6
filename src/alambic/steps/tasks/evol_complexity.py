"""Deita's complexity evolution: Evol-Instruct limited to in-depth rewrites.

Liu et al., 2023, "What Makes Good Data for Alignment? A Comprehensive Study of Automatic Data
Selection in Instruction Tuning" (Deita, https://arxiv.org/abs/2312.15685). To learn how to
score an instruction's complexity, Deita evolves each seed instruction several times with
WizardLM's in-depth methods only (add constraints, deepen, concretize, more reasoning steps),
giving a series of variants of increasing complexity that a judge then ranks.
"""

from __future__ import annotations

from pydantic import Field

from alambic.steps.tasks.evol_instruct import (
    GENERATION_MUTATION_TEMPLATES as _EVOL_GENERATION_TEMPLATES,
)
from alambic.steps.tasks.evol_instruct import (
    IN_DEPTH_MUTATIONS,
    EvolInstruct,
    EvolInstructGenerator,
)
from alambic.steps.tasks.evol_instruct import MUTATION_TEMPLATES as _EVOL_TEMPLATES

MUTATION_TEMPLATES: dict[str, str] = {k: v for k, v in _EVOL_TEMPLATES.items() if k != "BREADTH"}
"""The in-depth mutations as whole rewriting prompts (``<PROMPT>`` placeholder), under
distilabel's names; for ``mutation_templates=``."""

GENERATION_MUTATION_TEMPLATES: dict[str, str] = {
    k: v for k, v in _EVOL_GENERATION_TEMPLATES.items() if k != "BREADTH"
}
""":data:`MUTATION_TEMPLATES` plus ``FRESH_START``, for :class:`EvolComplexityGenerator`."""


class EvolComplexity(EvolInstruct):
    """:class:`~alambic.steps.tasks.EvolInstruct` with only the in-depth mutations.

    Same inputs and outputs as ``EvolInstruct``. For Deita-style complexity data, set
    ``num_evolutions`` (Deita uses 5) and ``store_evolutions=True`` with
    ``include_original_instruction=True``: ``evolved_instructions`` then holds the seed and
    its variants of increasing complexity, ready for a complexity scorer.
    """

    mutations: dict[str, str] = Field(
        default_factory=lambda: dict(IN_DEPTH_MUTATIONS),
        description="Mutation name -> how to rewrite (in-depth methods by default).",
    )


class EvolComplexityGenerator(EvolInstructGenerator):
    """:class:`~alambic.steps.tasks.EvolInstructGenerator` with only the in-depth mutations.

    Generates ``num_instructions`` new instructions of growing complexity from a seed pool
    (no input rows); same settings and outputs (``instruction``, and ``answer`` with
    ``generate_answers``) as ``EvolInstructGenerator``.
    """

    mutations: dict[str, str] = Field(
        default_factory=lambda: dict(IN_DEPTH_MUTATIONS),
        description="Mutation name -> how to rewrite (in-depth methods by default).",
    )


__all__ = [
    "GENERATION_MUTATION_TEMPLATES",
    "MUTATION_TEMPLATES",
    "EvolComplexity",
    "EvolComplexityGenerator",
]

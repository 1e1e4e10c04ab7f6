"""Preference pairs for DPO-style training, from several rated generations per prompt.

The rule, for each row:

1. Candidates are the generations that are text and have a numeric rating (``None``
   generations, ``None`` or NaN ratings are left out: a failed generation or a judge that
   could not rate it says nothing about preference).
2. ``chosen`` is the candidate with the highest rating; among equal best ratings the first
   one (lowest index) wins.
3. ``rejected`` is taken among the candidates rated *strictly lower* than ``chosen``: the
   lowest-rated one (first on ties) with ``rejected_strategy="lowest"``, or one drawn at
   random with ``"random"`` (seeded by ``seed`` and the prompt, so reruns give the same pair).
4. A row with no such pair -- all candidates rated the same (a tie) or fewer than two
   candidates -- is kept with ``chosen``/``rejected`` columns ``None`` (``tie_strategy="flag"``,
   the default), or removed (``tie_strategy="drop"``). Why it has no pair (``"tie"`` or
   ``"too_few_rated"``) is in ``alambic_metadata["pair_status_<step name>"]``; with
   ``add_pair_status=True`` every row also gets a ``pair_status`` column (``"ok"`` for
   paired rows). The default output columns are distilabel's, with no extra column.

``chosen`` and ``rejected`` are whole conversations (system and user turns, then the
assistant's answer), the layout of ``HuggingFaceH4/ultrafeedback_binarized`` that TRL's
``DPOTrainer`` reads.
"""

from __future__ import annotations

import math
import random
from typing import Any, ClassVar, Literal

from pydantic import Field

from alambic.errors import METADATA_COLUMN, ColumnTypeError
from alambic.llms.typing import ChatType
from alambic.steps.base import Step
from alambic.steps.formatting._common import chat_conversation, prompt_id, text_conversation
from alambic.steps.typing import Row, StepColumns, StepInput, StepOutput

PAIR_COLUMNS = (
    "chosen",
    "chosen_model",
    "chosen_rating",
    "rejected",
    "rejected_model",
    "rejected_rating",
)


class _FormatDPO(Step):
    rejected_strategy: Literal["lowest", "random"] = Field(
        default="lowest",
        description="Which lower-rated generation becomes 'rejected': the lowest, or a random one.",
    )
    tie_strategy: Literal["flag", "drop"] = Field(
        default="flag",
        description="Rows without a pair (ties, fewer than two rated generations): keep them "
        "with None pairs and pair_status set ('flag'), or remove them ('drop').",
    )
    seed: int = Field(default=0, description="Seed of rejected_strategy='random'.")
    add_pair_status: bool = Field(
        default=False,
        description="Add a 'pair_status' column ('ok', 'tie' or 'too_few_rated') to every "
        "row. Without it the columns are distilabel's, and a row without a pair says why in "
        "alambic_metadata['pair_status_<step name>'].",
    )

    _runs_inline: ClassVar[bool] = True

    @property
    def outputs(self) -> StepColumns:
        columns = ["prompt", "prompt_id", *PAIR_COLUMNS]
        return [*columns, "pair_status"] if self.add_pair_status else columns

    def _conversation(self, row: Row) -> tuple[str, ChatType]:
        raise NotImplementedError

    def process(self, inputs: StepInput) -> StepOutput:  # type: ignore[override]
        rows: list[Row] = []
        for row in inputs:
            prompt, conversation = self._conversation(row)
            pid = prompt_id(prompt)
            pair, status = self._pair(row, pid)
            if pair is None and self.tie_strategy == "drop":
                continue
            out: Row = {**row, "prompt": prompt, "prompt_id": pid}
            if self.add_pair_status:
                out["pair_status"] = status
            if pair is None:
                out.update(dict.fromkeys(PAIR_COLUMNS))
                if not self.add_pair_status:
                    metadata = out.get(METADATA_COLUMN)
                    metadata = dict(metadata) if isinstance(metadata, dict) else {}
                    metadata[f"pair_status_{self.step_name}"] = status
                    out[METADATA_COLUMN] = metadata
            else:
                models = row.get("generation_models")
                for side, (index, text, rating) in zip(("chosen", "rejected"), pair, strict=True):
                    out[side] = [*conversation, {"role": "assistant", "content": text}]
                    out[f"{side}_model"] = (
                        models[index] if isinstance(models, list) and index < len(models) else None
                    )
                    out[f"{side}_rating"] = rating
            rows.append(out)
        yield rows

    def _pair(
        self, row: Row, pid: str
    ) -> tuple[tuple[tuple[int, str, float], tuple[int, str, float]] | None, str]:
        generations = row.get("generations")
        ratings = row.get("ratings")
        if not isinstance(generations, list):
            raise ColumnTypeError(
                f"Step {self.name!r}: column 'generations' must be a list of texts, got "
                f"{type(generations).__name__} {generations!r:.80}."
            )
        if ratings is None:  # the judge failed on this row
            return None, "too_few_rated"
        if not isinstance(ratings, list) or len(ratings) != len(generations):
            raise ColumnTypeError(
                f"Step {self.name!r}: column 'ratings' must be a list with one rating per "
                f"generation ({len(generations)}), got {ratings!r:.80}."
            )
        candidates = [
            (i, text, rating)
            for i, (text, rating) in enumerate(zip(generations, ratings, strict=True))
            if isinstance(text, str) and _is_rating(rating)
        ]
        if len(candidates) < 2:
            return None, "too_few_rated"
        best = max(candidates, key=lambda c: c[2])  # max/min keep the first on ties
        lower = [c for c in candidates if c[2] < best[2]]
        if not lower:
            return None, "tie"
        if self.rejected_strategy == "random":
            worst = random.Random(f"{self.seed}:{pid}").choice(lower)
        else:
            worst = min(lower, key=lambda c: c[2])
        return (best, worst), "ok"


def _is_rating(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)


class FormatTextGenerationDPO(_FormatDPO):
    """``instruction`` + ``generations`` + ``ratings`` -> a preference pair per row.

    Outputs ``prompt`` (the instruction), ``prompt_id`` (its SHA-256), ``chosen`` /
    ``rejected`` conversations, ``chosen_model`` / ``rejected_model`` (from the optional
    ``generation_models`` column, else ``None``), ``chosen_rating`` / ``rejected_rating``
    (and ``pair_status`` with ``add_pair_status=True``). The pairing rule, ties included, is in this module's docstring. Ratings
    from another column (``scores``, ``rewards``) come in with
    ``input_mappings={"ratings": "scores"}``.
    """

    @property
    def inputs(self) -> StepColumns:
        return {
            "instruction": True,
            "generations": True,
            "ratings": True,
            "generation_models": False,
            "system_prompt": False,
        }

    def _conversation(self, row: Row) -> tuple[str, ChatType]:
        return text_conversation(self.step_name, row)


class FormatChatGenerationDPO(_FormatDPO):
    """``messages`` (ending with a user turn) + ``generations`` + ``ratings`` -> a pair.

    Like :class:`FormatTextGenerationDPO`, with ``prompt`` the last user message and
    ``chosen``/``rejected`` the whole conversation followed by the answer.
    """

    @property
    def inputs(self) -> StepColumns:
        return {"messages": True, "generations": True, "ratings": True, "generation_models": False}

    def _conversation(self, row: Row) -> tuple[str, ChatType]:
        return chat_conversation(self.step_name, row)


__all__ = ["FormatChatGenerationDPO", "FormatTextGenerationDPO"]

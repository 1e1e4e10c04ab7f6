"""PairwiseJudge: which of two answers to an instruction is better (LLM-as-a-judge).

Method of Zheng et al., "Judging LLM-as-a-Judge with MT-Bench and Chatbot Arena" (2023,
arXiv:2306.05685), pairwise comparison: the judge sees the question and two answers, explains
its comparison and ends with a verdict for A, B or a tie. The paper shows strong judges
still favour one position; its remedy, optional here (``swap_positions=True``), is to ask
twice with the answers swapped and to declare a winner only when both orders agree, a tie
otherwise. The prompt wording is alambic's own.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from pydantic import Field

from alambic.errors import ColumnTypeError
from alambic.llms.typing import ChatType
from alambic.steps.tasks._judge_parsing import clean_reply
from alambic.steps.tasks._lenient import LenientFormatOutput
from alambic.steps.tasks._parsing import ReplyParseError, preview
from alambic.steps.tasks._templates import render
from alambic.steps.tasks.base import METADATA_COLUMN, Task
from alambic.steps.typing import Row, StepColumns, StepInput, StepOutput

SWAP_KEY = "_alambic_pairwise_swapped"
"""Marks the second, swapped request of a row while it is in flight (never in the output)."""

_VERDICT = re.compile(r"\[\[\s*(A|B|C|tie)\s*\]\]", re.IGNORECASE)
_VERDICT_FALLBACK = re.compile(
    r"(?i)\b(?:final\s+)?(?:verdict|winner|decision)\s*(?:is)?\s*[:=\-]?\s*\[?\s*"
    r"(?:assistant\s+|response\s+)?(A|B|C|tie)\b"
)
_LABELS = {"A": "A", "B": "B", "C": "tie", "TIE": "tie"}
_FLIP = {"A": "B", "B": "A", "tie": "tie"}


def parse_verdict(text: str) -> dict[str, Any]:
    """``{"winner": "A" | "B" | "tie", "reason": str | None}`` from a judge's reply.

    The last ``[[A]]`` / ``[[B]]`` / ``[[C]]`` (tie) wins; without one, a line such as
    ``Verdict: B`` or ``Final verdict: tie``. Anything else raises ``ReplyParseError``.
    """
    cleaned = clean_reply(text)
    found = list(_VERDICT.finditer(cleaned)) or list(_VERDICT_FALLBACK.finditer(cleaned))
    if not found:
        raise ReplyParseError(
            f"no verdict found in the reply (expected '[[A]]', '[[B]]' or '[[C]]' for a tie): "
            f"{preview(text)!r}"
        )
    match = found[-1]
    reason = (cleaned[: match.start()] + cleaned[match.end() :]).strip()
    reason = re.sub(r"(?i)\b(?:final\s+)?verdict\s*:?\s*$", "", reason).strip()
    return {"winner": _LABELS[match.group(1).upper()], "reason": reason or None}


class PairwiseJudge(LenientFormatOutput, Task):
    """Compare the two ``generations`` of a row for its ``instruction``.

    Outputs ``winner`` (``"A"`` = ``generations[0]``, ``"B"`` = ``generations[1]``, or
    ``"tie"``) and ``reason`` (the judge's explanation). ``criteria`` adds what matters most
    for your data ("correctness of the code"), ``reference=True`` shows the row's
    ``reference`` answer to the judge.

    With ``swap_positions=True`` each row is judged twice, the second time with the answers
    in the other order (two requests per row). ``winner`` is then the answer preferred in
    both orders, or ``"tie"`` when the orders disagree; ``verdicts`` holds the two verdicts
    (in the row's A/B labels) and ``reason_swapped`` the second explanation. The second
    request's raw input/output is kept in ``alambic_metadata`` under keys ending with
    ``_swapped``. If either request fails, ``winner`` is ``None`` and the reason is in
    ``alambic_metadata["error_<name>"]``.
    """

    swap_positions: bool = Field(
        default=False,
        description="Judge each pair in both orders to cancel position bias (two requests).",
    )
    criteria: str | None = Field(default=None, description="What matters most in this data.")
    reference: bool = Field(default=False, description="Show the row's 'reference' answer.")

    @property
    def inputs(self) -> StepColumns:
        columns = ["instruction", "generations"]
        return [*columns, "reference"] if self.reference else columns

    @property
    def outputs(self) -> StepColumns:
        if self.swap_positions:
            return ["winner", "reason", "reason_swapped", "verdicts", "model_name"]
        return ["winner", "reason", "model_name"]

    def format_input(self, input: dict[str, Any]) -> ChatType:
        instruction = input.get("instruction")
        if not isinstance(instruction, str):
            raise ColumnTypeError(
                f"Step {self.name!r} (PairwiseJudge): column 'instruction' must hold text, got "
                f"{type(instruction).__name__} {instruction!r:.80}."
            )
        pair = input.get("generations")
        if (
            not isinstance(pair, list)
            or len(pair) != 2
            or not all(isinstance(g, str) for g in pair)
        ):
            raise ColumnTypeError(
                f"Step {self.name!r} (PairwiseJudge): column 'generations' must be a list of "
                f"exactly two texts, got {pair!r:.120}."
            )
        reference = input.get("reference") if self.reference else None
        if self.reference and not isinstance(reference, str):
            raise ColumnTypeError(
                f"Step {self.name!r} (PairwiseJudge): column 'reference' must hold text, got "
                f"{type(reference).__name__}."
            )
        first, second = reversed(pair) if input.get(SWAP_KEY) else pair
        return [
            {
                "role": "system",
                "content": render("pairwise_judge", "system", criteria=self.criteria),
            },
            {
                "role": "user",
                "content": render(
                    "pairwise_judge",
                    "prompt",
                    instruction=instruction,
                    reference=reference,
                    response_a=first,
                    response_b=second,
                ),
            },
        ]

    def parse_output(
        self, output: str | None, input: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        if output is None:
            return {"winner": None, "reason": None}
        parsed = parse_verdict(output)
        if input is not None and input.get(SWAP_KEY):
            parsed["winner"] = _FLIP[parsed["winner"]]
        return parsed

    # -- judging both orders -----------------------------------------------------------------

    def uses_default_process(self) -> bool:
        return True  # process and aprocess_rows below agree, so the executor's path is safe

    def process(self, inputs: StepInput) -> StepOutput:  # type: ignore[override]
        if not self.swap_positions:
            yield from super().process(inputs)
            return
        rows = next(super().process(_expand(inputs)))
        yield self._combine(inputs, rows)

    async def aprocess_rows(self, inputs: Sequence[Row]) -> list[Row]:
        if not self.swap_positions:
            return await super().aprocess_rows(inputs)
        rows = await super().aprocess_rows(_expand(inputs))
        return self._combine(inputs, rows)

    def _combine(self, inputs: Sequence[Row], rows: list[Row]) -> list[Row]:
        per_input = 1 if self.group_generations else (self.num_generations or 1)
        out: list[Row] = []
        for i in range(len(inputs)):
            start = 2 * i * per_input
            first = rows[start : start + per_input]
            second = rows[start + per_input : start + 2 * per_input]
            out.extend(self._merge(a, b) for a, b in zip(first, second, strict=True))
        return out

    def _merge(self, first: Row, second: Row) -> Row:
        row = {k: v for k, v in first.items() if k != SWAP_KEY}
        if self.group_generations:
            merged = [
                self._merge_one(w1, w2, r2, m1, m2)
                for w1, w2, r2, m1, m2 in zip(
                    first["winner"],
                    second["winner"],
                    second["reason"],
                    first[METADATA_COLUMN],
                    second[METADATA_COLUMN],
                    strict=True,
                )
            ]
            row["winner"] = [m[0] for m in merged]
            row["verdicts"] = [m[1] for m in merged]
            row["reason_swapped"] = [m[2] for m in merged]
            row[METADATA_COLUMN] = [m[3] for m in merged]
            return row
        winner, verdicts, reason, meta = self._merge_one(
            first["winner"],
            second["winner"],
            second["reason"],
            first[METADATA_COLUMN],
            second[METADATA_COLUMN],
        )
        row.update(winner=winner, verdicts=verdicts, reason_swapped=reason)
        row[METADATA_COLUMN] = meta
        return row

    def _merge_one(
        self, w1: Any, w2: Any, reason2: Any, meta1: dict[str, Any], meta2: dict[str, Any]
    ) -> tuple[Any, list[Any], Any, dict[str, Any]]:
        own = (
            f"raw_output_{self.name}",
            f"raw_input_{self.name}",
            f"statistics_{self.name}",
            f"error_{self.name}",
        )
        meta = dict(meta1)
        for key in own:
            if key in meta2:
                meta[f"{key}_swapped"] = meta2[key]
        error_key = f"error_{self.name}"
        if error_key not in meta and error_key in meta2:
            meta[error_key] = meta2[error_key]
        if w1 is None or w2 is None:
            return None, [w1, w2], reason2, meta
        return (w1 if w1 == w2 else "tie"), [w1, w2], reason2, meta


def _expand(inputs: Sequence[Row]) -> list[Row]:
    return [variant for row in inputs for variant in (row, {**row, SWAP_KEY: True})]


__all__ = ["SWAP_KEY", "PairwiseJudge", "parse_verdict"]

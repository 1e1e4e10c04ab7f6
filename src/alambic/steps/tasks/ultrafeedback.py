"""UltraFeedback: rate several responses to one instruction on one aspect, 1 to 5.

Method of Cui et al., "UltraFeedback: Boosting Language Models with Scaled AI Feedback"
(2023, arXiv:2310.01377): a strong LLM sees the instruction and all candidate responses at
once and rates each on a single, precisely described aspect (instruction following, honesty,
truthfulness, helpfulness) with a 1-5 scale and a short rationale. For truthfulness and
helpfulness the judge first names which of a fixed list of hallucination / informativeness
types apply, then rates. Prompts and rubrics here are alambic's own wording of that method.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field

from alambic.errors import ColumnTypeError
from alambic.llms.typing import ChatType, FormattedInput
from alambic.steps.tasks._judge_parsing import clean_reply, parse_id_list, parse_int_in_range
from alambic.steps.tasks._lenient import (
    DefaultStructuredOutput,
    LenientFormatOutput,
    array_schema,
    fit_list,
    per_item_none,
)
from alambic.steps.tasks._parsing import ReplyParseError, preview
from alambic.steps.tasks._templates import render
from alambic.steps.tasks.base import Task
from alambic.steps.typing import StepColumns

Aspect = Literal[
    "helpfulness", "honesty", "instruction-following", "truthfulness", "overall-rating"
]
_TYPED: dict[str, str] = {"truthfulness": "hallucination", "helpfulness": "informativeness"}
_TYPE_IDS = (1, 2, 3)

_HEADER = re.compile(
    r"(?im)^[ \t#>*\-]*(?:output\s+for\s+)?(?:text|response)\s*#?\s*(\d+)\s*[:*#)\].\-]*[ \t]*$"
)
_LABEL = re.compile(r"(?im)^[ \t>*\-]*(type|rationale|rating)[ \t]*[:：][ \t]*")


class UltraFeedback(LenientFormatOutput, DefaultStructuredOutput, Task):
    """Rate each of the ``generations`` for one ``instruction`` on one ``aspect`` (1-5).

    Inputs: ``instruction`` (text) and ``generations`` (a list of responses; ``None`` entries,
    such as failed generations, are not shown to the judge and get ``None`` ratings).

    Outputs, one entry per generation and in the same order:

    - ``ratings``: integers 1-5; ``None`` where the judge wrote "N/A", the reply stopped
      before that response, or the rating could not be read;
    - ``rationales``: the judge's justification of each rating;
    - for ``aspect="truthfulness"`` and ``"helpfulness"`` (whose published format names the
      hallucination / informativeness types first): ``types`` (lists of type numbers 1-3,
      ``[]`` for none), ``rationales`` (why those types) and ``rationales-for-ratings`` (distilabel's name).

    A reply with no readable rating at all makes a failed row (``None`` outputs, reason in
    ``alambic_metadata["error_<name>"]``); a reply cut short keeps the ratings it has.
    ``aspect="overall-rating"`` weighs every aspect together in one rating.
    """

    aspect: Aspect = Field(
        default="overall-rating", description="Which quality the responses are rated on."
    )

    @property
    def typed(self) -> bool:
        return self.aspect in _TYPED

    @property
    def inputs(self) -> StepColumns:
        return ["instruction", "generations"]

    @property
    def outputs(self) -> StepColumns:
        if self.typed:
            return ["types", "rationales", "ratings", "rationales-for-ratings", "model_name"]
        return ["ratings", "rationales", "model_name"]

    def _template_path(self) -> tuple[str, str] | None:
        # the whole prompt of the aspect, variables `instruction` and `generations`
        return ("ultrafeedback", self.aspect)

    def format_input(self, input: dict[str, Any]) -> FormattedInput:
        instruction = input.get("instruction")
        if not isinstance(instruction, str):
            raise ColumnTypeError(
                f"Step {self.name!r} (UltraFeedback): column 'instruction' must hold text, got "
                f"{type(instruction).__name__} {instruction!r:.80}."
            )
        responses = _present(self.name, input.get("generations"))
        prompt = self.render_prompt(
            "ultrafeedback",
            self.aspect,
            instruction=instruction,
            generations=[text for _, text in responses],
        )
        messages: ChatType = [
            {"role": "system", "content": render("ultrafeedback", "system")},
            {"role": "user", "content": prompt},
        ]
        return self.with_structured_output(messages)

    def get_structured_output(self) -> dict[str, Any]:
        """Lists with one entry per response: ratings and rationales (and, for the typed
        aspects, types and rationales-for-ratings)."""
        ints: dict[str, Any] = {"type": "array", "items": {"type": "integer"}}
        texts: dict[str, Any] = {"type": "array", "items": {"type": "string"}}
        if self.typed:
            return array_schema(
                "SchemaUltraFeedbackWithType",
                types={"type": "array", "items": {"type": ["integer", "null"]}},
                rationales=texts,
                ratings=ints,
                rationales_for_ratings=texts,
            )
        return array_schema("SchemaUltraFeedback", ratings=ints, rationales=texts)

    def _from_json(self, data: dict[str, Any], n: int) -> dict[str, Any]:
        result = {
            "ratings": fit_list(data.get("ratings"), n, int),
            "rationales": fit_list(data.get("rationales"), n, str),
        }
        if self.typed:
            raw_types = data.get("types")
            types = raw_types if isinstance(raw_types, list) else []
            result["types"] = [
                [t] if isinstance(t, int) else t if isinstance(t, list) else None
                for t in (types + [None] * n)[:n]
            ]
            result["rationales-for-ratings"] = fit_list(
                data.get("rationales-for-ratings", data.get("rationales_for_ratings")), n, str
            )
        return result

    def empty_output(self, input: dict[str, Any] | None = None) -> dict[str, Any]:
        """One ``None`` per generation in every output column."""
        columns = [c for c in self.outputs if c != "model_name"]
        return per_item_none(input, "generations", columns)

    def parse_output(
        self, output: str | None, input: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        columns = [c for c in self.outputs if c != "model_name"]
        generations = (input or {}).get("generations")
        if output is None:
            return dict.fromkeys(columns)
        if isinstance(generations, list):
            positions = [i for i, g in enumerate(generations) if isinstance(g, str)]
            total = len(generations)
        else:  # called without the row: assume every block is one response
            positions, total = [], 0
        data = self.structured_reply(output)
        if data is not None and "ratings" in data:
            n = len(positions) or len(data["ratings"] or [])
            parsed = self._from_json(data, n)
        else:
            parsed = parse_feedback(output, len(positions) or None, typed=self.typed)
        if not positions:
            return parsed
        result: dict[str, Any] = {}
        for column, values in parsed.items():
            spread: list[Any] = [None] * total
            for position, value in zip(positions, values, strict=False):
                spread[position] = value
            result[column] = spread
        return result


def _present(name: str | None, generations: Any) -> list[tuple[int, str]]:
    if not isinstance(generations, list):
        raise ColumnTypeError(
            f"Step {name!r} (UltraFeedback): column 'generations' must be a list of responses, "
            f"got {type(generations).__name__} {generations!r:.80}. Group the generations of "
            "one instruction into a list first (num_generations with group_generations=True, "
            "or GroupColumns / CombineOutputs over several generators)."
        )
    present = [(i, g) for i, g in enumerate(generations) if isinstance(g, str)]
    bad = [g for g in generations if g is not None and not isinstance(g, str)]
    if bad:
        raise ColumnTypeError(
            f"Step {name!r} (UltraFeedback): 'generations' must hold text or None, got "
            f"{type(bad[0]).__name__} {bad[0]!r:.80}."
        )
    if not present:
        raise ColumnTypeError(
            f"Step {name!r} (UltraFeedback): every entry of 'generations' is None (the "
            "generations failed upstream), so there is nothing to rate."
        )
    return present


def _blocks(text: str, typed: bool) -> list[tuple[int | None, str]]:
    """(response number or None, block text) for each response block, in order."""
    headers = list(_HEADER.finditer(text))
    if headers:
        return [
            (
                int(m.group(1)),
                text[m.end() : headers[i + 1].start() if i + 1 < len(headers) else len(text)],
            )
            for i, m in enumerate(headers)
        ]
    labels = [m for m in _LABEL.finditer(text)]
    starter = "type" if typed and any(m.group(1).lower() == "type" for m in labels) else "rating"
    starts = [m.start() for m in labels if m.group(1).lower() == starter]
    return [
        (None, text[s : starts[i + 1] if i + 1 < len(starts) else len(text)])
        for i, s in enumerate(starts)
    ]


def _fields(block: str) -> list[tuple[str, str]]:
    """(label, value) pairs in the order they appear in one block."""
    matches = list(_LABEL.finditer(block))
    return [
        (
            m.group(1).lower(),
            block[m.end() : matches[i + 1].start() if i + 1 < len(matches) else len(block)].strip(),
        )
        for i, m in enumerate(matches)
    ]


def parse_feedback(text: str, n: int | None, *, typed: bool) -> dict[str, list[Any]]:
    """Read UltraFeedback blocks from a reply: lists of ``n`` values per output column.

    ``n=None`` keeps as many blocks as the reply has. Missing or unreadable values are
    ``None``; a reply without a single readable rating (or an explicit ``N/A``) raises
    :class:`ReplyParseError`.
    """
    cleaned = clean_reply(text)
    blocks = _blocks(cleaned, typed)
    count = n if n is not None else len(blocks)
    ratings: list[int | None] = [None] * count
    rationales: list[str | None] = [None] * count
    types: list[list[int] | None] = [None] * count
    for_ratings: list[str | None] = [None] * count
    seen_rating = False
    taken: set[int] = set()
    for order, (number, block) in enumerate(blocks):
        index = number - 1 if number is not None else order
        if index < 0 or index >= count or index in taken:
            continue
        taken.add(index)
        rated = False
        for label, value in _fields(block):
            if label == "type" and types[index] is None:
                types[index] = parse_id_list(value, _TYPE_IDS)
            elif label == "rating" and not rated:
                rated = True
                first_line = value.split("\n", 1)[0]
                ratings[index] = parse_int_in_range(first_line, 1, 5)
                seen_rating = (
                    seen_rating or ratings[index] is not None or "n/a" in first_line.lower()
                )
            elif label == "rationale":
                value = value.split("\n\n", 1)[0].strip()  # prose after the block is not ours
                if typed and rated:
                    for_ratings[index] = for_ratings[index] or value or None
                else:
                    rationales[index] = rationales[index] or value or None
    if not seen_rating:
        expected = f"{count} " if count else ""
        raise ReplyParseError(
            f"no 'Rating: <1-5>' found in the reply for the {expected}responses (expected "
            f"blocks like '#### Output for Text 1 / Rating: 4 / Rationale: ...'): "
            f"{preview(text)!r}"
        )
    if typed:
        return {
            "types": types,
            "rationales": rationales,
            "ratings": ratings,
            "rationales-for-ratings": for_ratings,
        }
    return {"ratings": ratings, "rationales": rationales}


__all__ = ["UltraFeedback", "parse_feedback"]

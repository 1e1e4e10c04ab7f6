"""APIGen: function-calling data, generated from function descriptions and checked.

Liu et al., 2024, "APIGen: Automated Pipeline for Generating Verifiable and Diverse
Function-Calling Datasets" (https://arxiv.org/abs/2406.18518), the recipe of the xLAM
function-calling-60k dataset. An LLM writes user queries and the calls that answer them
(:class:`APIGenGenerator`); the calls are executed against real functions
(:class:`~alambic.steps.tasks.apigen_execution.APIGenExecutionChecker`); an LLM judge then
checks that the calls and their results serve the query (:class:`APIGenSemanticChecker`).
Only rows that pass every stage are kept for training.

``answers`` is stored as a JSON string (a list of ``{"name", "arguments"}``), as in xLAM:
arguments of different types per call would not fit one Arrow column type.
"""

from __future__ import annotations

import json
import random
import re
from typing import Any, ClassVar

from pydantic import Field, PositiveInt

from alambic.llms.typing import FormattedInput
from alambic.steps.checks import require_text
from alambic.steps.tasks._lenient import LenientFormatOutput
from alambic.steps.tasks._parsing import (
    ReplyParseError,
    extract_json,
    extract_json_object,
    preview,
)
from alambic.steps.tasks._templates import template_source
from alambic.steps.tasks.apigen_execution import parse_calls
from alambic.steps.tasks.base import Task
from alambic.steps.typing import StepColumns

_GENERATOR_SYSTEM = template_source("apigen", "system_generator").strip()
_SEMANTIC_SYSTEM = template_source("apigen", "system_semantic").strip()

PARALLEL_QUERIES: str = (
    "A request may bundle several independent asks, using the same function with different "
    "arguments or several functions; then the answer has one call for each."
)
"""The note on parallel requests, the ``parallel_queries`` variable of
``apigen/generator.jinja2`` (empty when the row does not draw parallel queries)."""

GENERATOR_FORMAT: str = (
    "Reply with a JSON list only, no other text:\n"
    '[{"query": "<the user\'s request>", "answers": [{"name": "<function>", '
    '"arguments": {"<parameter>": <value>}}]}]'
)
"""The answer format, the ``format_inst`` variable of ``apigen/generator.jinja2``."""

SEMANTIC_CHECKER_FORMAT: str = (
    'Reply with JSON only: {"thought": "<short reasoning; empty if it passes>", '
    '"passes": "yes" or "no"}'
)
"""The answer format, the ``format_inst`` variable of ``apigen/semantic_checker.jinja2``."""

_CALL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "arguments": {"type": "object"}},
    "required": ["name", "arguments"],
}


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


class APIGenGenerator(LenientFormatOutput, Task):
    """Write ``number`` queries and their function calls for one function.

    Inputs: ``examples`` (queries and calls for other functions, shown as a guide),
    ``func_name``, ``func_desc`` and optionally ``tools`` (the tool specs, added to the
    prompt when ``use_tools``). Outputs: ``query`` and ``answers`` (a JSON string of the
    calls); with ``number`` > 1, lists of them. ``number`` may be a list to draw from per
    row; ``is_parallel`` (a bool, or the probability per row) asks for queries bundling
    several calls. With ``use_default_structured_output`` the request carries the JSON
    schema of a reply.

    The reply must be a JSON list of ``{"query", "answers"}`` objects (an object with a
    ``pairs`` list is accepted too); each answer must be a list of calls with a ``name`` and
    object ``arguments``. Fewer pairs than asked, a missing field or a malformed call is a
    failed row.
    """

    _template_file: ClassVar[tuple[str, str] | None] = ("apigen", "generator")

    system_prompt: str = Field(default=_GENERATOR_SYSTEM, description="The system message.")
    number: PositiveInt | list[PositiveInt] = Field(
        default=1, description="Queries per row, or choices to draw from."
    )
    is_parallel: bool | float = Field(
        default=False, description="Ask for multi-call queries (or the probability of asking)."
    )
    use_tools: bool = Field(default=True, description="Show the tools column in the prompt.")
    use_default_structured_output: bool = Field(
        default=False, description="Send the JSON schema of a reply with the request."
    )
    seed: int = Field(default=42, description="Seed of the per-row draws.")

    @property
    def inputs(self) -> StepColumns:
        return {"examples": True, "func_name": True, "func_desc": True, "tools": False}

    @property
    def outputs(self) -> StepColumns:
        return ["query", "answers", "model_name"]

    def _draws(self, input: dict[str, Any]) -> tuple[int, bool]:
        key = f"{self.seed}:{input.get('func_name')}:{input.get('func_desc')}"
        rng = random.Random(key)
        number = rng.choice(self.number) if isinstance(self.number, list) else self.number
        if isinstance(self.is_parallel, bool):
            parallel = self.is_parallel
        else:
            parallel = rng.random() < self.is_parallel
        return number, parallel

    def json_schema(self, number: int) -> dict[str, Any]:
        pair = {
            "type": "object",
            "properties": {
                "query": {"type": "string"},
                "answers": {"type": "array", "items": _CALL_SCHEMA, "minItems": 1},
            },
            "required": ["query", "answers"],
        }
        return {
            "type": "object",
            "properties": {"pairs": {"type": "array", "items": pair, "minItems": number}},
            "required": ["pairs"],
        }

    def format_input(self, input: dict[str, Any]) -> FormattedInput:
        number, parallel = self._draws(input)
        tools = input.get("tools") if self.use_tools else None
        content = self.render_prompt(
            "apigen",
            "generator",
            examples=_as_text(input.get("examples") or ""),
            func_name=require_text(self.name, "func_name", input.get("func_name")),
            func_desc=_as_text(input.get("func_desc")),
            tools=_as_text(tools) if tools else "",
            number=number,
            parallel=parallel,
            parallel_queries=PARALLEL_QUERIES if parallel else "",
            format_inst=GENERATOR_FORMAT,
        )
        messages = [
            {"role": "system", "content": self.system_prompt},
            {"role": "user", "content": content},
        ]
        if self.use_default_structured_output:
            return messages, {"schema": self.json_schema(number)}  # type: ignore[return-value]
        return messages  # type: ignore[return-value]

    def parse_output(
        self, output: str | None, input: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        if output is None:
            raise ReplyParseError("the LLM returned no text")
        number, _ = self._draws(input or {})
        data = extract_json(output)
        if isinstance(data, dict):
            data = data.get("pairs", [data])
        if not isinstance(data, list):
            raise ReplyParseError(f"the reply is not a JSON list of pairs: {preview(output)!r}")
        queries: list[str] = []
        answers: list[str] = []
        for i, pair in enumerate(data[:number]):
            if not isinstance(pair, dict):
                raise ReplyParseError(f"pair {i} is not an object: {pair!r:.120}")
            query = pair.get("query")
            if not isinstance(query, str) or not query.strip():
                raise ReplyParseError(f"pair {i} has no 'query' text: {pair!r:.120}")
            try:
                calls = parse_calls(pair.get("answers"))
            except ValueError as exc:
                raise ReplyParseError(f"pair {i}: {exc}") from exc
            if not calls:
                raise ReplyParseError(f"pair {i} has no function call")
            queries.append(query.strip())
            answers.append(json.dumps(calls, ensure_ascii=False))
        if len(queries) < number:
            raise ReplyParseError(
                f"asked for {number} query/answer pairs, the reply has {len(queries)}: "
                f"{preview(output)!r}"
            )
        if number == 1:
            return {"query": queries[0], "answers": answers[0]}
        return {"query": queries, "answers": answers}


class APIGenSemanticChecker(LenientFormatOutput, Task):
    """Judge whether ``answers`` (and their ``execution_result``) fulfil ``query``.

    Inputs: ``func_desc``, ``query``, ``answers`` and ``execution_result`` (from
    ``APIGenExecutionChecker``; ``keep_row_after_execution_check`` is read when present).
    Outputs: ``keep_row_after_semantic_check`` (``True`` when the judge says yes) and
    ``thought`` (its reasoning). The reply is read as JSON ``{"thought", "passes"}``
    (``"pass"`` and booleans are accepted); without JSON, a "passes: yes/no" line is used.
    """

    _template_file: ClassVar[tuple[str, str] | None] = ("apigen", "semantic_checker")

    system_prompt: str = Field(default=_SEMANTIC_SYSTEM, description="The system message.")
    use_default_structured_output: bool = Field(
        default=False, description="Send the JSON schema of a reply with the request."
    )

    @property
    def inputs(self) -> StepColumns:
        return {
            "func_desc": True,
            "query": True,
            "answers": True,
            "execution_result": True,
            "keep_row_after_execution_check": False,
        }

    @property
    def outputs(self) -> StepColumns:
        return ["keep_row_after_semantic_check", "thought", "model_name"]

    def json_schema(self) -> dict[str, Any]:
        return {
            "type": "object",
            "properties": {
                "thought": {"type": "string"},
                "passes": {"type": "string", "enum": ["yes", "no"]},
            },
            "required": ["thought", "passes"],
        }

    def format_input(self, input: dict[str, Any]) -> FormattedInput:
        result = input.get("execution_result")
        if isinstance(result, list):
            result = "\n".join(str(r) for r in result)
        calls = _as_text(input.get("answers"))
        content = self.render_prompt(
            "apigen",
            "semantic_checker",
            func_desc=_as_text(input.get("func_desc")),
            query=require_text(self.name, "query", input.get("query")),
            answers=calls,
            func_call=calls,
            execution_result=_as_text(result if result is not None else "(not executed)"),
            format_inst=SEMANTIC_CHECKER_FORMAT,
        )
        messages = [
            {"role": "system", "content": self.system_prompt},
            {"role": "user", "content": content},
        ]
        if self.use_default_structured_output:
            return messages, {"schema": self.json_schema()}  # type: ignore[return-value]
        return messages  # type: ignore[return-value]

    def parse_output(
        self, output: str | None, input: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        if output is None:
            raise ReplyParseError("the LLM returned no text")
        try:
            data = extract_json_object(output)
        except ReplyParseError:
            data = None
        if data is not None:
            verdict = data.get("passes", data.get("pass"))
            thought = data.get("thought", "")
        else:
            verdict, thought = _verdict_from_prose(output), ""
        if isinstance(verdict, bool):
            passes = verdict
        elif isinstance(verdict, str) and verdict.strip().lower() in {"yes", "no"}:
            passes = verdict.strip().lower() == "yes"
        else:
            raise ReplyParseError(f"the reply has no yes/no verdict: {preview(output)!r}")
        return {"keep_row_after_semantic_check": passes, "thought": str(thought or "")}


def _verdict_from_prose(text: str) -> str | None:
    match = re.search(r"\bpass(?:es)?\b\W{0,4}\s*(yes|no)\b", text, re.IGNORECASE)
    return match.group(1) if match else None


__all__ = ["APIGenGenerator", "APIGenSemanticChecker"]

"""Structured generation: a reply that is JSON matching a per-row schema.

Each row carries its own JSON schema (column ``structured_output``), so one step can produce
differently shaped objects. The schema is described in the prompt and, when the LLM supports
structured output, also sent as a constraint (constrained decoding, as in Willard and Louf,
2023, "Efficient Guided Generation for Large Language Models",
https://arxiv.org/abs/2307.09702). Either way the reply is parsed and checked here.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import Field

from alambic.errors import ColumnTypeError
from alambic.llms.structured import schema_problem
from alambic.llms.typing import FormattedInput
from alambic.steps.tasks._lenient import LenientFormatOutput
from alambic.steps.tasks._parsing import ReplyParseError, extract_json, preview
from alambic.steps.tasks._templates import render
from alambic.steps.tasks.base import Task
from alambic.steps.typing import StepColumns


class StructuredGeneration(LenientFormatOutput, Task):
    """Answer ``instruction`` with JSON that validates against the row's ``structured_output``.

    ``structured_output`` holds a JSON schema (a dict, or its JSON text), or
    ``{"schema": <JSON schema>, "format": "json"}``. Output column: ``generation`` (the JSON
    text, normalised), as in distilabel; ``add_parsed_generation=True`` adds
    ``parsed_generation`` (the decoded value). The reply may be wrapped
    in fences or prose; it is checked against the schema's types, ``required``, ``enum``,
    ``properties``, ``items`` and ``additionalProperties: false``. A reply that is not valid
    JSON or does not match is a failed row whose reason names the first mismatch.

    With ``use_structured_output`` (default) the schema also travels with the request as
    ``(messages, {"schema": ...})``, so backends that constrain decoding natively do so (see
    ``alambic.llms.structured``).
    """

    use_structured_output: bool = Field(
        default=True, description="Send the schema with the request."
    )
    system_prompt: str | None = Field(
        default=None, description="Extra system text, before the schema description."
    )
    add_parsed_generation: bool = Field(
        default=False,
        description="Also output 'parsed_generation', the decoded JSON value (off: the "
        "columns are distilabel's).",
    )

    @property
    def inputs(self) -> StepColumns:
        return ["instruction", "structured_output"]

    @property
    def outputs(self) -> StepColumns:
        if self.add_parsed_generation:
            return ["generation", "parsed_generation", "model_name"]
        return ["generation", "model_name"]

    def _schema(self, input: dict[str, Any]) -> dict[str, Any]:
        value = input.get("structured_output")
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError as exc:
                raise ColumnTypeError(
                    f"Step {self.name!r} (StructuredGeneration): column 'structured_output' "
                    f"holds text that is not JSON ({exc}): {value!r:.120}"
                ) from exc
        if isinstance(value, dict) and isinstance(value.get("schema"), dict):
            value = value["schema"]
        if not isinstance(value, dict):
            raise ColumnTypeError(
                f"Step {self.name!r} (StructuredGeneration): column 'structured_output' must "
                f"hold a JSON schema (dict), got {type(value).__name__}."
            )
        return value

    def format_input(self, input: dict[str, Any]) -> FormattedInput:
        instruction = input.get("instruction")
        if not isinstance(instruction, str):
            raise ColumnTypeError(
                f"Step {self.name!r} (StructuredGeneration): column 'instruction' must hold "
                f"text, got {type(instruction).__name__}."
            )
        schema = self._schema(input)
        system = render("structured_generation", "system", schema=json.dumps(schema, indent=2))
        if self.system_prompt:
            system = f"{self.system_prompt}\n\n{system}"
        messages: list[Any] = [
            {"role": "system", "content": system},
            {"role": "user", "content": instruction},
        ]
        if self.use_structured_output:
            return messages, {"schema": schema}
        return messages

    def parse_output(
        self, output: str | None, input: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        if output is None:
            raise ReplyParseError("the LLM returned no text")
        try:
            value = json.loads(output)
        except json.JSONDecodeError:
            value = extract_json(output)
        if input is not None and input.get("structured_output") is not None:
            problem = check_schema(value, self._schema(input))
            if problem is not None:
                raise ReplyParseError(
                    f"the reply does not match the schema: {problem}: {preview(output)!r}"
                )
        generation = json.dumps(value, ensure_ascii=False)
        if self.add_parsed_generation:
            return {"generation": generation, "parsed_generation": value}
        return {"generation": generation}


def check_schema(value: Any, schema: dict[str, Any], path: str = "$") -> str | None:
    """The first way ``value`` breaks ``schema``, or ``None``: alambic's one JSON-schema check
    (:func:`alambic.llms.structured.schema_problem`, so ``$ref`` and ``anyOf`` count too), in
    this task's wording (``"$.age should be integer, got str"``)."""
    return schema_problem(value, schema, schema, path, wording="task")


__all__ = ["StructuredGeneration", "check_schema"]

"""General text generation: from an instruction (or a template over several columns), or
from a whole conversation."""

from __future__ import annotations

from typing import Any

import jinja2
from jinja2 import meta as jinja_meta
from pydantic import Field, PrivateAttr, field_validator

from alambic.errors import ColumnTypeError, TemplateError
from alambic.llms.typing import ChatType
from alambic.steps.checks import check_conversation
from alambic.steps.tasks._templates import check_template, render_checked, sandboxed_environment
from alambic.steps.tasks.base import Task
from alambic.steps.typing import StepColumns

# a user's template renders in the sandbox too, whitespace kept as written
_ENV = sandboxed_environment(keep_trailing_newline=True, trim_blocks=False)


def render_template(
    template: jinja2.Template, values: dict[str, Any], *, owner: str = "TextGeneration"
) -> str:
    return render_checked(template, values, owner=owner)


class TextGeneration(Task):
    """Ask the LLM to answer an instruction.

    By default the prompt is the ``instruction`` column. Give ``template`` (Jinja2) and
    ``columns`` to build the prompt from several columns: every placeholder of the template
    must be one of ``columns`` (checked at ``load()``). A system prompt can be set with
    ``system_prompt`` or per row in a ``system_prompt`` column; the row wins.
    """

    system_prompt: str | None = Field(default=None, description="System message for every row.")
    template: str = Field(default="{{ instruction }}", description="Jinja2 prompt template.")
    columns: str | list[str] = Field(
        default="instruction", description="Columns the template reads."
    )
    use_system_prompt: bool = Field(
        default=True, description="Send the system prompt (attribute or column) when present."
    )

    _compiled: jinja2.Template | None = PrivateAttr(default=None)

    @field_validator("columns")
    @classmethod
    def _columns_not_empty(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, list) and not value:
            raise ValueError("columns must name at least one column")
        return value

    @property
    def column_list(self) -> list[str]:
        return [self.columns] if isinstance(self.columns, str) else list(self.columns)

    @property
    def inputs(self) -> StepColumns:
        columns: dict[str, bool] = dict.fromkeys(self.column_list, True)
        columns.setdefault("system_prompt", False)
        return columns

    @property
    def outputs(self) -> StepColumns:
        return ["generation", "model_name"]

    def load(self) -> None:
        self._compile()
        super().load()

    def _compile(self) -> jinja2.Template:
        if self._compiled is None:
            owner = f"Step {self.name!r} (TextGeneration)"
            compiled = check_template(self.template, owner=owner, env=_ENV)
            placeholders = jinja_meta.find_undeclared_variables(_ENV.parse(self.template))
            unknown = sorted(placeholders - set(self.column_list))
            if unknown:
                raise TemplateError(
                    f"{owner}: the template uses {unknown} but "
                    f"columns={self.column_list}. Add them to `columns` "
                    f"(columns={sorted(set(self.column_list) | set(unknown))}) or remove them "
                    "from the template."
                )
            self._compiled = compiled
        return self._compiled

    def format_input(self, input: dict[str, Any]) -> ChatType:
        values: dict[str, Any] = {}
        for column in self.column_list:
            if column not in input:
                raise ColumnTypeError(
                    f"Step {self.name!r} (TextGeneration): the row has no column {column!r} "
                    f"(it has {sorted(input)}). Map one with input_mappings={{{column!r}: ...}}."
                )
            value = input[column]
            if not isinstance(value, str):
                raise ColumnTypeError(
                    f"Step {self.name!r} (TextGeneration): column {column!r} must hold text, "
                    f"got {type(value).__name__} {value!r:.80}. Convert it to a string first "
                    "or use a template/columns that read text columns."
                )
            values[column] = value
        if self.template == "{{ instruction }}" and self.column_list == ["instruction"]:
            prompt = values["instruction"]
        else:
            prompt = render_template(
                self._compile(), values, owner=f"Step {self.name!r} (TextGeneration)"
            )
        messages: ChatType = []
        if self.use_system_prompt:
            system = input.get("system_prompt") or self.system_prompt
            if system is not None:
                if not isinstance(system, str):
                    raise ColumnTypeError(
                        f"Step {self.name!r}: column 'system_prompt' must hold text, got "
                        f"{type(system).__name__}."
                    )
                messages.append({"role": "system", "content": system})
        messages.append({"role": "user", "content": prompt})
        return messages

    def format_output(
        self, output: str | None, input: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        return {"generation": output}


class ChatGeneration(Task):
    """Continue a conversation: the ``messages`` column, whose last message is the user's."""

    @property
    def inputs(self) -> StepColumns:
        return ["messages"]

    @property
    def outputs(self) -> StepColumns:
        return ["generation", "model_name"]

    def format_input(self, input: dict[str, Any]) -> ChatType:
        return check_conversation(self.name, input.get("messages"), kind="ChatGeneration")

    def format_output(
        self, output: str | None, input: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        return {"generation": output}


__all__ = ["ChatGeneration", "TextGeneration"]

"""``TruncateTextColumn``: cut a text column to a length in characters or in tokens."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field, PositiveInt, PrivateAttr

from alambic.errors import ColumnTypeError, MissingDependencyError
from alambic.steps.base import Step
from alambic.steps.typing import StepColumns, StepInput, StepOutput


class TruncateTextColumn(Step):
    """Cut ``column`` to ``max_length`` characters, or tokens when ``tokenizer`` is set.

    ``tokenizer`` is a Hugging Face tokenizer (a local folder or a hub id, loaded with
    ``transformers.AutoTokenizer`` at ``load()``): the text keeps its first ``max_length``
    tokens, decoded back to text, which is what a model with that context limit would see.
    ``None`` values pass through unchanged; any other non-text value is an error.
    """

    column: str = Field(default="text", description="The column to truncate.")
    max_length: PositiveInt = Field(default=8192, description="Characters (or tokens) kept.")
    tokenizer: str | None = Field(
        default=None, description="Tokenizer (folder or hub id) to count tokens; None: characters."
    )

    _runs_inline: ClassVar[bool] = False
    _tokenizer: Any = PrivateAttr(default=None)

    @property
    def inputs(self) -> StepColumns:
        return [self.column]

    @property
    def outputs(self) -> StepColumns:
        return [self.column]

    def load(self) -> None:
        super().load()
        if self.tokenizer is not None and self._tokenizer is None:
            try:
                from transformers import AutoTokenizer
            except ImportError as exc:
                raise MissingDependencyError(
                    f"Step {self.name!r} (TruncateTextColumn) with tokenizer= (drop it to "
                    "truncate by characters)",
                    "transformers",
                    "transformers",
                ) from exc
            self._tokenizer = AutoTokenizer.from_pretrained(self.tokenizer)

    def _truncate(self, text: str) -> str:
        if self._tokenizer is None:
            return text[: self.max_length]
        ids = self._tokenizer.encode(text, add_special_tokens=False)
        if len(ids) <= self.max_length:
            return text
        return str(self._tokenizer.decode(ids[: self.max_length], skip_special_tokens=True))

    def process(self, inputs: StepInput) -> StepOutput:  # type: ignore[override]
        if self.tokenizer is not None and self._tokenizer is None:
            self.load()
        column = self.column
        rows = []
        for row in inputs:
            value = row.get(column)
            if value is not None and not isinstance(value, str):
                raise ColumnTypeError(
                    f"Step {self.name!r} (TruncateTextColumn): column {column!r} must hold "
                    f"text, got {type(value).__name__} {value!r:.80}."
                )
            rows.append({**row, column: None if value is None else self._truncate(value)})
        yield rows


__all__ = ["TruncateTextColumn"]

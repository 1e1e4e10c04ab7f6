"""TextGenerationWithImage: ask a vision-language model about an image.

Text plus one image per row, sent as OpenAI-format content parts (the image inline as a
``data:`` URL unless it is already a URL), which OpenAI-compatible servers (vLLM, TGI,
llama.cpp, Ollama) and the OpenAI API read natively; ``AnthropicLLM`` converts them to its
image blocks.
"""

from __future__ import annotations

from typing import Any, Literal, cast

from pydantic import Field

from alambic.errors import ColumnTypeError
from alambic.llms._content import image_part
from alambic.llms.typing import ChatItem, ChatType
from alambic.steps.base import normalize_columns
from alambic.steps.tasks.text_generation import TextGeneration
from alambic.steps.typing import StepColumns


class TextGenerationWithImage(TextGeneration):
    """Answer ``instruction`` (or ``template`` over ``columns``) about the ``image`` column.

    ``image`` holds a URL, a local path, base64 text, raw bytes or a PIL image;
    ``image_type`` (``"url"``, ``"base64"`` or ``"PIL"``, as in the reference) is accepted for
    compatibility, the kind is recognised from the value. Output column ``generation``. An
    image that cannot be read (a missing file, bytes that are no image) is a failed row
    naming the column.
    """

    image_column: str = Field(default="image", description="The column holding the image.")
    image_type: Literal["url", "base64", "PIL"] = Field(
        default="url", description="What the image column holds (recognised anyway)."
    )

    @property
    def inputs(self) -> StepColumns:
        columns = normalize_columns(super().inputs)
        columns[self.image_column] = True
        return columns

    def format_input(self, input: dict[str, Any]) -> ChatType:
        messages = super().format_input(input)
        value = input.get(self.image_column)
        if value is None:
            raise ColumnTypeError(
                f"Step {self.name!r} (TextGenerationWithImage): column {self.image_column!r} "
                f"is empty; it must hold an image (URL, path, base64, bytes or PIL image)."
            )
        try:
            part = image_part(value)
        except (TypeError, ValueError, OSError) as exc:
            raise ColumnTypeError(
                f"Step {self.name!r} (TextGenerationWithImage): column {self.image_column!r} "
                f"does not hold a usable image: {exc}"
            ) from exc
        last = messages[-1]
        parts = [{"type": "text", "text": last["content"]}, part]
        messages[-1] = cast(ChatItem, {"role": "user", "content": parts})
        return messages


__all__ = ["TextGenerationWithImage"]

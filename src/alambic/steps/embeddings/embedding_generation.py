"""``EmbeddingGeneration``: one embedding per row, from any :class:`Embeddings` model."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from alambic.embeddings.base import Embeddings
from alambic.errors import ColumnTypeError
from alambic.steps.base import Step
from alambic.steps.typing import StepColumns, StepInput, StepOutput


class EmbeddingGeneration(Step):
    """Embed the ``text`` column of every row with ``embeddings``.

    Writes ``embedding`` (a list of floats) and ``model_name``. A row whose ``text`` is
    ``None`` (for example a generation that failed upstream) gets ``embedding=None`` rather
    than the embedding of an empty string, so later steps can tell it apart. Embed another
    column with ``input_mappings={"text": "instruction"}``.
    """

    embeddings: Embeddings = Field(description="The model that embeds the texts.")

    @property
    def inputs(self) -> StepColumns:
        return ["text"]

    @property
    def outputs(self) -> StepColumns:
        return ["embedding", "model_name"]

    def load(self) -> None:
        self.embeddings.load()
        super().load()

    def unload(self) -> None:
        self.embeddings.unload()
        super().unload()

    def process(self, inputs: StepInput) -> StepOutput:  # type: ignore[override]
        positions: list[int] = []
        texts: list[str] = []
        for position, row in enumerate(inputs):
            text: Any = row.get("text")
            if text is None:
                continue
            if not isinstance(text, str):
                raise ColumnTypeError(
                    f"Step {self.name!r} (EmbeddingGeneration): column 'text' must hold strings, "
                    f"got {type(text).__name__} {text!r:.100}. Map a text column with "
                    "input_mappings={'text': '<column>'}."
                )
            positions.append(position)
            texts.append(text)
        vectors = self.embeddings.encode(texts) if texts else []
        by_position = dict(zip(positions, vectors, strict=True))
        model_name = self.embeddings.model_name
        yield [
            {**row, "embedding": by_position.get(i), "model_name": model_name}
            for i, row in enumerate(inputs)
        ]


__all__ = ["EmbeddingGeneration"]

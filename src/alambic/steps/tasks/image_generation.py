"""ImageGeneration: an image for each prompt, from an image-generation model."""

from __future__ import annotations

from typing import Any

from pydantic import Field, PositiveInt

from alambic.errors import METADATA_COLUMN
from alambic.llms.image_generation import ImageGenerationModel
from alambic.steps.base import Step
from alambic.steps.checks import require_text
from alambic.steps.typing import Row, StepColumns, StepInput, StepOutput


class ImageGeneration(Step):
    """Write ``image`` for each ``prompt`` with an image-generation model (``llm``).

    ``llm`` is an :class:`~alambic.llms.image_generation.ImageGenerationModel`, such as
    ``OpenAIImageGeneration``. ``image`` holds ``{"bytes": <the image file>, "path": None}``,
    the layout of ``datasets.Image``: the Distiset types the column as ``Image()``, so
    ``distiset["default"]["train"][0]["image"]`` is a PIL image and the Hub viewer shows it.
    With ``num_generations`` > 1 each prompt gives that many rows. A failed request leaves
    ``image`` ``None`` with the reason in ``alambic_metadata["error_<name>"]``.
    """

    llm: ImageGenerationModel = Field(description="The image-generation model.")
    num_generations: PositiveInt = Field(default=1, description="Images per prompt.")

    @property
    def inputs(self) -> StepColumns:
        return ["prompt"]

    @property
    def outputs(self) -> StepColumns:
        return ["image", "model_name"]

    def load(self) -> None:
        super().load()
        self.llm.load()

    def unload(self) -> None:
        self.llm.unload()
        super().unload()

    def process(self, inputs: StepInput) -> StepOutput:  # type: ignore[override]
        rows = list(inputs)
        prompts = [
            require_text(self.name, "prompt", row.get("prompt"), kind="ImageGeneration")
            for row in rows
        ]
        outputs = self.llm.generate(prompts, num_generations=self.num_generations)
        result: list[Row] = []
        for row, out in zip(rows, outputs, strict=True):
            for image, error in zip(out.images, out.errors, strict=True):
                meta: dict[str, Any] = dict(row.get(METADATA_COLUMN) or {})
                if error is not None:
                    meta[f"error_{self.name}"] = dict(error)
                new = {k: v for k, v in row.items() if k != METADATA_COLUMN}
                new["image"] = None if image is None else {"bytes": image, "path": None}
                if meta or METADATA_COLUMN in row:  # Parquet cannot store an empty struct
                    new[METADATA_COLUMN] = meta
                new["model_name"] = self.llm.model_name
                result.append(new)
        yield result


__all__ = ["ImageGeneration"]

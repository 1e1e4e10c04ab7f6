"""ImageGeneration: an image for each prompt, from an image-generation model."""

from __future__ import annotations

import base64
import hashlib
import io
from pathlib import Path
from typing import Any

from pydantic import Field, PositiveInt

from alambic.errors import METADATA_COLUMN
from alambic.llms.image_generation import ImageGenerationModel
from alambic.steps.base import Step
from alambic.steps.checks import require_text
from alambic.steps.typing import Row, StepColumns, StepInput, StepOutput
from alambic.utils.imports import require


class ImageGeneration(Step):
    """Write ``image`` for each ``prompt`` with an image-generation model (``llm``).

    ``llm`` is an :class:`~alambic.llms.image_generation.ImageGenerationModel`, such as
    ``OpenAIImageGeneration``. ``image`` holds ``{"bytes": <the image file>, "path": None}``,
    the layout of ``datasets.Image``: the Distiset types the column as ``Image()``, so
    ``distiset["default"]["train"][0]["image"]`` is a PIL image and the Hub viewer shows it.
    With ``num_generations`` > 1 each prompt gives that many rows. A failed request leaves
    ``image`` ``None`` with the reason in ``alambic_metadata["error_<name>"]``.

    distilabel's forms, when ``save_images`` is given (they need Pillow, ``alambic[vision]``):
    ``save_images=False`` writes the image as a base64 string in ``image_format`` (JPEG by
    default); ``save_images=True`` saves it as an artifact of the step, in the ``images``
    artifact, as ``<md5 of the prompt>.<format>`` (``_<n>`` added for the n-th extra
    generation), and writes its path relative to the saved Distiset folder
    (``artifacts/<step>/images/artifacts/<file>``).
    """

    llm: ImageGenerationModel = Field(description="The image-generation model.")
    num_generations: PositiveInt = Field(default=1, description="Images per prompt.")
    save_images: bool | None = Field(
        default=None,
        description="None: an Image column; True: artifact files and their paths; False: base64.",
    )
    image_format: str = Field(
        default="JPEG", description="Pillow format of save_images' files or base64 strings."
    )

    @property
    def inputs(self) -> StepColumns:
        return ["prompt"]

    @property
    def outputs(self) -> StepColumns:
        return ["image", "model_name"]

    def load(self) -> None:
        super().load()
        if self.save_images is not None:
            require(
                "PIL", feature="ImageGeneration(save_images=...)", extra="vision", package="pillow"
            )
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
        for row, prompt, out in zip(rows, prompts, outputs, strict=True):
            for j, (image, error) in enumerate(zip(out.images, out.errors, strict=True)):
                meta: dict[str, Any] = dict(row.get(METADATA_COLUMN) or {})
                if error is not None:
                    meta[f"error_{self.name}"] = dict(error)
                new = {k: v for k, v in row.items() if k != METADATA_COLUMN}
                new["image"] = None if image is None else self._image_value(image, prompt, j)
                if meta or METADATA_COLUMN in row:  # Parquet cannot store an empty struct
                    new[METADATA_COLUMN] = meta
                new["model_name"] = self.llm.model_name
                result.append(new)
        yield result

    def _image_value(self, image: bytes, prompt: str, index: int) -> Any:
        """The ``image`` value: an Image column's dict, or one of distilabel's strings."""
        if self.save_images is None:
            return {"bytes": image, "path": None}
        data = _encoded(image, self.image_format)
        if not self.save_images:
            return base64.b64encode(data).decode("ascii")
        digest = hashlib.md5(prompt.encode("utf-8"), usedforsecurity=False).hexdigest()
        filename = f"{digest}{f'_{index}' if index else ''}.{self.image_format.lower()}"

        def write(path: Path) -> None:
            (path / filename).write_bytes(data)

        self.save_artifact("images", write, metadata={"type": "image"})
        return f"artifacts/{self.name}/images/artifacts/{filename}"


def _encoded(image: bytes, image_format: str) -> bytes:
    """``image`` (an image file's bytes) saved again in ``image_format`` with Pillow."""
    from PIL import Image

    with Image.open(io.BytesIO(image)) as picture:
        converted: Image.Image = picture
        if image_format.upper() in {"JPEG", "JPG"} and picture.mode not in {"RGB", "L"}:
            converted = picture.convert("RGB")  # JPEG has no alpha channel
        buffer = io.BytesIO()
        converted.save(buffer, format=image_format)
    return buffer.getvalue()


__all__ = ["ImageGeneration"]

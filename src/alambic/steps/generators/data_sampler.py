"""``DataSampler`` and ``make_generator_step``: rows from data you already hold in Python."""

from __future__ import annotations

import random
from typing import Annotated, Any

from pydantic import Field, PositiveInt, SkipValidation, field_validator

from alambic.steps.base import GeneratorStep
from alambic.steps.generators.data import LoadDataFromDicts
from alambic.steps.typing import GeneratorOutput, Row, StepColumns


class DataSampler(GeneratorStep):
    """``samples`` rows, each holding ``size`` rows of ``data`` drawn at random.

    Each output row has the columns of ``data``, every one a list of ``size`` values (the
    drawn rows, column by column): the usual way to give a task a few random examples per
    prompt, as few-shot examples for APIGen or seeds for Self-Instruct. Draws within one row
    are without replacement; the draws depend only on ``seed``, so a resumed run produces the
    same rows.
    """

    data: Annotated[list[dict[str, Any]], SkipValidation] = Field(
        description="The rows to sample from."
    )
    size: PositiveInt = Field(default=2, description="Rows of data per sample.")
    samples: PositiveInt = Field(default=100, description="How many samples to produce.")
    seed: int = Field(default=42, description="Seed of the draws.")

    @field_validator("data", mode="before")
    @classmethod
    def _check_data(cls, value: Any) -> Any:
        if not isinstance(value, list) or not value:
            raise ValueError("data must be a non-empty list of dicts (rows).")
        if not all(isinstance(row, dict) for row in value):
            raise ValueError("every item of data must be a dict (a row of column -> value).")
        return value

    @property
    def outputs(self) -> StepColumns:
        return list(self.data[0])

    def _draw(self, rng: random.Random) -> Row:
        k = min(self.size, len(self.data))
        picked = rng.sample(self.data, k)
        return {column: [row.get(column) for row in picked] for column in self.data[0]}

    def process(self, offset: int = 0) -> GeneratorOutput:
        rng = random.Random(self.seed)
        size = self.batch_size or 50
        rows = [self._draw(rng) for _ in range(self.samples)]
        if offset >= len(rows):
            yield [], True
            return
        mappings = self.output_mappings
        for start in range(offset, len(rows), size):
            chunk = rows[start : start + size]
            if mappings:
                chunk = [{mappings.get(k, k): v for k, v in row.items()} for row in chunk]
            yield chunk, start + size >= len(rows)


def make_generator_step(
    dataset: Any,
    pipeline: Any = None,
    batch_size: int = 50,
    input_mappings: dict[str, str] | None = None,
    output_mappings: dict[str, str] | None = None,
    name: str | None = None,
    **kwargs: Any,
) -> GeneratorStep:
    """A generator step that produces the rows of ``dataset``.

    ``dataset`` is a list of dicts, a Hugging Face ``datasets.Dataset`` or a pandas
    ``DataFrame``; it becomes a :class:`LoadDataFromDicts`. Use it to start a pipeline from
    data already in memory: ``make_generator_step(ds) >> task``. Other keyword arguments go to
    the step (``resources``, ``use_cache``...).
    """
    rows: list[dict[str, Any]]
    if isinstance(dataset, list):
        rows = dataset
    elif hasattr(dataset, "to_list") and hasattr(dataset, "column_names"):  # datasets.Dataset
        rows = dataset.to_list()
    elif hasattr(dataset, "to_dict") and hasattr(dataset, "columns"):  # pandas.DataFrame
        rows = dataset.to_dict("records")
    else:
        raise TypeError(
            f"make_generator_step: cannot make rows from a {type(dataset).__name__}; pass a "
            "list of dicts, a datasets.Dataset or a pandas.DataFrame (or use LoadDataFromHub "
            "/ LoadDataFromFileSystem for data on the hub or on disk)."
        )
    options: dict[str, Any] = {"data": rows, "batch_size": batch_size, **kwargs}
    if pipeline is not None:
        options["pipeline"] = pipeline
    if name is not None:
        options["name"] = name
    if input_mappings:
        options["input_mappings"] = input_mappings
    if output_mappings:
        options["output_mappings"] = output_mappings
    return LoadDataFromDicts(**options)


__all__ = ["DataSampler", "make_generator_step"]

"""``LoadDataFromDicts``: rows given in Python, the usual first step of a pipeline."""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any, ClassVar

from pydantic import Field, SkipValidation, field_validator

from alambic.steps.base import GeneratorStep
from alambic.steps.typing import GeneratorOutput, StepColumns
from alambic.utils.serialization import dump_component, dump_value, memoized

INLINE_ROWS_LIMIT = 1_000
"""Up to this many rows, ``dump()`` (the pipeline YAML) holds the rows themselves."""

_PLAIN = (str, int, float, bool, type(None))


class LoadDataFromDicts(GeneratorStep):
    """Produces the rows of ``data`` in batches of ``batch_size``.

    Its output columns are the keys of the first row, so the pipeline can check what the next
    steps read before running. Each produced row is a shallow copy: steps may add keys to it
    without touching ``data``, but nested lists and dicts are shared (do not mutate them in
    place). ``data`` itself is kept as given, not copied. A resumed run starts directly at the
    first row not yet committed.

    In the pipeline's YAML, up to 1,000 rows are written out; a larger ``data`` is recorded as
    its row count, columns and a SHA-256 fingerprint (so a changed dataset still changes the
    pipeline's signature), and such a YAML cannot rebuild the step: keep large datasets in a
    file and use ``LoadDataFromFileSystem`` when the pipeline must be reproducible from YAML.
    """

    data: Annotated[list[dict[str, Any]], SkipValidation] = Field(
        description="The rows to produce, as dicts."
    )

    _runs_inline: ClassVar[bool] = True
    applies_output_mappings: ClassVar[bool] = True

    @field_validator("data", mode="before")
    @classmethod
    def _check_rows(cls, value: Any) -> Any:
        if isinstance(value, dict) and "sha256" in value and "num_rows" in value:
            raise ValueError(
                f"this LoadDataFromDicts was saved with {value['num_rows']} rows, too many to "
                "write into the pipeline YAML, so its data is not in it: pass data=[...] "
                "again, or load the rows from a file with LoadDataFromFileSystem."
            )
        if not isinstance(value, list):
            raise ValueError(f"data must be a list of dicts (rows), got {type(value).__name__}.")
        for index, row in enumerate(value):
            if not isinstance(row, dict):
                raise ValueError(
                    f"data[{index}] is a {type(row).__name__} ({row!r:.80}), not a dict: each "
                    "row is a dict of column -> value."
                )
        return value

    @property
    def outputs(self) -> StepColumns:
        return list(self.data[0]) if self.data else []

    def process(self, offset: int = 0) -> GeneratorOutput:
        data = self.data
        size = self.batch_size or 50
        total = len(data)
        if offset >= total:
            yield [], True
            return
        mappings = self.output_mappings
        for start in range(offset, total, size):
            chunk = data[start : start + size]
            if mappings:
                rows = [{mappings.get(k, k): v for k, v in row.items()} for row in chunk]
            else:
                rows = [dict(row) for row in chunk]
            yield rows, start + size >= total

    def dump(self) -> dict[str, Any]:
        rest = dump_component(self, exclude=frozenset({"data"}))
        data: Any
        if len(self.data) > INLINE_ROWS_LIMIT:
            # a run's dumps share one digest (see memoized_dumps): the data cannot change
            # under a run, and a new run digests them again
            key = ("LoadDataFromDicts.digest", id(self.data), len(self.data))
            digest = memoized(key, self._digest, keep=self.data)
            data = {"num_rows": len(self.data), "columns": list(self.outputs), "sha256": digest}
        else:
            data = _dump_rows(self.data)
        dumped: dict[str, Any] = {"type_info": rest["type_info"]}
        for name in type(self).model_fields:
            if name == "data":
                dumped["data"] = data
            elif name in rest:
                dumped[name] = rest[name]
        return dumped

    def _digest(self) -> str:
        """The sha256 of ``data`` as sorted JSON (how a large ``data`` enters signatures)."""
        text = json.dumps(self.data, sort_keys=True, default=str, ensure_ascii=False)
        return hashlib.sha256(text.encode()).hexdigest()


def _dump_rows(rows: list[dict[str, Any]]) -> list[Any]:
    return [
        dict(row)
        if all(type(k) is str and isinstance(v, _PLAIN) for k, v in row.items())
        else dump_value(row)
        for row in rows
    ]


__all__ = ["INLINE_ROWS_LIMIT", "LoadDataFromDicts"]

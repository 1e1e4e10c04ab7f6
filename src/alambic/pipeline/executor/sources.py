"""Dataset sources: ``run(dataset=...)`` fed to the root steps as a generator step."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any, ClassVar

from alambic.steps.base import GeneratorStep
from alambic.steps.typing import Row

DATASET_SOURCE = "dataset"
"""The name of the node that feeds ``run(dataset=...)``."""


class DatasetSource(GeneratorStep):
    """Feeds ``run(dataset=...)`` to the root steps of a pipeline that has no generator."""

    data: Any = None
    _runs_inline: ClassVar[bool] = True

    @property
    def outputs(self) -> list[str]:
        first = first_row(self.data)
        return list(first) if first else []

    def process(self, offset: int = 0) -> Iterator[tuple[list[Row], bool]]:
        size = self.batch_size or 50
        total = len(self.data)
        if total == 0:
            yield [], True
            return
        for start in range(offset, total, size):
            chunk = self.data[start : start + size]
            if not isinstance(chunk, list):  # a Hugging Face dataset slice is a dict of columns
                keys = list(chunk)
                chunk = [
                    dict(zip(keys, values, strict=True))
                    for values in zip(*chunk.values(), strict=True)
                ]
            else:
                chunk = [dict(r) for r in chunk]
            yield chunk, start + size >= total


def first_row(data: Any) -> dict[str, Any] | None:
    if data is None or len(data) == 0:
        return None
    row = data[0]
    return dict(row) if isinstance(row, dict) else None


def dataset_columns(data: Any) -> list[str]:
    names = getattr(data, "column_names", None)
    if names is not None:
        return list(names)
    first = first_row(data)
    return list(first) if first else []


def combine(a: str, b: str) -> str:
    return hashlib.sha256(f"{a}:{b}".encode()).hexdigest()


def dataset_fingerprint(data: Any) -> str:
    fingerprint = getattr(data, "_fingerprint", None)
    if fingerprint:
        return hashlib.sha256(str(fingerprint).encode()).hexdigest()
    blob = json.dumps(data, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


__all__ = ["DATASET_SOURCE", "DatasetSource", "combine", "dataset_columns", "dataset_fingerprint"]

"""Image columns in datasets: ``{"bytes", "path"}`` values become ``datasets.Image()``.

``datasets`` stores an ``Image`` feature as a struct of ``bytes`` and ``path``; a step that
writes images in that layout (``ImageGeneration``) gets a column that the Distiset types as
``Image()`` here, so reading a row gives a PIL image and the Hub viewer shows pictures.
"""

from __future__ import annotations

from typing import Any

__all__ = ["cast_image_columns"]


def _is_image_struct(feature: Any) -> bool:
    return isinstance(feature, dict) and set(feature) == {"bytes", "path"}


def cast_image_columns(dataset: Any) -> Any:
    """``dataset`` with every ``{"bytes": binary, "path": ...}`` column typed ``Image()``."""
    import datasets

    columns = [
        name
        for name, feature in dataset.features.items()
        if _is_image_struct(feature)
        and getattr(feature["bytes"], "dtype", None) in {"binary", "large_binary"}
    ]
    for name in columns:
        dataset = dataset.cast_column(name, datasets.Image())
    return dataset

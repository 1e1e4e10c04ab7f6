"""One type per column: a row whose value does not match its column is refused, not rewritten.

Parquet (and Arrow, and the ``datasets`` library built on it) stores one type per column: a
column holding ``"ok 0"`` and ``42`` cannot keep both as given. The type of each output column
of a step is fixed, for the whole run, by the first non-null value the step emits in sequence
order, which does not depend on the batch size. A later row whose value has another type is
*refused*: that value becomes ``None``, the row carries an error of kind ``input`` naming the
column, the value, its type and the column's type, and no task after it sends a request for
it (see :func:`alambic.errors.row_refusal`). Its other columns are kept as they are.

Types are compared by kind: text, number (``int`` and ``float`` together, as Arrow promotes
them), boolean, bytes, list (list or tuple), dict, image (any PIL image; an image column also takes
paths, URLs, bytes and ``{"bytes", "path"}`` dicts), or the class name of anything else. What
lies inside lists and dicts is not compared here (a conflict there is stored as JSON text by
the parquet writer, with a warning).
"""

from __future__ import annotations

import logging
from typing import Any

from alambic.errors import (
    METADATA_COLUMN,
    REFUSED_TYPE,
    ErrorKind,
    error_entry,
    set_row_error,
)
from alambic.steps.typing import Row

logger = logging.getLogger("alambic")

_KINDS: dict[type, str] = {
    str: "str",
    int: "number",
    float: "number",
    bool: "bool",
    bytes: "bytes",
    list: "list",
    tuple: "list",
    dict: "dict",
}
_ORDER = (bool, int, float, str, bytes, list, tuple, dict)  # bool before its base, int


IMAGE_SOURCES = frozenset({"str", "bytes", "dict"})
"""What an image column (first value a PIL image) also accepts: a path or URL, encoded bytes,
or ``datasets``' ``{"bytes", "path"}`` form; each is an image as the image tasks read it."""


def _kind(cls: type) -> str:
    kind = _KINDS.get(cls)
    if kind is None:
        base = next((b for b in _ORDER if issubclass(cls, b)), None)
        if base is not None:
            kind = _KINDS[base]
        elif any(b.__module__.startswith("PIL.") and b.__name__ == "Image" for b in cls.__mro__):
            kind = "image"  # every PIL image class (PngImageFile, JpegImageFile, ...)
        else:
            kind = cls.__name__
        _KINDS[cls] = kind
    return kind


class ColumnTypes:
    """The column kinds one step's output has shown so far in this run."""

    def __init__(self, step_name: str) -> None:
        self.step_name = step_name
        self.kinds: dict[str, str] = {}
        self.first: dict[str, Any] = {}  # the value that fixed each column's kind (for errors)
        self.refused = 0

    def check(self, rows: list[Row]) -> None:
        """Replace in ``rows`` (in place, in order) each row that breaks its column's kind by
        its refused copy; the first value of a column fixes its kind."""
        kinds = self.kinds
        for index, row in enumerate(rows):
            odd: list[tuple[str, Any, str]] | None = None
            for column, value in row.items():
                if value is None or column == METADATA_COLUMN:
                    continue
                kind = _KINDS.get(type(value)) or _kind(type(value))
                known = kinds.get(column)
                if known is None:
                    kinds[column] = kind
                    self.first[column] = value
                elif known != kind and not (known == "image" and kind in IMAGE_SOURCES):
                    if odd is None:
                        odd = []
                    odd.append((column, value, kind))
            if odd is not None:
                rows[index] = self._refuse(row, odd)

    def _refuse(self, row: Row, odd: list[tuple[str, Any, str]]) -> Row:
        new = dict(row)
        parts = []
        for column, value, kind in odd:
            new[column] = None
            known = self.kinds[column]
            parts.append(
                f"column {column!r} holds {_show(value)} (type {type(value).__name__}, kind "
                f"{kind}) but its first value in this run, {_show(self.first[column])}, made "
                f"it a {known} column"
            )
        message = (
            f"Row refused by step {self.step_name!r}: {'; '.join(parts)}. A parquet column "
            "holds one type: the value is not stored (None in its place) and no step after "
            "this one sends a request for the row. Give every value of the column one type "
            "(e.g. str(value)) and run again."
        )
        self.refused += 1
        if self.refused == 1:
            logger.warning("%s Later refused rows are counted as failed rows.", message)
        return set_row_error(
            new, self.step_name, error_entry(ErrorKind.INPUT, message, type=REFUSED_TYPE)
        )


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


__all__ = ["ColumnTypes"]

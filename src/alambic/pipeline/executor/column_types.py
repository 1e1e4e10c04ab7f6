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
paths, URLs, bytes and ``{"bytes", "path"}`` dicts), or the class name of anything else.

What lists and dicts hold is compared too, as parquet stores it: the items of a list have one
kind (``[1, 2]`` then ``["a"]`` refuses the second row), and a key of a dict keeps the kind
of its value (``{"score": 5}`` then ``{"score": "five"}``); keys may come and go (a missing
one is stored as null). Without this, one odd nested value turned the whole column into JSON
text. What is not known yet (an empty list, a null) is learned from the next values. A list
whose own items mix kinds (``[1, "a"]``) cannot be stored as a list at all: that row is
refused too. Nesting deeper than four levels is not compared.
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


Shape = str | tuple[str, Any] | None
"""A value's kind, with what it holds: ``"number"``, ``("list", <items' shape>)``,
``("dict", {key: <value's shape>})``; ``None`` where nothing is known yet."""

_DEPTH = 4
MIXED = "list of mixed kinds"
"""The shape of a value holding a list whose items mix kinds: parquet cannot store it."""


def shape_of(value: Any, depth: int = 0) -> Shape:
    """The shape of a non-null ``value`` (see :data:`Shape`), or :data:`MIXED`."""
    kind = _KINDS.get(type(value)) or _kind(type(value))
    if depth >= _DEPTH or kind not in ("list", "dict"):
        return kind
    if kind == "dict":
        fields = {}
        for key, item in value.items():
            if item is not None:
                fields[key] = shape_of(item, depth + 1)
                if fields[key] is MIXED:
                    return MIXED
        return "dict", fields
    types = set(map(type, value))  # fast for long lists of numbers (embeddings)
    types.discard(type(None))
    kinds = {_KINDS.get(t) or _kind(t) for t in types}
    if len(kinds) > 1:
        return MIXED
    if not kinds or not kinds & {"list", "dict"}:
        return "list", next(iter(kinds), None)
    items: Shape = None
    for item in value:
        if item is not None:
            inner = shape_of(item, depth + 1)
            ok, items = merge_shapes(items, inner)
            if not ok or inner is MIXED:
                return MIXED
    return "list", items


def merge_shapes(known: Shape, new: Shape) -> tuple[bool, Shape]:
    """Whether a value of shape ``new`` fits a column of shape ``known`` (neither
    :data:`MIXED`), and the column's shape with what ``new`` taught: a list's items, a
    dict's new keys."""
    if known == new or new is None:
        return True, known
    if known is None:
        return True, new
    if isinstance(known, str) or isinstance(new, str) or known[0] != new[0]:
        return False, known
    if known[0] == "list":
        ok, items = merge_shapes(known[1], new[1])
        return ok, ("list", items)
    fields = dict(known[1])
    for key, field in new[1].items():
        ok, fields[key] = merge_shapes(fields.get(key), field)
        if not ok:
            return False, known
    return True, ("dict", fields)


def describe(shape: Shape) -> str:
    """``shape`` in words: ``list of number``, ``dict {score: number}``."""
    if shape is None:
        return "unknown"
    if isinstance(shape, str):
        return shape
    if shape[0] == "list":
        return f"list of {describe(shape[1])}"
    return "dict {" + ", ".join(f"{k}: {describe(v)}" for k, v in shape[1].items()) + "}"


class ColumnTypes:
    """The column kinds one step's output has shown so far in this run."""

    def __init__(self, step_name: str) -> None:
        self.step_name = step_name
        self.kinds: dict[str, str] = {}
        self.first: dict[str, Any] = {}  # the value that fixed each column's kind (for errors)
        self.shapes: dict[str, Shape] = {}  # what a list or dict column holds, learned so far
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
                reason: str | None = None
                if known is None:
                    reason = self._learn(column, value) if kind in ("list", "dict") else None
                    if reason is None:  # (a list of mixed items: the next value decides)
                        kinds[column] = kind
                        self.first[column] = value
                elif known != kind and not (known == "image" and kind in IMAGE_SOURCES):
                    reason = self._other_kind(column, value, kind)
                elif kind in ("list", "dict") and known == kind:
                    reason = self._learn(column, value)
                if reason is not None:
                    if odd is None:
                        odd = []
                    odd.append((column, value, reason))
            if odd is not None:
                rows[index] = self._refuse(row, odd)

    def _other_kind(self, column: str, value: Any, kind: str) -> str:
        return (
            f"column {column!r} holds {_show(value)} (type {type(value).__name__}, kind "
            f"{kind}) but its first value in this run, {_show(self.first[column])}, made "
            f"it a {self.kinds[column]} column"
        )

    def _learn(self, column: str, value: Any) -> str | None:
        """Check a list or dict against what its column holds so far and learn from it;
        the reason the value is refused, if it is."""
        shape = shape_of(value)
        if shape is MIXED:
            return (
                f"column {column!r} holds {_show(value)}, which holds a list whose items mix "
                "kinds: parquet cannot store it"
            )
        ok, merged = merge_shapes(self.shapes.get(column), shape)
        if ok:
            self.shapes[column] = merged
            return None
        return (
            f"column {column!r} holds {_show(value)} ({describe(shape)}) but its values so "
            f"far in this run, from {_show(self.first[column])} on, made it a "
            f"{describe(merged)} column"
        )

    def _refuse(self, row: Row, odd: list[tuple[str, Any, str]]) -> Row:
        new = dict(row)
        parts = []
        for column, _, reason in odd:
            new[column] = None
            parts.append(reason)
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

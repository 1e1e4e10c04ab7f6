"""Writing a leaf step's rows to parquet part files as they are produced, and reading them back.

The executor hands each finished batch of a leaf step to a :class:`ParquetRowWriter`, in order.
Rows are converted to Arrow at once (compact) and flushed to ``part-00000.parquet``,
``part-00001.parquet``... every ``rows_per_part`` rows or ``max_buffer_bytes`` bytes, so memory
stays flat however many rows a run produces. Each part is written to a temporary name and
renamed, so a crash leaves whole parts only.

Rows from an LLM pipeline drift in shape: a column is ``None`` in the first batches and a string
later, ``alambic_metadata`` gains an ``error_<task>`` key only on failed rows. Each part keeps the
schema of its own rows; :func:`read_parquet_parts` unifies the parts' schemas (a ``null`` column
becomes the type seen later, struct fields are merged, ``int`` widens to ``float``) so reading
back gives one consistent table. A column whose values cannot share one Arrow type (a number in
one row, a dict in another) is stored as JSON text rather than failing the run.

After a crash, :meth:`ParquetRowWriter.rows_written` says how many rows the parts hold and
:meth:`ParquetRowWriter.truncate_to` cuts them back to the number the run store committed; a new
writer on the same directory continues the part numbering.

pyarrow is imported only when rows are written or read.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from alambic.utils.imports import require

logger = logging.getLogger("alambic")

PART_PATTERN = re.compile(r"^part-(\d{5,})\.parquet$")
"""Names of the part files, in the order their rows were produced."""


_POOL_CHOSEN = False


def _pa() -> Any:
    global _POOL_CHOSEN
    pa = require("pyarrow", feature="Writing datasets to parquet", extra="hf")
    if not _POOL_CHOSEN:
        _POOL_CHOSEN = True
        if "ARROW_DEFAULT_MEMORY_POOL" not in os.environ:
            # mimalloc/jemalloc keep freed pages for reuse: over a long run of many small
            # tables that is tens of MB of RSS; the system allocator returns them (W1 at
            # 40,000 rows: peak 237 -> 211 MB). Set ARROW_DEFAULT_MEMORY_POOL to choose.
            pa.set_memory_pool(pa.system_memory_pool())
    return pa


def _pq() -> Any:
    return require(
        "pyarrow.parquet", feature="Writing datasets to parquet", extra="hf", package="pyarrow"
    )


def part_name(index: int) -> str:
    return f"part-{index:05d}.parquet"


def list_parts(directory: str | os.PathLike[str]) -> list[Path]:
    """The part files of ``directory`` in order (temporary files of a crashed write excluded)."""
    root = Path(directory)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := PART_PATTERN.match(p.name))]
    return [p for _, p in sorted(found)]


def _json_text(value: Any) -> str | None:
    """A value of a column that mixes types, as text: a string stays exactly as it is (so the
    strings of a column never change with the other rows of their batch), anything else is
    written as JSON (``5``, ``[1, 2]``, ``{"a": 1}``)."""
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


_WARNED: set[str] = set()
"""Columns already reported as mixed since the last writer was created."""


def _warn_mixed(name: str, values: Iterable[Any]) -> None:
    if name in _WARNED:
        return
    _WARNED.add(name)
    kinds = sorted({type(v).__name__ for v in values if v is not None})
    logger.warning(
        "Column %r mixes values of types %s, which parquet cannot store in one column: its "
        "strings are kept as they are and its other values are stored as JSON text (5 -> "
        "'5'). Give the column one type (e.g. str(value)) to avoid this.",
        name,
        ", ".join(kinds),
    )


def rows_to_table(rows: Sequence[dict[str, Any]]) -> Any:
    """An Arrow table of ``rows``; columns in first-seen order, a row missing a column gets null.

    A column whose values have no common Arrow type is stored as JSON text.
    """
    pa = _pa()
    columns: dict[str, None] = {}
    for row in rows:
        for key in row:
            if key not in columns:
                columns[key] = None
    if not columns:
        return pa.table({})
    if not _same_keys(rows):
        return _by_column(rows, columns)
    try:
        return pa.Table.from_pylist(list(rows))
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError):
        return _by_column(rows, columns)


def _same_keys(rows: Sequence[dict[str, Any]]) -> bool:
    first = rows[0].keys() if rows else ()
    return all(row.keys() == first for row in rows)


def _by_column(rows: Sequence[dict[str, Any]], columns: Iterable[str]) -> Any:
    pa = _pa()
    arrays = []
    names = []
    for name in columns:
        values = [row.get(name) for row in rows]
        try:
            array = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError):
            _warn_mixed(name, values)
            array = pa.array([_json_text(v) for v in values], type=pa.string())
        arrays.append(array)
        names.append(name)
    return pa.Table.from_arrays(arrays, names=names)


def unify_tables(tables: Sequence[Any]) -> list[Any]:
    """Cast ``tables`` to one schema: types promoted, struct fields merged, missing columns null.

    A column whose types cannot be unified becomes JSON text in every table.
    """
    pa = _pa()
    if not tables:
        return []
    schemas = [t.schema for t in tables]
    if all(s.equals(schemas[0]) for s in schemas[1:]):
        return list(tables)
    try:
        schema = pa.unify_schemas(schemas, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        tables = _stringify_conflicts(tables)
        schema = pa.unify_schemas([t.schema for t in tables], promote_options="permissive")
    return [conform_table(table, schema) for table in tables]


def conform_table(table: Any, schema: Any) -> Any:
    """``table`` with ``schema``'s columns, order and types (absent columns filled with null)."""
    pa = _pa()
    for field in schema:
        if field.name not in table.column_names:
            table = table.append_column(field.name, pa.nulls(table.num_rows, field.type))
    table = table.select(schema.names)
    if table.schema.equals(schema):
        return table
    try:
        # column by column: casting a list<null> column to its own type fails in pyarrow 26
        columns = [
            column if column.type.equals(field.type) else column.cast(field.type)
            for column, field in zip(table.columns, schema, strict=True)
        ]
        return pa.Table.from_arrays(columns, schema=schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        raise ValueError(
            f"Cannot bring parquet parts to one schema: {exc}. Unified schema: {schema}"
        ) from exc


def _stringify_conflicts(tables: Sequence[Any]) -> list[Any]:
    pa = _pa()
    names: dict[str, None] = {}
    for table in tables:
        names.update(dict.fromkeys(table.column_names))
    conflicting = []
    for name in names:
        fields = [t.schema.field(name) for t in tables if name in t.column_names]
        try:
            pa.unify_schemas([pa.schema([f]) for f in fields], promote_options="permissive")
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            conflicting.append(name)
    out = []
    for table in tables:
        for name in conflicting:
            if name in table.column_names and table.schema.field(name).type != pa.string():
                index = table.column_names.index(name)
                values = [_json_text(v) for v in table.column(name).to_pylist()]
                _warn_mixed(name, table.column(name).to_pylist())
                table = table.set_column(index, name, pa.array(values, type=pa.string()))
        out.append(table)
    return out


def read_parquet_parts(directory: str | os.PathLike[str]) -> Any:
    """All the rows of ``directory``'s parts as one Arrow table with a unified schema."""
    pa = _pa()
    pq = _pq()
    parts = list_parts(directory)
    if not parts:
        return pa.table({})
    tables = unify_tables([pq.read_table(p) for p in parts])
    return pa.concat_tables(tables)


def consolidate_parts(
    directory: str | os.PathLike[str],
    target: str | os.PathLike[str],
    *,
    drop_columns: Sequence[str] = (),
) -> Path:
    """Write the parts of ``directory`` as one Arrow IPC stream file with a unified schema.

    One part is in memory at a time, so a dataset of any size can then be memory-mapped
    (``datasets.Dataset.from_file``). Columns whose types cannot be unified cannot be streamed
    this way: for those, the parts are read together and the column stored as JSON text.
    """
    pa = _pa()
    pq = _pq()
    parts = list_parts(directory)
    out = Path(target)
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        schemas = [pq.read_schema(p) for p in parts]
        schema = pa.unify_schemas(schemas, promote_options="permissive") if schemas else None
        tables: Iterable[Any] = (pq.read_table(p) for p in parts)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        unified = unify_tables([pq.read_table(p) for p in parts])
        schema = unified[0].schema
        tables = unified
    if schema is None:
        schema = pa.schema([])
    keep = [f for f in schema if f.name not in set(drop_columns)]
    schema = pa.schema(keep, metadata=schema.metadata)
    with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
        for table in tables:
            table = table.drop_columns([c for c in drop_columns if c in table.column_names])
            writer.write_table(conform_table(table, schema))
    os.replace(tmp, out)
    return out


def disk_error(exc: OSError, target: Path) -> Exception:
    """pyarrow's ``OSError`` for a full disk as the documented ``StoreError``; other errors
    unchanged."""
    if exc.errno != errno.ENOSPC and "No space left" not in str(exc):
        return exc
    from alambic.errors import StoreError

    full = StoreError(
        f"Disk full while writing the dataset file {target} ({exc}). Nothing committed before "
        "this point is lost: free some space (or set ALAMBIC_CACHE_DIR to a folder on a "
        "larger disk) and run again; the run resumes from the committed batches."
    )
    full.disk_full = True
    return full


class ParquetRowWriter:
    """Appends batches of rows to numbered parquet parts in ``directory``.

    ``write(rows)`` buffers (as Arrow), and a part is written each time ``rows_per_part`` rows or
    ``max_buffer_bytes`` bytes have accumulated; ``close()`` writes the rest. Parts already in
    the directory are kept and numbering continues after them (``start_part`` overrides that;
    ``overwrite=True`` deletes them first). Not thread-safe: one writer per directory, called
    from one place.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        start_part: int | None = None,
        overwrite: bool = False,
        rows_per_part: int = 20_000,
        max_buffer_bytes: int = 64 * 1024 * 1024,
        compression: str = "zstd",
    ) -> None:
        if rows_per_part < 1:
            raise ValueError(f"rows_per_part must be >= 1, got {rows_per_part}")
        _WARNED.clear()  # a new output: warn again about its mixed columns (once each)
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        if overwrite:
            for part in list_parts(self.directory):
                part.unlink()
        existing = list_parts(self.directory)
        if start_part is None:
            start_part = int(PART_PATTERN.match(existing[-1].name).group(1)) + 1 if existing else 0  # type: ignore[union-attr]
        self._next_part = start_part
        self.rows_per_part = rows_per_part
        self.max_buffer_bytes = max_buffer_bytes
        self.compression = compression
        self._buffer: list[Any] = []
        self._buffered_rows = 0
        self._buffered_bytes = 0
        self._closed = False
        self.rows_flushed = 0
        """Rows this writer has written to part files (not counting earlier writers)."""

    @property
    def next_part(self) -> int:
        """Index the next part file will get."""
        return self._next_part

    def write(self, rows: Sequence[dict[str, Any]]) -> None:
        """Add a batch of rows (in production order)."""
        if self._closed:
            raise RuntimeError(f"ParquetRowWriter({str(self.directory)!r}) is closed.")
        if not rows:
            return
        table = rows_to_table(rows)
        self._buffer.append(table)
        self._buffered_rows += table.num_rows
        self._buffered_bytes += table.nbytes
        if (
            self._buffered_rows >= self.rows_per_part
            or self._buffered_bytes >= self.max_buffer_bytes
        ):
            self.flush()

    def flush(self) -> None:
        """Write the buffered rows as one new part file (nothing if the buffer is empty)."""
        if not self._buffer:
            return
        pa = _pa()
        pq = _pq()
        table = pa.concat_tables(unify_tables(self._buffer))
        target = self.directory / part_name(self._next_part)
        tmp = target.with_name(f".{target.name}.tmp")
        try:
            pq.write_table(table, tmp, compression=self.compression)
            os.replace(tmp, target)
        except OSError as exc:
            raise disk_error(exc, target) from exc
        self._next_part += 1
        self.rows_flushed += table.num_rows
        self._buffer = []
        self._buffered_rows = 0
        self._buffered_bytes = 0

    def close(self) -> None:
        """Write what is buffered; the writer cannot be used afterwards."""
        if not self._closed:
            self.flush()
            self._closed = True

    def __enter__(self) -> ParquetRowWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def rows_written(directory: str | os.PathLike[str]) -> int:
        """Rows held by the part files of ``directory`` (read from the parquet footers only)."""
        pq = _pq()
        return sum(pq.ParquetFile(p).metadata.num_rows for p in list_parts(directory))

    @staticmethod
    def truncate_to(directory: str | os.PathLike[str], n_rows: int) -> None:
        """Keep only the first ``n_rows`` rows of ``directory``'s parts.

        Parts after the cut are deleted and the part it falls in is rewritten (atomically), so a
        resumed run can append from exactly the row the run store committed last.
        """
        if n_rows < 0:
            raise ValueError(f"n_rows must be >= 0, got {n_rows}")
        pq = _pq()
        seen = 0
        for part in list_parts(directory):
            count = pq.ParquetFile(part).metadata.num_rows
            if seen >= n_rows:
                part.unlink()
            elif seen + count > n_rows:
                table = pq.read_table(part).slice(0, n_rows - seen)
                tmp = part.with_name(f".{part.name}.tmp")
                pq.write_table(table, tmp)
                os.replace(tmp, part)
            seen += count
        if seen < n_rows:
            raise ValueError(
                f"Cannot truncate {str(directory)!r} to {n_rows} rows: its parts hold only {seen}."
            )


__all__ = [
    "ParquetRowWriter",
    "conform_table",
    "consolidate_parts",
    "list_parts",
    "read_parquet_parts",
    "rows_to_table",
    "unify_tables",
]

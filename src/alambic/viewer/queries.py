"""What the viewer's pages ask of a source: filtered pages, a row's lineage, failures, diffs."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from alambic.errors import METADATA_COLUMN, row_errors
from alambic.viewer.sources import Row, Source, failure_kinds

METADATA = METADATA_COLUMN
EXAMPLES = 3


def jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (str, int, bool)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    tolist = getattr(value, "tolist", None)
    if callable(tolist):
        return jsonable(tolist())
    return repr(value)


def matches(row: Row, column: str | None, value: str | None, failure: str | None) -> bool:
    if failure:
        kinds = failure_kinds(row)
        if failure == "none":
            if kinds:
                return False
        elif failure == "any":
            if not kinds:
                return False
        elif failure not in kinds:
            return False
    if column and value is not None and value != "":
        cell = row.get(column)
        text = cell if isinstance(cell, str) else str(jsonable(cell))
        if value.lower() not in text.lower():
            return False
    return True


def rows_page(
    source: Source,
    step: str,
    offset: int,
    limit: int,
    column: str | None = None,
    value: str | None = None,
    failure: str | None = None,
) -> dict[str, Any]:
    """One page of a step's rows, each with its index; with filters, the scan streams."""
    filtered = bool(failure) or bool(column and value)
    if not filtered:
        total = source.count(step)
        rows = source.page(step, offset, limit)
        indexed = list(enumerate(rows, start=offset))
    else:
        indexed, total = [], 0
        for i, row in enumerate(source.scan(step)):
            if matches(row, column, value, failure):
                if offset <= total < offset + limit:
                    indexed.append((i, row))
                total += 1
    columns: list[str] = []
    for _, row in indexed:
        columns += [c for c in row if c not in columns]
    return {
        "step": step,
        "offset": offset,
        "limit": limit,
        "total": total,
        "columns": columns,
        "rows": [
            {"index": i, "failed": bool(row_errors(r)), "values": jsonable(r)} for i, r in indexed
        ],
    }


def lineage(source: Source, step: str, index: int) -> dict[str, Any]:
    """The row ``index`` of ``step`` and, at the same position, of every step upstream with as
    many rows (a filter or an expansion upstream breaks the alignment: those steps are listed
    in ``not_aligned``); plus each LLM call recorded in the row's metadata (prompt, raw
    output, tokens, error...), which the row carries from every task it went through."""
    rows = source.page(step, index, 1)
    if not rows:
        return {"step": step, "index": index, "stages": [], "calls": []}
    row = rows[0]
    stages = []
    skipped = []
    count = source.count(step)
    for name in source.ancestors(step):
        if name != step and source.count(name) != count:
            skipped.append(name)  # not one row per row: a position would name another row
            continue
        at = row if name == step else next(iter(source.page(name, index, 1)), None)
        if at is None:
            continue
        stages.append(
            {"step": name, "values": jsonable({k: v for k, v in at.items() if k != METADATA})}
        )
    meta = row.get(METADATA) if isinstance(row.get(METADATA), dict) else {}
    calls: dict[str, dict[str, Any]] = {}
    for key, value in (meta or {}).items():
        for prefix in (
            "raw_input_",
            "raw_output_",
            "statistics_",
            "error_",
            "latency_",
            "retries_",
        ):
            if key.startswith(prefix):
                calls.setdefault(key[len(prefix) :], {})[prefix.rstrip("_")] = jsonable(value)
                break
        else:
            calls.setdefault("other", {})[key] = jsonable(value)
    return {
        "step": step,
        "index": index,
        "aligned_by_position": len(stages) > 1,
        "not_aligned": skipped,
        "stages": stages,
        "calls": [{"name": k, **v} for k, v in calls.items()],
        "errors": jsonable(row_errors(row)),
    }


def failures(source: Source, step: str) -> dict[str, Any]:
    """Failed rows grouped by (where, kind, message) with counts and example indices."""
    groups: dict[tuple[str, str, str], dict[str, Any]] = {}
    total = 0
    for i, row in enumerate(source.scan(step)):
        errors = row_errors(row)
        if errors:
            total += 1
        for where, error in errors.items():
            info = error if isinstance(error, dict) else {"message": str(error)}
            key = (where, str(info.get("kind", "unknown")), str(info.get("message", ""))[:200])
            group = groups.setdefault(
                key,
                {
                    "where": key[0],
                    "kind": key[1],
                    "type": str(info.get("type", "")),
                    "message": key[2],
                    "count": 0,
                    "examples": [],
                },
            )
            group["count"] += 1
            if len(group["examples"]) < EXAMPLES:
                group["examples"].append(i)
    ordered = sorted(groups.values(), key=lambda g: -g["count"])
    return {"step": step, "failed_rows": total, "groups": ordered}


def failure_kind_counts(source: Source, step: str) -> dict[str, int]:
    counts: Counter[str] = Counter()
    for row in source.scan(step):
        counts.update(failure_kinds(row))
    return dict(counts)


def diff(a: Source, b: Source, step: str, limit: int = 50) -> dict[str, Any]:
    """Rows of ``step`` in ``a`` and ``b`` compared by position: added, removed, changed."""
    changed_per_column: Counter[str] = Counter()
    examples: list[dict[str, Any]] = []
    changed_rows = 0
    n_a = n_b = 0
    it_a, it_b = a.scan(step), b.scan(step)
    while True:
        ra, rb = next(it_a, None), next(it_b, None)
        if ra is None and rb is None:
            break
        if ra is not None:
            n_a += 1
        if rb is not None:
            n_b += 1
        if ra is None or rb is None:
            continue
        columns = [c for c in dict.fromkeys([*ra, *rb]) if c != METADATA]
        changes = {c: (ra.get(c), rb.get(c)) for c in columns if ra.get(c) != rb.get(c)}
        if changes:
            changed_rows += 1
            changed_per_column.update(changes)
            if len(examples) < limit:
                examples.append(
                    {
                        "index": n_a - 1,
                        "changes": [
                            {"column": c, "before": jsonable(x), "after": jsonable(y)}
                            for c, (x, y) in changes.items()
                        ],
                    }
                )
    return {
        "step": step,
        "a": a.label,
        "b": b.label,
        "rows_a": n_a,
        "rows_b": n_b,
        "added": max(0, n_b - n_a),
        "removed": max(0, n_a - n_b),
        "changed_rows": changed_rows,
        "changed_per_column": dict(changed_per_column),
        "examples": examples,
    }

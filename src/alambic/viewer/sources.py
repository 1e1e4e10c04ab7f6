"""Where the viewer reads rows: a run in the run store, or a Distiset saved to a folder.

Both read a page at a time (the store by its units, a Distiset through memory-mapped Arrow
files), and scans stream, so a run of 100,000 rows is never held in memory at once.
"""

from __future__ import annotations

import bisect
import contextlib
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import yaml

from alambic.errors import AlambicUserError, StoreError, row_errors
from alambic.pipeline.runs import STORE_FILENAME

Row = dict[str, Any]


class ViewerError(AlambicUserError):
    """The viewer cannot find or read what it was asked to show."""


class Source(Protocol):
    label: str
    pipeline_name: str

    def steps(self) -> list[str]: ...

    def count(self, step: str) -> int: ...

    def page(self, step: str, offset: int, limit: int) -> list[Row]: ...

    def scan(self, step: str) -> Iterator[Row]: ...

    def ancestors(self, step: str) -> list[str]: ...

    def timeline(self, step: str) -> list[tuple[float, int]]: ...


@dataclass
class _Unit:
    starts: list[int]
    seqs: list[int]
    times: list[float]
    total: int


class RunSource:
    """A pipeline definition's store folder (``<cache>/pipelines/<name>-<sig>``), one run of it."""

    def __init__(self, folder: Path, run_id: int | None = None) -> None:
        self.folder = folder
        self.path = folder / STORE_FILENAME
        with self._connect() as conn:
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
            runs = [r[0] for r in conn.execute("SELECT id FROM runs ORDER BY id")]
            if run_id is None and runs:
                run_id = runs[-1]
            pairs = conn.execute(
                "SELECT sig, name FROM run_steps WHERE run_id = ? ORDER BY position", (run_id,)
            ).fetchall()
            if not pairs:
                pairs = conn.execute("SELECT sig, name FROM steps ORDER BY name").fetchall()
        self.run_id = run_id
        self.pipeline_name = str(meta.get("pipeline_name", folder.name))
        self.signature = str(meta.get("pipeline_signature", ""))
        self.pipeline_yaml = str(meta.get("pipeline_yaml", ""))
        self.label = f"{self.pipeline_name} {self.signature[:8]}/{run_id}"
        self._sigs: dict[str, str] = {str(name): str(sig) for sig, name in pairs}
        self._graph = _graph(self.pipeline_yaml)[1]
        self._units: dict[str, _Unit] = {}

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        try:
            conn = sqlite3.connect(f"{self.path.as_uri()}?mode=ro", uri=True, timeout=30)
        except sqlite3.Error as exc:
            raise StoreError(f"Cannot open the run store {self.path}: {exc}") from exc
        try:
            yield conn
        finally:
            conn.close()

    def steps(self) -> list[str]:
        order = [s for s in self._graph if s in self._sigs]
        return order + [s for s in self._sigs if s not in order]

    def _sig(self, step: str) -> str:
        try:
            return self._sigs[step]
        except KeyError:
            raise ViewerError(f"No step {step!r} in {self.label}; steps: {self.steps()}") from None

    def _index(self, step: str) -> _Unit:
        if step not in self._units:
            starts, seqs, times, total = [], [], [], 0
            with self._connect() as conn:
                for seq, n, at in conn.execute(
                    "SELECT seq, n_rows, committed_at FROM units WHERE sig = ? ORDER BY seq",
                    (self._sig(step),),
                ):
                    starts.append(total)
                    seqs.append(seq)
                    times.append(at)
                    total += n
            self._units[step] = _Unit(starts, seqs, times, total)
        return self._units[step]

    def count(self, step: str) -> int:
        return self._index(step).total

    def _decode(self, step: str, seqs: list[int]) -> list[list[Row]]:
        from alambic.pipeline.store.run_store import decode_rows

        sig = self._sig(step)
        with self._connect() as conn:
            return [
                decode_rows(
                    conn.execute(
                        "SELECT data FROM units WHERE sig = ? AND seq = ?", (sig, seq)
                    ).fetchone()[0]
                )
                for seq in seqs
            ]

    def page(self, step: str, offset: int, limit: int) -> list[Row]:
        index = self._index(step)
        if offset >= index.total or limit <= 0:
            return []
        first = bisect.bisect_right(index.starts, offset) - 1
        last = bisect.bisect_right(index.starts, min(offset + limit, index.total) - 1) - 1
        rows: list[Row] = []
        for batch in self._decode(step, index.seqs[first : last + 1]):
            rows.extend(batch)
        skip = offset - index.starts[first]
        return rows[skip : skip + limit]

    def scan(self, step: str) -> Iterator[Row]:
        from alambic.pipeline.store.run_store import decode_rows

        sig = self._sig(step)
        with self._connect() as conn:
            for (blob,) in conn.execute(
                "SELECT data FROM units WHERE sig = ? ORDER BY seq", (sig,)
            ):
                yield from decode_rows(blob)

    def ancestors(self, step: str) -> list[str]:
        return _ancestors(self._graph, step)

    def timeline(self, step: str) -> list[tuple[float, int]]:
        index = self._index(step)
        counts = [*index.starts[1:], index.total]
        return list(zip(index.times, counts, strict=True))


class DistisetSource:
    """A folder written by ``Distiset.save_to_disk``: one table per leaf (its ``train`` split)."""

    def __init__(self, folder: Path) -> None:
        import datasets

        self.folder = folder
        self._data: dict[str, Any] = {}
        for child in sorted(folder.iterdir()):
            if (child / "dataset_dict.json").is_file():
                dd = datasets.load_from_disk(str(child))  # memory-mapped Arrow files
                for split, ds in dd.items():
                    key = child.name if split == "train" else f"{child.name}:{split}"
                    self._data[key] = ds
        if not self._data:
            raise ViewerError(
                f"{folder} holds no dataset saved by Distiset.save_to_disk (no "
                "<leaf>/dataset_dict.json). Give a Distiset folder or a run (alambic runs list)."
            )
        yaml_file = folder / "pipeline.yaml"
        self.pipeline_yaml = yaml_file.read_text(encoding="utf-8") if yaml_file.is_file() else ""
        self.pipeline_name = _graph(self.pipeline_yaml)[0] or folder.name
        self.label = f"{folder.name} (Distiset)"

    def steps(self) -> list[str]:
        return list(self._data)

    def _ds(self, step: str) -> Any:
        try:
            return self._data[step]
        except KeyError:
            raise ViewerError(
                f"No leaf {step!r} in {self.folder}; leaves: {self.steps()}"
            ) from None

    def count(self, step: str) -> int:
        return len(self._ds(step))

    def page(self, step: str, offset: int, limit: int) -> list[Row]:
        ds = self._ds(step)
        if offset >= len(ds) or limit <= 0:
            return []
        chunk = ds[offset : offset + limit]
        return [
            dict(zip(chunk, values, strict=True)) for values in zip(*chunk.values(), strict=True)
        ]

    def scan(self, step: str) -> Iterator[Row]:
        ds = self._ds(step)
        for start in range(0, len(ds), 1000):
            yield from self.page(step, start, 1000)

    def ancestors(self, step: str) -> list[str]:
        return [step]

    def timeline(self, step: str) -> list[tuple[float, int]]:
        return []


def _graph(pipeline_yaml: str) -> tuple[str | None, dict[str, list[str]]]:
    """The pipeline's name and step name -> predecessors, in the order the YAML lists steps."""
    try:
        data: Any = yaml.safe_load(pipeline_yaml) if pipeline_yaml else None
        steps = data["pipeline"]["steps"]
        name = str(data["pipeline"].get("name", ""))
    except (yaml.YAMLError, KeyError, TypeError, AttributeError):
        return None, {}
    graph: dict[str, list[str]] = {str(s["name"]): [] for s in steps}
    for s in steps:
        for succ in s.get("connections") or []:
            graph.setdefault(str(succ), []).append(str(s["name"]))
    return name, graph


def _ancestors(graph: dict[str, list[str]], step: str) -> list[str]:
    """``step`` and everything upstream of it, roots first (following first predecessors)."""
    chain = [step]
    seen = {step}
    while graph.get(chain[0]):
        pred = next((p for p in graph[chain[0]] if p not in seen), None)
        if pred is None:
            break
        chain.insert(0, pred)
        seen.add(pred)
    return chain


def failure_kinds(row: Row) -> list[str]:
    return [
        str(e.get("kind", "unknown")) if isinstance(e, dict) else "unknown"
        for e in row_errors(row).values()
    ]


def open_target(target: str | None, *, cache_dir: Path | None = None) -> Source:
    """What ``alambic view TARGET`` shows: a Distiset folder, a store folder, or a run as
    ``alambic runs list`` prints it (DEFINITION/RUN, a definition id, a pipeline name);
    nothing: the latest run in the cache."""
    from alambic.pipeline.runs import list_runs, show_run

    if target is not None:
        path = Path(target)
        if path.is_dir():
            if (path / STORE_FILENAME).is_file():
                return RunSource(path)
            return DistisetSource(path)
        details = show_run(target, cache_dir=cache_dir)
        return RunSource(details.run.path, details.run.run_id)
    runs = [r for r in list_runs(cache_dir) if r.status != "unreadable"]
    if not runs:
        raise ViewerError(
            "No stored run to show: run a pipeline first, or give a Distiset folder "
            "(alambic view DATASET_FOLDER)."
        )
    latest = max(runs, key=lambda r: (r.started_at is not None, r.started_at, r.run_id))
    return RunSource(latest.path, latest.run_id)


def sibling_runs(source: Source, *, cache_dir: Path | None = None) -> dict[str, Source]:
    """The latest run of every other definition of ``source``'s pipeline (to diff with)."""
    from alambic.pipeline.runs import list_runs

    if not isinstance(source, RunSource):
        return {}
    latest: dict[Path, Any] = {}
    for run in list_runs(cache_dir):
        if run.pipeline_name != source.pipeline_name or run.path == source.folder:
            continue
        if run.status == "unreadable":
            continue
        if run.path not in latest or run.run_id > latest[run.path].run_id:
            latest[run.path] = run
    siblings: dict[str, Source] = {}
    for run in latest.values():
        other = RunSource(run.path, run.run_id)
        siblings[other.label] = other
    return siblings

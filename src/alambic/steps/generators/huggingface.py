"""Loading rows with Hugging Face ``datasets``: from the Hub, from disk, from local files.

All three read a ``datasets.Dataset`` (or an ``IterableDataset`` when streaming) in ``load()``
and produce its rows in batches of ``batch_size``. Their output columns come from the dataset's
features, so they are known only once the dataset is opened: the pipeline opens it when it asks
for the columns, and ``output_mappings`` are checked then. A resumed run starts at row ``offset``
by slicing (or ``skip`` when streaming), without reading the rows before it.

``datasets`` is imported only when a loader is loaded.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field, PositiveInt, PrivateAttr

from alambic.errors import AlambicUserError
from alambic.runtime_parameters import RuntimeParameter
from alambic.steps.base import GeneratorStep
from alambic.steps.typing import GeneratorOutput, Row, StepColumns
from alambic.utils.imports import require


def _datasets() -> Any:
    return require("datasets", feature="Loading data with Hugging Face datasets", extra="hf")


class _DatasetLoader(GeneratorStep):
    """Shared by the loaders: open a dataset once, then slice it into batches."""

    num_examples: RuntimeParameter[PositiveInt] = Field(
        default=None, description="Produce at most this many rows (all when unset)."
    )

    _runs_inline: ClassVar[bool] = False
    applies_output_mappings: ClassVar[bool] = True
    _dataset: Any = PrivateAttr(default=None)
    _columns: list[str] | None = PrivateAttr(default=None)

    def _open(self) -> Any:
        """Return the ``Dataset`` or ``IterableDataset`` to read."""
        raise NotImplementedError

    def _ensure_open(self) -> Any:
        if self._dataset is None:
            self._dataset = self._open()
            features = getattr(self._dataset, "features", None)
            if features is not None:
                self._columns = list(features)
            else:  # a streamed dataset without declared features: peek at its first row
                first = next(iter(self._dataset.take(1)), None)
                self._columns = list(first) if first else []
        return self._dataset

    @property
    def outputs(self) -> StepColumns:
        if self._columns is None:
            self._ensure_open()
        return list(self._columns or [])

    def _validate_mappings(self) -> None:
        # Columns are known only once the dataset is opened; load() checks the mappings.
        if self._columns is not None:
            super()._validate_mappings()

    def load(self) -> None:
        super().load()
        self._ensure_open()
        self.check_mappings(self.own_inputs(), self.own_outputs())

    def unload(self) -> None:
        self._dataset = None
        super().unload()

    def _rename(self, row: Row) -> Row:
        mappings = self.output_mappings
        if not mappings:
            return row
        return {mappings.get(k, k): v for k, v in row.items()}

    def process(self, offset: int = 0) -> GeneratorOutput:
        dataset = self._ensure_open()
        size = self.batch_size or 50
        if hasattr(dataset, "__len__"):
            yield from self._process_sliced(dataset, offset, size)
        else:
            yield from self._process_streamed(dataset, offset, size)

    def _process_sliced(self, dataset: Any, offset: int, size: int) -> GeneratorOutput:
        total = len(dataset)
        if self.num_examples is not None:
            total = min(total, self.num_examples)
        if offset >= total:
            yield [], True
            return
        for start in range(offset, total, size):
            stop = min(start + size, total)
            columns: dict[str, list[Any]] = dataset[start:stop]
            names = list(columns)
            rows = [
                self._rename(dict(zip(names, values, strict=True)))
                for values in zip(*columns.values(), strict=True)
            ]
            yield rows, stop >= total

    def _process_streamed(self, dataset: Any, offset: int, size: int) -> GeneratorOutput:
        limit = self.num_examples
        if limit is not None and offset >= limit:
            yield [], True
            return
        stream: Iterator[Row] = iter(dataset.skip(offset) if offset else dataset)
        produced = offset
        batch: list[Row] = []
        for row in stream:
            batch.append(self._rename(dict(row)))
            produced += 1
            if limit is not None and produced >= limit:
                yield batch, True
                return
            if len(batch) == size:
                yield batch, False
                batch = []
        yield batch, True


class LoadDataFromHub(_DatasetLoader):
    """Rows of a dataset repository on the Hugging Face Hub (``datasets.load_dataset``).

    ``streaming=True`` reads rows as they download instead of fetching the whole split first,
    the way to take ``num_examples`` rows of a large dataset. Private repos need ``HF_TOKEN``.
    """

    repo_id: RuntimeParameter[str] = Field(
        default=None, description="Dataset repository on the Hub, e.g. 'org/name'."
    )
    split: RuntimeParameter[str] = Field(default="train", description="Split to read.")
    config: RuntimeParameter[str] = Field(
        default=None, description="Configuration (subset) of the dataset, if it has several."
    )
    revision: RuntimeParameter[str] = Field(
        default=None, description="Branch, tag or commit of the repository."
    )
    streaming: RuntimeParameter[bool] = Field(
        default=False, description="Stream rows instead of downloading the split first."
    )
    storage_options: dict[str, Any] | None = Field(
        default=None, description="Passed to fsspec by datasets (advanced)."
    )
    cache_dir: str | None = Field(
        default=None, description="Where datasets keeps downloads (default: its cache)."
    )

    def _open(self) -> Any:
        if not self.repo_id:
            raise AlambicUserError(
                f"Step {self.name!r} (LoadDataFromHub) has no repo_id: pass repo_id='org/name' "
                "or set it with run(parameters={...: {'repo_id': ...}})."
            )
        datasets = _datasets()
        return datasets.load_dataset(
            self.repo_id,
            name=self.config,
            split=self.split,
            revision=self.revision,
            streaming=bool(self.streaming),
            storage_options=self.storage_options,
            cache_dir=self.cache_dir,
        )


class LoadDataFromDisk(_DatasetLoader):
    """Rows of a dataset saved with ``save_to_disk`` (a ``Dataset``, a ``DatasetDict`` or, with
    ``is_distiset=True``, a ``Distiset`` from an earlier run, whose ``config`` is a leaf)."""

    dataset_path: RuntimeParameter[str | Path] = Field(
        default=None, description="Folder given to save_to_disk."
    )
    split: RuntimeParameter[str] = Field(
        default=None, description="Split of a DatasetDict (needed when it has several)."
    )
    config: RuntimeParameter[str] = Field(
        default=None, description="Leaf of a Distiset (needed when it has several)."
    )
    is_distiset: bool = Field(default=False, description="The folder holds a saved Distiset.")
    keep_in_memory: bool | None = Field(default=None, description="Copy into memory.")

    def _open(self) -> Any:
        if self.dataset_path is None:
            raise AlambicUserError(
                f"Step {self.name!r} (LoadDataFromDisk) has no dataset_path: pass the folder "
                "written by save_to_disk()."
            )
        path = Path(self.dataset_path)
        if not path.exists():
            raise FileNotFoundError(
                f"Step {self.name!r} (LoadDataFromDisk): {str(path)!r} does not exist. Pass the "
                "folder given to Dataset.save_to_disk() or Distiset.save_to_disk()."
            )
        if self.is_distiset:
            from alambic.distiset import Distiset

            distiset = Distiset.load_from_disk(path, keep_in_memory=self.keep_in_memory)
            dataset_dict = _pick(distiset, self.config, "config (leaf)", self.name, path)
            return _pick(dataset_dict, self.split, "split", self.name, path)
        datasets = _datasets()
        try:
            loaded = datasets.load_from_disk(str(path), keep_in_memory=self.keep_in_memory)
        except FileNotFoundError as exc:
            hint = (
                " It looks like a saved Distiset: pass is_distiset=True."
                if any((p / "dataset_dict.json").is_file() for p in path.iterdir() if p.is_dir())
                else ""
            )
            raise FileNotFoundError(
                f"Step {self.name!r} (LoadDataFromDisk): {str(path)!r} is not a dataset saved "
                f"with save_to_disk ({exc}).{hint}"
            ) from exc
        if isinstance(loaded, datasets.DatasetDict):
            return _pick(loaded, self.split, "split", self.name, path)
        return loaded


def _pick(mapping: Any, key: str | None, what: str, step: str | None, path: Path) -> Any:
    keys = list(mapping)
    if key is None:
        if len(keys) == 1:
            return mapping[keys[0]]
        raise AlambicUserError(
            f"Step {step!r}: {str(path)!r} has several {what}s {keys}; choose one with "
            f"{what.split()[0]}=..."
        )
    if key not in mapping:
        raise AlambicUserError(
            f"Step {step!r}: {str(path)!r} has no {what} {key!r}; it has {keys}."
        )
    return mapping[key]


FILETYPES: dict[str, str] = {
    ".json": "json",
    ".jsonl": "json",
    ".ndjson": "json",
    ".csv": "csv",
    ".parquet": "parquet",
}
"""File extension -> the ``datasets`` builder that reads it."""


class LoadDataFromFileSystem(_DatasetLoader):
    """Rows of local JSON, JSON Lines, CSV or parquet files.

    ``data_files`` is a path, a glob (``data/*.jsonl``, ``data/**/*.parquet``), a folder (all
    its files of one known type) or a list of those; files are read in sorted order. The type
    comes from the extension unless ``filetype`` says it (``json``, ``jsonl``, ``csv`` or
    ``parquet``).
    """

    data_files: RuntimeParameter[str | Path | list[str | Path]] = Field(
        default=None, description="Path, glob, folder or list of them."
    )
    filetype: RuntimeParameter[str] = Field(
        default=None, description="json, jsonl, csv or parquet (default: from the extension)."
    )
    split: str = Field(default="train", description="Split name given to the rows.")
    cache_dir: str | None = Field(
        default=None, description="Where datasets keeps its Arrow copy (default: its cache)."
    )

    def resolve_files(self) -> list[str]:
        """The files ``data_files`` names, sorted; an error names what matched nothing."""
        if self.data_files is None:
            raise AlambicUserError(
                f"Step {self.name!r} (LoadDataFromFileSystem) has no data_files: pass a path, "
                "a glob such as 'data/*.jsonl', or a list of them."
            )
        specs = self.data_files if isinstance(self.data_files, list) else [self.data_files]
        files: list[str] = []
        for spec in specs:
            text = str(spec)
            if glob.has_magic(text):
                matches = sorted(p for p in glob.glob(text, recursive=True) if os.path.isfile(p))
                if not matches:
                    parent = _existing_parent(Path(text))
                    raise FileNotFoundError(
                        f"Step {self.name!r}: the glob {text!r} matches no file. {_listing(parent)}"
                    )
                files.extend(matches)
            elif os.path.isdir(text):
                matches = sorted(
                    str(p) for p in Path(text).rglob("*") if p.is_file() and p.suffix in FILETYPES
                )
                if not matches:
                    raise FileNotFoundError(
                        f"Step {self.name!r}: the folder {text!r} holds no file ending in "
                        f"{sorted(FILETYPES)}. {_listing(Path(text))}"
                    )
                files.extend(matches)
            elif os.path.isfile(text):
                files.append(text)
            else:
                raise FileNotFoundError(
                    f"Step {self.name!r}: no file {text!r}. {_listing(_existing_parent(Path(text)))}"
                )
        return files

    def resolve_filetype(self, files: list[str]) -> str:
        """The ``datasets`` builder for ``files`` (from ``filetype`` or the extensions)."""
        if self.filetype is not None:
            kind = self.filetype.lower().lstrip(".")
            builder = FILETYPES.get(f".{kind}")
            if builder is None:
                raise AlambicUserError(
                    f"Step {self.name!r}: unknown filetype {self.filetype!r}; use one of "
                    "'json', 'jsonl', 'csv', 'parquet'."
                )
            return builder
        builders = {FILETYPES.get(Path(f).suffix.lower()) for f in files}
        if None in builders:
            unknown = sorted(
                {Path(f).suffix or f for f in files if Path(f).suffix.lower() not in FILETYPES}
            )
            raise AlambicUserError(
                f"Step {self.name!r}: cannot tell the type of {unknown} from the extension; "
                f"known extensions are {sorted(FILETYPES)}. Pass filetype='json' (or 'jsonl', "
                "'csv', 'parquet')."
            )
        if len(builders) > 1:
            raise AlambicUserError(
                f"Step {self.name!r}: data_files mixes file types {sorted(b for b in builders if b)}; "
                "use one LoadDataFromFileSystem per type."
            )
        (builder,) = builders
        assert builder is not None
        return builder

    def _open(self) -> Any:
        files = self.resolve_files()
        builder = self.resolve_filetype(files)
        datasets = _datasets()
        return datasets.load_dataset(
            builder, data_files={self.split: files}, split=self.split, cache_dir=self.cache_dir
        )


def _existing_parent(path: Path) -> Path:
    for parent in [path, *path.parents]:
        if parent.is_dir() and not glob.has_magic(str(parent)):
            return parent
    return Path(".")


def _listing(folder: Path, limit: int = 20) -> str:
    try:
        names = sorted(p.name for p in folder.iterdir())
    except OSError:
        return ""
    shown = names[:limit] + (["..."] if len(names) > limit else [])
    return f"{str(folder)!r} holds {shown}."


__all__ = ["FILETYPES", "LoadDataFromDisk", "LoadDataFromFileSystem", "LoadDataFromHub"]

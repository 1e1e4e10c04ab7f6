"""``Distiset``: what a pipeline run returns, one Hugging Face ``DatasetDict`` per leaf step.

A pipeline with a single leaf step gives ``{"default": DatasetDict({"train": ...})}``; with
several leaves each one is a key named after its step, so a run that generates and judges in two
branches gives two datasets. A ``Distiset`` keeps the serialized pipeline (secrets masked) that
produced it, saves to and loads from disk, and pushes to the Hub as one dataset config per leaf,
with a generated dataset card and ``pipeline.yaml``.

The ``alambic_metadata`` column (raw prompts and replies, token counts, errors of each task) is
kept by default; ``keep_metadata=False`` / ``include_metadata=False`` drops it, and
``with_metadata_column("distilabel_metadata")`` renames it for tools that read distilabel's name.

distilabel's layout is understood too: a leaf may be a plain ``datasets.Dataset`` (a split
called ``train`` wherever a split is needed), ``train_test_split`` turns each leaf into
``train``/``test``, and ``save_to_disk`` also writes the ``distiset_configs/`` folder
(``pipeline.yaml``, ``pipeline.log``) and ``artifacts/`` that distilabel writes, so either
tool's ``load_from_disk`` reads the other's folders.

``datasets`` is imported only when a ``Distiset`` is built.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from alambic.errors import METADATA_COLUMN
from alambic.utils.imports import require

DEFAULT_LEAF = "default"
DEFAULT_SPLIT = "train"
PIPELINE_FILENAME = "pipeline.yaml"
CARD_FILENAME = "README.md"
ARROW_FILENAME = "dataset.arrow"
"""What ``from_parquet`` writes beside the parts of a leaf, to memory-map it."""
DISTISET_CONFIG_FOLDER = "distiset_configs"
"""distilabel's folder for the pipeline's YAML and log, beside the leaves."""
DISTISET_ARTIFACTS_FOLDER = "artifacts"
"""Where steps' artifacts are saved: ``artifacts/<step name>/<artifact name>/``."""
PIPELINE_CONFIG_FILENAME = PIPELINE_FILENAME
PIPELINE_LOG_FILENAME = "pipeline.log"
_NOT_LEAVES = frozenset({DISTISET_CONFIG_FOLDER, DISTISET_ARTIFACTS_FOLDER})


def _datasets() -> Any:
    return require("datasets", feature="Distiset", extra="hf")


class Distiset(dict[str, Any]):
    """Leaf step name -> ``datasets.DatasetDict``, plus the pipeline that produced them.

    Index it like a dict: ``distiset["default"]["train"]`` is a ``datasets.Dataset``.
    """

    def __init__(
        self, data: Mapping[str, Any] | None = None, *, pipeline_yaml: str | None = None
    ) -> None:
        super().__init__(data or {})
        self.pipeline_yaml = pipeline_yaml
        """The pipeline's YAML definition (secrets masked), or ``None`` if unknown."""
        self.spend: dict[str, dict[str, Any]] | None = None
        """Per ``"step (model)"``: requests, tokens and USD the run spent (see docs/cost.md)."""
        self.pipeline_path: Path | None = None
        """The saved ``pipeline.yaml`` this Distiset was loaded with, if any (distilabel's name)."""
        self.log_filename_path: Path | None = None
        """The run's log file, copied by ``save_to_disk(save_pipeline_log=True)``."""
        self.artifacts_path: Path | None = None
        """The folder of steps' artifacts (``<step>/<artifact>/``), copied by ``save_to_disk``."""

    def _copy_paths(self, other: Distiset) -> Distiset:
        other.pipeline_path = self.pipeline_path
        other.log_filename_path = self.log_filename_path
        other.artifacts_path = self.artifacts_path
        other.spend = self.spend
        return other

    def splits(self, leaf: str) -> dict[str, Any]:
        """``{split: Dataset}`` of a leaf; a plain ``Dataset`` leaf is the split ``train``."""
        value = self[leaf]
        if hasattr(value, "column_names") and not isinstance(value, dict):
            return {DEFAULT_SPLIT: value}
        return dict(value)

    def train_test_split(
        self,
        train_size: float,
        shuffle: bool = True,
        seed: int | None = None,
    ) -> Distiset:
        """Each leaf split into ``train`` (``train_size``, a fraction) and ``test``.

        The ``train`` split of a leaf (or the leaf itself, if it is a plain ``Dataset``) is
        split with ``datasets.Dataset.train_test_split``; pass ``seed`` for the same split
        every time.
        """
        datasets = _datasets()
        data = {}
        for leaf in self:
            splits = self.splits(leaf)
            source = splits.get(DEFAULT_SPLIT)
            if source is None:
                source = next(iter(splits.values()))
            data[leaf] = datasets.DatasetDict(
                source.train_test_split(train_size=train_size, shuffle=shuffle, seed=seed)
            )
        return self._copy_paths(Distiset(data, pipeline_yaml=self.pipeline_yaml))

    def with_metadata_column(self, name: str) -> Distiset:
        """A copy whose ``alambic_metadata`` column is called ``name`` (e.g.
        ``"distilabel_metadata"``, for downstream tools that read distilabel's column)."""
        data = {}
        for leaf, value in self.items():
            if hasattr(value, "column_names") and not isinstance(value, dict):
                data[leaf] = _rename(value, name)
            else:
                datasets = _datasets()
                data[leaf] = datasets.DatasetDict({s: _rename(d, name) for s, d in value.items()})
        return self._copy_paths(Distiset(data, pipeline_yaml=self.pipeline_yaml))

    # -- building ----------------------------------------------------------------------------

    @classmethod
    def from_parquet(
        cls,
        dirs: Mapping[str, str | os.PathLike[str]],
        pipeline_yaml: str | None = None,
        keep_metadata: bool = True,
        *,
        split: str = DEFAULT_SPLIT,
        in_memory: bool = False,
    ) -> Distiset:
        """Build from leaf step name -> folder of parquet parts written by ``ParquetRowWriter``.

        A single leaf is named ``default``. Parts whose schemas drifted (a column ``None`` early,
        metadata keys only on some rows) are unified into one table per leaf. Unless
        ``in_memory``, the rows are consolidated into ``<folder>/dataset.arrow`` one part at a
        time and memory-mapped, so building the result of a large run takes little memory.
        """
        from alambic.utils.images import cast_image_columns
        from alambic.utils.parquet import consolidate_parts, list_parts, read_parquet_parts

        datasets = _datasets()
        single = len(dirs) == 1
        drop = [] if keep_metadata else [METADATA_COLUMN]
        data: dict[str, Any] = {}
        for leaf, directory in dirs.items():
            named_split = datasets.NamedSplit(split)
            if in_memory or not list_parts(directory):
                table = read_parquet_parts(directory)
                table = table.drop_columns([c for c in drop if c in table.column_names])
                dataset = datasets.Dataset(table, split=named_split)
            else:
                arrow = consolidate_parts(
                    directory, Path(directory) / ARROW_FILENAME, drop_columns=drop
                )
                dataset = datasets.Dataset.from_file(str(arrow), split=named_split)
            dataset = cast_image_columns(dataset)
            data[DEFAULT_LEAF if single else leaf] = datasets.DatasetDict({split: dataset})
        return cls(data, pipeline_yaml=pipeline_yaml)

    @classmethod
    def from_rows(
        cls,
        leaves: Mapping[str, list[dict[str, Any]]],
        pipeline_yaml: str | None = None,
        *,
        split: str = DEFAULT_SPLIT,
    ) -> Distiset:
        """Build from leaf name -> rows held in memory (for tests and small runs)."""
        from alambic.utils.images import cast_image_columns
        from alambic.utils.parquet import rows_to_table

        datasets = _datasets()
        single = len(leaves) == 1
        data = {
            (DEFAULT_LEAF if single else leaf): datasets.DatasetDict(
                {
                    split: cast_image_columns(
                        datasets.Dataset(rows_to_table(rows), split=datasets.NamedSplit(split))
                    )
                }
            )
            for leaf, rows in leaves.items()
        }
        return cls(data, pipeline_yaml=pipeline_yaml)

    def without_metadata(self) -> Distiset:
        """A copy without the ``alambic_metadata`` column."""
        datasets = _datasets()
        data = {}
        for leaf in self:
            data[leaf] = datasets.DatasetDict(
                {
                    split: ds.remove_columns([METADATA_COLUMN])
                    if METADATA_COLUMN in ds.column_names
                    else ds
                    for split, ds in self.splits(leaf).items()
                }
            )
        return self._copy_paths(Distiset(data, pipeline_yaml=self.pipeline_yaml))

    # -- disk --------------------------------------------------------------------------------

    def save_to_disk(
        self,
        path: str | os.PathLike[str],
        *,
        save_card: bool = True,
        save_pipeline_config: bool = True,
        save_pipeline_log: bool = True,
        max_shard_size: str | int | None = None,
        num_proc: int | None = None,
        storage_options: dict[str, Any] | None = None,
    ) -> Path:
        """Write each leaf as ``<path>/<leaf>/`` (``save_to_disk`` of its ``DatasetDict``, or of
        a plain ``Dataset``), the card (``README.md``) and ``pipeline.yaml``; with a pipeline
        or a log, also distilabel's ``distiset_configs/`` (``pipeline.yaml``, ``pipeline.log``),
        and the ``artifacts/`` folder when there are artifacts. ``Distiset.load_from_disk``
        (alambic's or distilabel's) reads it back. ``storage_options`` is accepted for
        distilabel's signature; only local folders are supported.
        """
        if storage_options:
            raise ValueError(
                f"Distiset.save_to_disk writes to local folders only; storage_options="
                f"{sorted(storage_options)} is not supported. Save locally, then upload."
            )
        root = Path(path)
        root.mkdir(parents=True, exist_ok=True)
        for leaf, dataset in self.items():
            dataset.save_to_disk(str(root / leaf), max_shard_size=max_shard_size, num_proc=num_proc)
        configs = root / DISTISET_CONFIG_FOLDER
        if save_pipeline_config and self.pipeline_yaml is not None:
            (root / PIPELINE_FILENAME).write_text(self.pipeline_yaml, encoding="utf-8")
            configs.mkdir(exist_ok=True)
            (configs / PIPELINE_CONFIG_FILENAME).write_text(self.pipeline_yaml, encoding="utf-8")
        log = self.log_filename_path
        if save_pipeline_log and log is not None and Path(log).is_file():
            configs.mkdir(exist_ok=True)
            shutil.copyfile(log, configs / PIPELINE_LOG_FILENAME)
        if self.artifacts_path is not None and Path(self.artifacts_path).is_dir():
            target = root / DISTISET_ARTIFACTS_FOLDER
            if Path(self.artifacts_path).resolve() != target.resolve():
                shutil.copytree(self.artifacts_path, target, dirs_exist_ok=True)
        if save_card:
            (root / CARD_FILENAME).write_text(self.dataset_card(), encoding="utf-8")
        return root

    @classmethod
    def load_from_disk(
        cls,
        path: str | os.PathLike[str],
        *,
        keep_in_memory: bool | None = None,
        storage_options: dict[str, Any] | None = None,
        download_dir: str | os.PathLike[str] | None = None,
    ) -> Distiset:
        """Read what ``save_to_disk`` wrote (every ``<path>/<leaf>/`` folder is a leaf), or a
        folder distilabel saved (its ``distiset_configs/`` and ``artifacts/`` included).

        A leaf saved as a ``DatasetDict`` loads as one; a leaf saved as a plain ``Dataset``
        loads as a plain ``Dataset``, as distilabel does.
        """
        if storage_options:
            raise ValueError(
                f"Distiset.load_from_disk reads local folders only; storage_options="
                f"{sorted(storage_options)} is not supported. Download the folder first."
            )
        datasets = _datasets()
        root = Path(path)
        if not root.is_dir():
            raise FileNotFoundError(
                f"No Distiset at {str(root)!r}: the folder does not exist. Pass the folder given "
                "to Distiset.save_to_disk()."
            )
        leaves = sorted(
            p
            for p in root.iterdir()
            if p.name not in _NOT_LEAVES
            and ((p / "dataset_dict.json").is_file() or (p / "state.json").is_file())
        )
        if not leaves:
            raise FileNotFoundError(
                f"{str(root)!r} holds no saved Distiset: none of its folders "
                f"({sorted(p.name for p in root.iterdir())}) has a dataset_dict.json. Save one "
                "with Distiset.save_to_disk(), or load a plain dataset with "
                "datasets.load_from_disk()."
            )
        data = {
            leaf.name: datasets.load_from_disk(str(leaf), keep_in_memory=keep_in_memory)
            for leaf in leaves
        }
        configs = root / DISTISET_CONFIG_FOLDER
        pipeline_file = next(
            (
                f
                for f in (root / PIPELINE_FILENAME, configs / PIPELINE_CONFIG_FILENAME)
                if f.is_file()
            ),
            None,
        )
        pipeline_yaml = pipeline_file.read_text(encoding="utf-8") if pipeline_file else None
        distiset = cls(data, pipeline_yaml=pipeline_yaml)
        distiset.pipeline_path = pipeline_file
        if (configs / PIPELINE_LOG_FILENAME).is_file():
            distiset.log_filename_path = configs / PIPELINE_LOG_FILENAME
        if (root / DISTISET_ARTIFACTS_FOLDER).is_dir():
            distiset.artifacts_path = root / DISTISET_ARTIFACTS_FOLDER
        return distiset

    # -- hub ---------------------------------------------------------------------------------

    def push_to_hub(
        self,
        repo_id: str,
        *,
        private: bool = False,
        token: str | None = None,
        include_metadata: bool = True,
        generate_card: bool = True,
        commit_message: str | None = None,
        revision: str | None = None,
        endpoint: str | None = None,
    ) -> str:
        """Upload to the dataset repo ``repo_id`` in one commit and return the commit URL.

        Each leaf becomes a config (``<leaf>/<split>/*.parquet``, declared in the card's YAML
        header so ``load_dataset(repo_id, "<leaf>")`` works); ``pipeline.yaml`` holds the
        pipeline definition with its secrets masked. ``token`` defaults to the logged-in one
        (``HF_TOKEN``); ``endpoint`` to ``HF_ENDPOINT``. A failure (offline, unreachable,
        no token...) raises one :class:`~alambic.errors.HubError` naming the repo, the cause
        and the fix, with the library's exception as its ``__cause__``.
        """
        from alambic.hub_errors import hub_errors

        hub = require("huggingface_hub", feature="Distiset.push_to_hub", extra="hf")
        distiset = self if include_metadata else self.without_metadata()
        with hub_errors(repo_id, endpoint=endpoint, token=token):
            api = hub.HfApi(endpoint=endpoint, token=token)
            api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
            return self._upload(
                api,
                distiset,
                repo_id,
                generate_card,
                commit_message=commit_message,
                revision=revision,
            )

    def _upload(
        self,
        api: Any,
        distiset: Distiset,
        repo_id: str,
        generate_card: bool,
        *,
        commit_message: str | None,
        revision: str | None,
    ) -> str:
        with tempfile.TemporaryDirectory(prefix="alambic-push-") as tmp:
            folder = Path(tmp)
            for leaf in distiset:
                for split, dataset in distiset.splits(leaf).items():
                    target = folder / leaf / split
                    target.mkdir(parents=True)
                    dataset.to_parquet(str(target / "data-00000-of-00001.parquet"))
            if self.pipeline_yaml is not None:
                (folder / PIPELINE_FILENAME).write_text(self.pipeline_yaml, encoding="utf-8")
            if generate_card:
                (folder / CARD_FILENAME).write_text(
                    distiset.dataset_card(repo_id=repo_id), encoding="utf-8"
                )
            info = api.upload_folder(
                folder_path=str(folder),
                repo_id=repo_id,
                repo_type="dataset",
                revision=revision,
                commit_message=commit_message or "Upload dataset generated with alambic",
            )
        return str(getattr(info, "commit_url", info))

    # -- card --------------------------------------------------------------------------------

    def dataset_card(self, *, repo_id: str | None = None) -> str:
        """A dataset card (``README.md``): YAML header declaring one config per leaf, how the
        data was made, its structure, an example row and the pipeline definition."""
        import yaml

        configs = [
            {
                "config_name": leaf,
                "data_files": [
                    {"split": split, "path": f"{leaf}/{split}/*"} for split in self.splits(leaf)
                ],
            }
            for leaf in self
        ]
        header = {
            "configs": configs,
            "tags": ["synthetic", "alambic"],
            "size_categories": [_size_category(self.num_rows_total())],
        }
        title = repo_id or "this dataset"
        lines = [
            "---",
            yaml.safe_dump(header, sort_keys=False).rstrip(),
            "---",
            "",
            f"# Dataset card for {title}",
            "",
            "This dataset was generated with [alambic](https://pypi.org/project/alambic/), a "
            "framework for synthetic data generation and AI feedback with LLMs.",
            "",
        ]
        if self.pipeline_yaml is not None:
            lines += [
                "## Reproducing it",
                "",
                "The `pipeline.yaml` file in this repository defines the pipeline that produced "
                "it (API keys and other secrets are masked; set them in the environment to "
                "run it again). Its full text is at the end of this card.",
                "",
            ]
        lines += ["## Dataset structure", ""]
        for leaf in self:
            dataset_dict = self.splits(leaf)
            load = f'load_dataset("{repo_id}", "{leaf}")' if repo_id else None
            lines.append(f"### Config `{leaf}`")
            lines.append("")
            for split, dataset in dataset_dict.items():
                lines.append(
                    f"- split `{split}`: {dataset.num_rows} rows, columns "
                    + ", ".join(f"`{c}`" for c in dataset.column_names)
                )
            lines.append("")
            first_split = next(iter(dataset_dict.values()), None)
            if first_split is not None and first_split.num_rows:
                example = json.dumps(first_split[0], indent=2, ensure_ascii=False, default=str)
                lines += [
                    "<details><summary>Example row</summary>",
                    "",
                    "```json",
                    _truncate(example, 4000),
                    "```",
                    "",
                    "</details>",
                    "",
                ]
            if load:
                lines += [
                    "```python",
                    "from datasets import load_dataset",
                    "",
                    f"dataset = {load}",
                    "```",
                    "",
                ]
        if self.spend:
            lines += _spend_section(self.spend)
        if self.pipeline_yaml is not None:
            lines += [
                "## Pipeline",
                "",
                "<details><summary>pipeline.yaml</summary>",
                "",
                "```yaml",
                self.pipeline_yaml.rstrip(),
                "```",
                "",
                "</details>",
                "",
            ]
        return "\n".join(lines)

    # -- inspection --------------------------------------------------------------------------

    def num_rows_total(self) -> int:
        return sum(ds.num_rows for leaf in self for ds in self.splits(leaf).values())

    def __repr__(self) -> str:
        lines = ["Distiset({"]
        for leaf in self:
            lines.append(f"    {leaf}: DatasetDict({{")
            for split, dataset in self.splits(leaf).items():
                lines.append(
                    f"        {split}: {dataset.num_rows} rows, columns {dataset.column_names}"
                )
            lines.append("    })")
        lines.append("})")
        return "\n".join(lines)


def _spend_section(spend: Mapping[str, Mapping[str, Any]]) -> list[str]:
    lines = [
        "## Cost of the run that made it",
        "",
        "| step (model) | requests | input tokens | output tokens | USD |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, entry in spend.items():
        usd = entry.get("usd")
        lines.append(
            f"| {name} | {entry.get('requests', 0):,} | {entry.get('input_tokens', 0):,} | "
            f"{entry.get('output_tokens', 0):,} | "
            + ("unknown" if usd is None else f"{usd:.4f}")
            + " |"
        )
    prices = sorted({str(e["price"]) for e in spend.values() if e.get("price")})
    lines += ["", *(f"- prices: {p}" for p in prices), ""]
    return lines


def _rename(dataset: Any, name: str) -> Any:
    if METADATA_COLUMN not in dataset.column_names or name == METADATA_COLUMN:
        return dataset
    return dataset.rename_column(METADATA_COLUMN, name)


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + "\n... (truncated)"


def _size_category(n: int) -> str:
    bounds = [
        (1_000, "n<1K"),
        (10_000, "1K<n<10K"),
        (100_000, "10K<n<100K"),
        (1_000_000, "100K<n<1M"),
        (10_000_000, "1M<n<10M"),
    ]
    for bound, label in bounds:
        if n < bound:
            return label
    return "n>10M"


__all__ = [
    "DISTISET_ARTIFACTS_FOLDER",
    "DISTISET_CONFIG_FOLDER",
    "METADATA_COLUMN",
    "PIPELINE_CONFIG_FILENAME",
    "PIPELINE_LOG_FILENAME",
    "Distiset",
]

"""``Distiset``: what a pipeline run returns, one Hugging Face ``DatasetDict`` per leaf step.

A pipeline with a single leaf step gives ``{"default": DatasetDict({"train": ...})}``; with
several leaves each one is a key named after its step, so a run that generates and judges in two
branches gives two datasets. A ``Distiset`` keeps the serialized pipeline (secrets masked) that
produced it, saves to and loads from disk, and pushes to the Hub as one dataset config per leaf,
with a generated dataset card and ``pipeline.yaml``.

The ``alambic_metadata`` column (raw prompts and replies, token counts, errors of each task) is
kept by default; ``keep_metadata=False`` / ``include_metadata=False`` drops it.

``datasets`` is imported only when a ``Distiset`` is built.
"""

from __future__ import annotations

import json
import os
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
        for leaf, dataset_dict in self.items():
            data[leaf] = datasets.DatasetDict(
                {
                    split: ds.remove_columns([METADATA_COLUMN])
                    if METADATA_COLUMN in ds.column_names
                    else ds
                    for split, ds in dataset_dict.items()
                }
            )
        return Distiset(data, pipeline_yaml=self.pipeline_yaml)

    # -- disk --------------------------------------------------------------------------------

    def save_to_disk(
        self,
        path: str | os.PathLike[str],
        *,
        save_card: bool = True,
        save_pipeline_config: bool = True,
        max_shard_size: str | int | None = None,
        num_proc: int | None = None,
    ) -> Path:
        """Write each leaf as ``<path>/<leaf>/`` (``DatasetDict.save_to_disk``), plus the card and
        ``pipeline.yaml``. ``Distiset.load_from_disk(path)`` reads it back."""
        root = Path(path)
        root.mkdir(parents=True, exist_ok=True)
        for leaf, dataset_dict in self.items():
            dataset_dict.save_to_disk(
                str(root / leaf), max_shard_size=max_shard_size, num_proc=num_proc
            )
        if save_pipeline_config and self.pipeline_yaml is not None:
            (root / PIPELINE_FILENAME).write_text(self.pipeline_yaml, encoding="utf-8")
        if save_card:
            (root / CARD_FILENAME).write_text(self.dataset_card(), encoding="utf-8")
        return root

    @classmethod
    def load_from_disk(
        cls, path: str | os.PathLike[str], *, keep_in_memory: bool | None = None
    ) -> Distiset:
        """Read what ``save_to_disk`` wrote (every ``<path>/<leaf>/`` folder is a leaf)."""
        datasets = _datasets()
        root = Path(path)
        if not root.is_dir():
            raise FileNotFoundError(
                f"No Distiset at {str(root)!r}: the folder does not exist. Pass the folder given "
                "to Distiset.save_to_disk()."
            )
        leaves = sorted(p for p in root.iterdir() if (p / "dataset_dict.json").is_file())
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
        pipeline_file = root / PIPELINE_FILENAME
        pipeline_yaml = (
            pipeline_file.read_text(encoding="utf-8") if pipeline_file.is_file() else None
        )
        return cls(data, pipeline_yaml=pipeline_yaml)

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
        (``HF_TOKEN``); ``endpoint`` to ``HF_ENDPOINT``.
        """
        hub = require("huggingface_hub", feature="Distiset.push_to_hub", extra="hf")
        distiset = self if include_metadata else self.without_metadata()
        api = hub.HfApi(endpoint=endpoint, token=token)
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="alambic-push-") as tmp:
            folder = Path(tmp)
            for leaf, dataset_dict in distiset.items():
                for split, dataset in dataset_dict.items():
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
                    {"split": split, "path": f"{leaf}/{split}/*"} for split in dataset_dict
                ],
            }
            for leaf, dataset_dict in self.items()
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
        for leaf, dataset_dict in self.items():
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
        return sum(ds.num_rows for dd in self.values() for ds in dd.values())

    def __repr__(self) -> str:
        lines = ["Distiset({"]
        for leaf, dataset_dict in self.items():
            lines.append(f"    {leaf}: DatasetDict({{")
            for split, dataset in dataset_dict.items():
                lines.append(
                    f"        {split}: {dataset.num_rows} rows, columns {dataset.column_names}"
                )
            lines.append("    })")
        lines.append("})")
        return "\n".join(lines)


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


__all__ = ["Distiset"]

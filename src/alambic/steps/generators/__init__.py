"""Generator steps that load data: from Python dicts, the Hugging Face Hub, disk or files."""

from __future__ import annotations

from alambic.steps.generators.data import LoadDataFromDicts
from alambic.steps.generators.huggingface import (
    LoadDataFromDisk,
    LoadDataFromFileSystem,
    LoadDataFromHub,
)

__all__ = ["LoadDataFromDicts", "LoadDataFromDisk", "LoadDataFromFileSystem", "LoadDataFromHub"]

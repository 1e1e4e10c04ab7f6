"""Steps that reshape rows without an LLM: keep, combine, expand, group and merge columns."""

from __future__ import annotations

from alambic.steps.columns.combine import CombineOutputs
from alambic.steps.columns.expand import ExpandColumns
from alambic.steps.columns.group import GroupColumns
from alambic.steps.columns.keep import KeepColumns
from alambic.steps.columns.merge import MergeColumns
from alambic.steps.columns.utils import merge_alambic_metadata

__all__ = [
    "CombineOutputs",
    "ExpandColumns",
    "GroupColumns",
    "KeepColumns",
    "MergeColumns",
    "merge_alambic_metadata",
]

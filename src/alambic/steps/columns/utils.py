"""Public helpers for steps that combine rows (distilabel: ``distilabel.steps.columns.utils``)."""

from __future__ import annotations

from alambic.steps.columns._utils import merge_alambic_metadata

__all__ = ["merge_alambic_metadata"]

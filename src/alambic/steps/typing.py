"""Types shared by steps: columns, inputs and outputs of ``process``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

StepColumns = list[str] | dict[str, bool]
"""Columns of a step: a list (all required) or a dict of column name -> required."""

Row = dict[str, Any]
StepInput = list[Row]
"""One batch of rows, as ``Step.process`` receives it (one argument per predecessor)."""

StepOutput = Iterator[list[Row]]
"""``Step.process`` is a generator: every batch it yields is part of the output."""

GeneratorOutput = Iterator[Any]
"""What ``GeneratorStep.process`` yields: a ``(rows, is_last)`` pair, a list of rows or one row."""

__all__ = ["GeneratorOutput", "Row", "StepColumns", "StepInput", "StepOutput"]

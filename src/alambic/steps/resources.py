"""What kind of step a step is, and what each of its copies needs (read by executors)."""

from __future__ import annotations

from enum import Enum

from pydantic import BaseModel, ConfigDict, Field, PositiveInt


class StepKind(str, Enum):
    """How the executor feeds a step (see "The step contract" in docs/architecture.md)."""

    GENERATOR = "generator"
    """No predecessor: ``process(offset)`` produces the rows."""
    NORMAL = "normal"
    """Receives batches of ``input_batch_size`` rows, one list per predecessor."""
    GLOBAL = "global"
    """Receives every row at once, in one call."""


class StepResources(BaseModel):
    """How many copies of a step run at once, and what each needs (used by the executors)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    replicas: PositiveInt = 1
    cpus: float | None = Field(default=None, gt=0)
    gpus: int | None = Field(default=None, ge=0)
    memory: int | None = Field(default=None, gt=0, description="Bytes of memory per copy.")
    resources: dict[str, float] | None = Field(
        default=None, description="Custom resources per copy (Ray's ``resources=``)."
    )


__all__ = ["StepKind", "StepResources"]

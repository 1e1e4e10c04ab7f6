"""Pipelines: the graph of steps, its checks, and the executors that run it."""

from alambic.pipeline.base import Pipeline
from alambic.steps.routing import routing_batch_function, sample_n_steps

__all__ = ["Pipeline", "routing_batch_function", "sample_n_steps"]

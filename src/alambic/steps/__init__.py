"""Steps: ``Step``, ``GeneratorStep``, ``GlobalStep``, the ``@step`` decorator and the built-in
data steps (imported on first use)."""

from __future__ import annotations

from alambic.steps.base import (
    GeneratorStep,
    GlobalStep,
    Step,
    StepResources,
    UnknownArgumentWarning,
)
from alambic.steps.routing import RoutingBatchFunction, routing_batch_function, sample_n_steps
from alambic.steps.typing import GeneratorOutput, StepColumns, StepInput, StepOutput
from alambic.utils.lazy import lazy_exports

_LAZY: dict[str, str] = {
    "LoadDataFromDicts": "alambic.steps.generators",
    "LoadDataFromDisk": "alambic.steps.generators",
    "LoadDataFromFileSystem": "alambic.steps.generators",
    "LoadDataFromHub": "alambic.steps.generators",
    "CombineOutputs": "alambic.steps.columns",
    "ExpandColumns": "alambic.steps.columns",
    "GroupColumns": "alambic.steps.columns",
    "KeepColumns": "alambic.steps.columns",
    "MergeColumns": "alambic.steps.columns",
    "step": "alambic.steps.decorator",
    "EmbeddingGeneration": "alambic.steps.embeddings",
    "FaissNearestNeighbour": "alambic.steps.embeddings",
    "DeitaFiltering": "alambic.steps.filtering",
    "EmbeddingDedup": "alambic.steps.filtering",
    "MinHashDedup": "alambic.steps.filtering",
    "FormatChatGenerationDPO": "alambic.steps.formatting",
    "FormatChatGenerationSFT": "alambic.steps.formatting",
    "FormatTextGenerationDPO": "alambic.steps.formatting",
    "FormatTextGenerationSFT": "alambic.steps.formatting",
    "RewardModelScore": "alambic.steps.tasks.reward_model",
    # data and formatting steps of issue 16
    "DataSampler": "alambic.steps.generators.data_sampler",
    "make_generator_step": "alambic.steps.generators.data_sampler",
    "TruncateTextColumn": "alambic.steps.columns.truncate",
    "ConversationTemplate": "alambic.steps.formatting.conversation",
    "UMAP": "alambic.steps.clustering",
    "DBSCAN": "alambic.steps.clustering",
}


__getattr__, __dir__ = lazy_exports(globals(), _LAZY)


__all__ = [
    "CombineOutputs",
    "DeitaFiltering",
    "EmbeddingDedup",
    "EmbeddingGeneration",
    "ExpandColumns",
    "FaissNearestNeighbour",
    "FormatChatGenerationDPO",
    "FormatChatGenerationSFT",
    "FormatTextGenerationDPO",
    "FormatTextGenerationSFT",
    "GeneratorOutput",
    "GeneratorStep",
    "GlobalStep",
    "GroupColumns",
    "KeepColumns",
    "LoadDataFromDicts",
    "LoadDataFromDisk",
    "LoadDataFromFileSystem",
    "LoadDataFromHub",
    "MergeColumns",
    "MinHashDedup",
    "RewardModelScore",
    "RoutingBatchFunction",
    "Step",
    "StepColumns",
    "StepInput",
    "StepOutput",
    "StepResources",
    "UnknownArgumentWarning",
    "routing_batch_function",
    "sample_n_steps",
    "step",
]
__all__ += [  # data, formatting and clustering steps of issue 16
    "DBSCAN",
    "UMAP",
    "ConversationTemplate",
    "DataSampler",
    "TruncateTextColumn",
    "make_generator_step",
]

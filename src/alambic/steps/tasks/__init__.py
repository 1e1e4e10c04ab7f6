"""Tasks: steps that use an LLM. Built-in tasks are imported on first use."""

from __future__ import annotations

from typing import TYPE_CHECKING

from alambic.steps.tasks.base import GeneratorTask, Task
from alambic.steps.tasks.typing import ChatItem, ChatType
from alambic.utils.lazy import lazy_exports

if TYPE_CHECKING:
    from alambic.steps.tasks.text_generation import ChatGeneration, TextGeneration

_LAZY: dict[str, str] = {
    "TextGeneration": "alambic.steps.tasks.text_generation",
    "ChatGeneration": "alambic.steps.tasks.text_generation",
    "SelfInstruct": "alambic.steps.tasks.self_instruct",
    "Genstruct": "alambic.steps.tasks.genstruct",
    "InstructionBacktranslation": "alambic.steps.tasks.instruction_backtranslation",
    "GenerateSentencePair": "alambic.steps.tasks.sentence_pair",
    "TextClassification": "alambic.steps.tasks.text_classification",
    "StructuredGeneration": "alambic.steps.tasks.structured_generation",
    "EvolInstruct": "alambic.steps.tasks.evol_instruct",
    "EvolInstructGenerator": "alambic.steps.tasks.evol_instruct",
    "EvolComplexity": "alambic.steps.tasks.evol_complexity",
    "EvolQuality": "alambic.steps.tasks.evol_quality",
    "Magpie": "alambic.steps.tasks.magpie",
    "MagpieGenerator": "alambic.steps.tasks.magpie",
    # feedback / judges
    "UltraFeedback": "alambic.steps.tasks.ultrafeedback",
    "PrometheusEval": "alambic.steps.tasks.prometheus_eval",
    "ComplexityScorer": "alambic.steps.tasks.complexity_scorer",
    "QualityScorer": "alambic.steps.tasks.quality_scorer",
    "PairwiseJudge": "alambic.steps.tasks.pairwise_judge",
    "RewardModelScore": "alambic.steps.tasks.reward_model",
    "task": "alambic.steps.tasks.decorator",
    # the rest of the reference library (issue 16)
    "APIGenGenerator": "alambic.steps.tasks.apigen",
    "APIGenSemanticChecker": "alambic.steps.tasks.apigen",
    "APIGenExecutionChecker": "alambic.steps.tasks.apigen_execution",
    "MathShepherdGenerator": "alambic.steps.tasks.math_shepherd",
    "MathShepherdCompleter": "alambic.steps.tasks.math_shepherd",
    "FormatPRM": "alambic.steps.tasks.format_prm",
    "EmbeddingTaskGenerator": "alambic.steps.tasks.improving_text_embeddings",
    "GenerateTextRetrievalData": "alambic.steps.tasks.improving_text_embeddings",
    "GenerateShortTextMatchingData": "alambic.steps.tasks.improving_text_embeddings",
    "GenerateLongTextMatchingData": "alambic.steps.tasks.improving_text_embeddings",
    "GenerateTextClassificationData": "alambic.steps.tasks.improving_text_embeddings",
    "MonolingualTripletGenerator": "alambic.steps.tasks.improving_text_embeddings",
    "BitextRetrievalGenerator": "alambic.steps.tasks.improving_text_embeddings",
    "CLAIR": "alambic.steps.tasks.clair",
    "URIAL": "alambic.steps.tasks.urial",
    "EvolComplexityGenerator": "alambic.steps.tasks.evol_complexity",
    "TextClustering": "alambic.steps.tasks.text_clustering",
    "TextGenerationWithImage": "alambic.steps.tasks.text_generation_with_image",
    "ImageGeneration": "alambic.steps.tasks.image_generation",
}


__getattr__, __dir__ = lazy_exports(globals(), _LAZY)


__all__ = [
    "ChatGeneration",
    "ChatItem",
    "ChatType",
    "GeneratorTask",
    "Task",
    "TextGeneration",
    "task",
]
__all__ += [  # generation family
    "EvolComplexity",
    "EvolInstruct",
    "EvolInstructGenerator",
    "EvolQuality",
    "GenerateSentencePair",
    "Genstruct",
    "InstructionBacktranslation",
    "Magpie",
    "MagpieGenerator",
    "SelfInstruct",
    "StructuredGeneration",
    "TextClassification",
]
__all__ += [  # feedback / judges family
    "ComplexityScorer",
    "PairwiseJudge",
    "PrometheusEval",
    "QualityScorer",
    "RewardModelScore",
    "UltraFeedback",
]
__all__ += [  # function calling, process rewards, embedding data, style (issue 16)
    "CLAIR",
    "URIAL",
    "APIGenExecutionChecker",
    "APIGenGenerator",
    "APIGenSemanticChecker",
    "BitextRetrievalGenerator",
    "EmbeddingTaskGenerator",
    "EvolComplexityGenerator",
    "FormatPRM",
    "GenerateLongTextMatchingData",
    "GenerateShortTextMatchingData",
    "GenerateTextClassificationData",
    "GenerateTextRetrievalData",
    "ImageGeneration",
    "MathShepherdCompleter",
    "MathShepherdGenerator",
    "MonolingualTripletGenerator",
    "TextClustering",
    "TextGenerationWithImage",
]

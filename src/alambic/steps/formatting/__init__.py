"""Formatting steps: turn generated and rated rows into training-ready datasets.

No LLM is involved; these steps reshape rows into the columns fine-tuning libraries expect
(TRL's SFT and DPO trainers, the Hugging Face alignment-handbook): a ``prompt`` and its
``prompt_id``, and chat ``messages`` or ``chosen``/``rejected`` conversations.
"""

from __future__ import annotations

from alambic.steps.formatting.dpo import FormatChatGenerationDPO, FormatTextGenerationDPO
from alambic.steps.formatting.sft import FormatChatGenerationSFT, FormatTextGenerationSFT

__all__ = [
    "FormatChatGenerationDPO",
    "FormatChatGenerationSFT",
    "FormatTextGenerationDPO",
    "FormatTextGenerationSFT",
]

"""Types of what a task sends to an LLM: OpenAI-style chat messages."""

from alambic.llms.typing import ChatItem, ChatType, FormattedInput

__all__ = ["ChatItem", "ChatType", "FormattedInput"]

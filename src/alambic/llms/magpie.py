"""Magpie pre-query templates, and the mixin distilabel users put on their LLMs for Magpie.

A *pre-query template* is the raw text with which a chat model's format opens a user turn
(``<|im_start|>user\\n`` for ChatML). Given a conversation rendered up to there, an aligned
model writes a plausible user message itself (Xu et al., 2024, "Magpie",
https://arxiv.org/abs/2406.08464). :class:`MagpieTemplate` describes a model family's whole
format so alambic's ``Magpie`` tasks can render several turns and cut completions at the
end-of-turn markers; :class:`MagpieChatTemplateMixin` is the LLM-side switch distilabel's
API has (``use_magpie_template``, ``magpie_pre_query_template``,
``apply_magpie_pre_query_template``), so an LLM written for distilabel's Magpie works with
alambic's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from alambic.llms.typing import ChatItem


class MagpieTemplate(BaseModel):
    """How a model family writes a conversation as raw text.

    ``system``/``user``/``assistant`` are formats with a ``{content}`` placeholder;
    ``user_header`` is the pre-query template (what opens a user turn); ``stop`` lists the
    markers that end a turn, where a completion is cut.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    prefix: str = ""
    system: str
    user: str
    assistant: str
    user_header: str
    stop: list[str] = Field(default_factory=list)

    def render(self, conversation: Sequence[ChatItem]) -> str:
        """The raw prompt that asks the model for the next user turn."""
        formats = {"system": self.system, "user": self.user, "assistant": self.assistant}
        body = "".join(formats[m["role"]].replace("{content}", m["content"]) for m in conversation)
        return f"{self.prefix}{body}{self.user_header}"

    def cut(self, completion: str) -> str:
        """The completion up to the first end-of-turn marker, stripped."""
        end = len(completion)
        for marker in self.stop:
            found = completion.find(marker)
            if found != -1:
                end = min(end, found)
        return completion[:end].strip()


_CHATML = MagpieTemplate(
    system="<|im_start|>system\n{content}<|im_end|>\n",
    user="<|im_start|>user\n{content}<|im_end|>\n",
    assistant="<|im_start|>assistant\n{content}<|im_end|>\n",
    user_header="<|im_start|>user\n",
    stop=["<|im_end|>", "<|im_start|>", "<|endoftext|>"],
)

PRE_QUERY_TEMPLATES: dict[str, MagpieTemplate] = {
    "llama3": MagpieTemplate(
        prefix="<|begin_of_text|>",
        system="<|start_header_id|>system<|end_header_id|>\n\n{content}<|eot_id|>",
        user="<|start_header_id|>user<|end_header_id|>\n\n{content}<|eot_id|>",
        assistant="<|start_header_id|>assistant<|end_header_id|>\n\n{content}<|eot_id|>",
        user_header="<|start_header_id|>user<|end_header_id|>\n\n",
        stop=["<|eot_id|>", "<|start_header_id|>", "<|end_of_text|>"],
    ),
    "qwen2": _CHATML,
    "chatml": _CHATML,
}
"""Built-in pre-query templates, by name (Qwen2 uses ChatML)."""

MAGPIE_PRE_QUERY_TEMPLATES: dict[str, str] = {
    name: template.prefix + template.user_header for name, template in PRE_QUERY_TEMPLATES.items()
}
"""Preset name -> the raw pre-query text (for an empty conversation), as distilabel's mixin
module exposes it."""


def resolve_template(spec: str | MagpieTemplate) -> MagpieTemplate:
    """A preset name, a :class:`MagpieTemplate`, or raw pre-query text -> a template.

    Raw text equal to a preset's pre-query text resolves to that preset (so its turn formats
    and stop markers are known); other text becomes a one-turn template with no system part.
    """
    if isinstance(spec, MagpieTemplate):
        return spec
    if spec in PRE_QUERY_TEMPLATES:
        return PRE_QUERY_TEMPLATES[spec]
    for template in PRE_QUERY_TEMPLATES.values():
        if spec in (template.user_header, template.prefix + template.user_header):
            return template
    return MagpieTemplate(system="", user="", assistant="", user_header=spec)


class MagpieChatTemplateMixin(BaseModel):
    """Lets an LLM take part in Magpie, as distilabel's mixin of the same name does.

    Put it on an LLM class (``class MyLLM(LLM, MagpieChatTemplateMixin)``) and create it with
    ``magpie_pre_query_template="llama3"`` (or ``"qwen2"``, ``"chatml"``, or the raw text that
    opens a user turn). Giving a template switches ``use_magpie_template`` on.

    - An LLM that renders chat messages to text itself calls
      :meth:`apply_magpie_pre_query_template` on the rendered prompt: for a conversation that
      does not end with a user message, the pre-query text is appended, so the model's reply
      is the next user message. alambic's ``Magpie`` tasks then ask the user turns through
      the LLM's ``generate`` (no raw-completion support needed).
    - An LLM that supports raw completions (``TransformersLLM``) only tells the ``Magpie``
      tasks which template to use; the tasks render the prompts.
    """

    use_magpie_template: bool = Field(
        default=False,
        description="Append the pre-query template to prompts that do not end with a user "
        "message (Magpie). Switched on by giving magpie_pre_query_template.",
    )
    magpie_pre_query_template: str | None = Field(
        default=None,
        description="A preset (llama3, qwen2, chatml) or the raw text that opens a user turn.",
    )

    @model_validator(mode="before")
    @classmethod
    def _switch_on(cls, data: Any) -> Any:
        if (
            isinstance(data, dict)
            and data.get("magpie_pre_query_template") is not None
            and "use_magpie_template" not in data
        ):
            data = {**data, "use_magpie_template": True}
        return data

    @model_validator(mode="after")
    def _check_template(self) -> MagpieChatTemplateMixin:
        if self.use_magpie_template and not self.magpie_pre_query_template:
            raise ValueError(
                f"{type(self).__name__}: use_magpie_template=True needs "
                f"magpie_pre_query_template: one of {sorted(PRE_QUERY_TEMPLATES)} (the model's "
                "chat format), or the raw text that opens a user turn, e.g. "
                "'<|im_start|>user\\n'."
            )
        return self

    def magpie_template(self) -> MagpieTemplate | None:
        """The resolved template, or ``None`` when Magpie is off for this LLM."""
        if not self.use_magpie_template or not self.magpie_pre_query_template:
            return None
        return resolve_template(self.magpie_pre_query_template)

    def apply_magpie_pre_query_template(self, prompt: str, input: Sequence[ChatItem]) -> str:
        """``prompt`` (``input`` rendered by the chat template), followed by the pre-query text
        when Magpie is on and ``input`` does not end with a user message."""
        template = self.magpie_template()
        if template is None or (input and input[-1].get("role") == "user"):
            return prompt
        start = template.prefix if not prompt and template.prefix else ""
        return f"{prompt}{start}{template.user_header}"

    def magpie_prompt(self, tokenizer: Any, messages: Sequence[ChatItem]) -> str | None:
        """The prompt that asks the model for the next user turn (the conversation rendered
        by ``tokenizer``'s chat template, then the text opening a user turn), or ``None`` when
        Magpie is off or ``messages`` ends with a user message (an ordinary request)."""
        if self.magpie_template() is None or (messages and messages[-1]["role"] == "user"):
            return None
        rendered: str = (
            tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
            if messages
            else ""
        )
        return self.apply_magpie_pre_query_template(rendered, messages)


__all__ = [
    "MAGPIE_PRE_QUERY_TEMPLATES",
    "PRE_QUERY_TEMPLATES",
    "MagpieChatTemplateMixin",
    "MagpieTemplate",
    "resolve_template",
]

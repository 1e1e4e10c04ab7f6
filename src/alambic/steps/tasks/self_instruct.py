"""Self-Instruct: an LLM writes new instructions from a seed input.

Wang et al., 2022, "Self-Instruct: Aligning Language Models with Self-Generated Instructions"
(https://arxiv.org/abs/2212.10560). The paper bootstraps an instruction set by asking a model
for new tasks in the style of a few seed tasks. Here each input row is the seed (a topic, a
document, an example request) and the reply is a numbered list of new requests.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from pydantic import Field, PositiveInt

from alambic.errors import ColumnTypeError
from alambic.llms.typing import ChatType
from alambic.steps.tasks._lenient import LenientFormatOutput
from alambic.steps.tasks._parsing import ReplyParseError, parse_list_items, preview
from alambic.steps.tasks.base import Task
from alambic.steps.typing import StepColumns

_DEFAULT_CRITERIA = (
    "Make them varied in wording, length and difficulty; each must make sense on its own "
    "and be something the application can actually help with."
)


class SelfInstruct(LenientFormatOutput, Task):
    """Generate ``num_instructions`` user requests from each ``input`` (Self-Instruct).

    Input column ``input`` (text the requests start from). Output column ``instructions``: the
    list of requests the model wrote, with numbering and bullets removed. A reply with fewer
    than ``num_instructions`` items is kept (the list is shorter); more items are cut to
    ``num_instructions``; a reply with no usable line is a failed row.

    The paper also drops new instructions too similar to existing ones (ROUGE-L > 0.7); do it
    downstream with a deduplication step if you need it.
    """

    _template_file: ClassVar[tuple[str, str] | None] = ("", "self-instruct")

    num_instructions: PositiveInt = Field(default=5, description="Requests asked per input.")
    criteria_for_query_generation: str = Field(
        default=_DEFAULT_CRITERIA, description="What the requests should look like."
    )
    application_description: str = Field(
        default="an AI assistant", description="What the requests are addressed to."
    )
    system_prompt: str | None = Field(default=None, description="Optional system message.")

    @property
    def inputs(self) -> StepColumns:
        return ["input"]

    @property
    def outputs(self) -> StepColumns:
        return ["instructions", "model_name"]

    def format_input(self, input: dict[str, Any]) -> ChatType:
        text = input.get("input")
        if not isinstance(text, str):
            raise ColumnTypeError(
                f"Step {self.name!r} (SelfInstruct): column 'input' must hold text, got "
                f"{type(text).__name__}."
            )
        prompt = self.render_prompt(
            "",
            "self-instruct",
            input=text,
            num_instructions=self.num_instructions,
            criteria_for_query_generation=self.criteria_for_query_generation,
            application_description=self.application_description,
        )
        messages: ChatType = []
        if self.system_prompt:
            messages.append({"role": "system", "content": self.system_prompt})
        messages.append({"role": "user", "content": prompt})
        return messages

    def parse_output(
        self, output: str | None, input: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        if output is None:
            raise ReplyParseError("the LLM returned no text")
        items = [item for item in parse_list_items(output) if re.search(r"\w\w", item)]
        if not items:
            raise ReplyParseError(f"no instruction found in the reply: {preview(output)!r}")
        return {"instructions": items[: self.num_instructions]}


__all__ = ["SelfInstruct"]

"""``ConversationTemplate``: an instruction and its response as a two-turn conversation."""

from __future__ import annotations

from typing import ClassVar

from alambic.steps.base import Step
from alambic.steps.checks import require_text
from alambic.steps.typing import StepColumns, StepInput, StepOutput


class ConversationTemplate(Step):
    """Write ``conversation``: ``[{"role": "user", "content": instruction}, {"role":
    "assistant", "content": response}]`` from the ``instruction`` and ``response`` columns.

    Map other column names with ``input_mappings`` (``{"response": "generation"}``). A row
    whose instruction or response is not text is an error that names it.
    """

    _runs_inline: ClassVar[bool] = True

    @property
    def inputs(self) -> StepColumns:
        return ["instruction", "response"]

    @property
    def outputs(self) -> StepColumns:
        return ["conversation"]

    def process(self, inputs: StepInput) -> StepOutput:  # type: ignore[override]
        kind = "ConversationTemplate"
        yield [
            {
                **row,
                "conversation": [
                    {
                        "role": "user",
                        "content": require_text(
                            self.name, "instruction", row.get("instruction"), kind=kind
                        ),
                    },
                    {
                        "role": "assistant",
                        "content": require_text(
                            self.name, "response", row.get("response"), kind=kind
                        ),
                    },
                ],
            }
            for row in inputs
        ]


__all__ = ["ConversationTemplate"]

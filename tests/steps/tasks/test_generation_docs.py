"""The examples of docs/tasks/generation.md run as written, with fake LLMs swapped in."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytest

from alambic.llms.fake import FakeLLM
from alambic.llms.typing import ChatType, GenerateOutput

DOC = Path(__file__).parents[3] / "docs" / "tasks" / "generation.md"


def rewrite(messages: ChatType, index: int) -> str:
    inner = re.search(r"<(?:prompt|response)>\n(.*?)\n</", messages[-1]["content"], re.DOTALL)
    return f"{inner.group(1)} Step by step." if inner else "fake answer"


class FakeCompletion(FakeLLM):
    supports_raw_completion: ClassVar[bool] = True

    def complete(
        self, prompts: Sequence[str], num_generations: int = 1, **kwargs: Any
    ) -> list[GenerateOutput]:
        return [
            {
                "generations": [f"Question {j}?<|im_end|>" for j in range(num_generations)],
                "statistics": {
                    "input_tokens": [1] * num_generations,
                    "output_tokens": [1] * num_generations,
                },
            }
            for _ in prompts
        ]


def blocks() -> list[str]:
    found = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.DOTALL)
    return [b for b in found if not b.lstrip().startswith("{")]


def test_every_task_of_the_family_has_an_example() -> None:
    text = "\n".join(blocks())
    for name in (
        "SelfInstruct",
        "EvolInstruct",
        "EvolInstructGenerator",
        "EvolComplexity",
        "EvolQuality",
        "Genstruct",
        "MagpieGenerator",
        "InstructionBacktranslation",
        "GenerateSentencePair",
        "TextClassification",
        "StructuredGeneration",
    ):
        assert f"{name}(" in text, name


@pytest.mark.slow  # ten small pipelines
def test_doc_examples_run(capsys: pytest.CaptureFixture[str]) -> None:
    namespace: dict[str, Any] = {"FakeCompletion": FakeCompletion, "rewrite": rewrite}
    for block in blocks():
        code = block.replace('OpenAILLM(model="gpt-4o-mini")', "FakeLLM(reply_fn=rewrite)").replace(
            "from alambic.llms import OpenAILLM", "from alambic.llms import FakeLLM"
        )
        code = re.sub(r"TransformersLLM\(model=.*?\}\)", "FakeCompletion()", code)
        code = code.replace("num_instructions=100", "num_instructions=3")
        code = code.replace("num_rows=50", "num_rows=3")
        exec(compile(code, str(DOC), "exec"), namespace)
    out = capsys.readouterr().out
    assert "Explain recursion. Step by step." in out  # EvolInstruct
    assert "Question 0?" in out  # MagpieGenerator
    # the weighted system-prompt example prints the columns it documents
    assert "['instruction', 'response', 'system_prompt_key', 'model_name']" in out

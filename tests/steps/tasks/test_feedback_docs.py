"""The examples of docs/tasks/feedback.md and docs/tasks/formatting.md run as written, with a
fake judge (and the tiny reward model) swapped in for the remote models."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from alambic.llms.typing import ChatType

DOCS = Path(__file__).parents[3] / "docs" / "tasks"


def judge(messages: ChatType, index: int) -> str:
    system = messages[0]["content"] if messages[0]["role"] == "system" else ""
    prompt = messages[-1]["content"]
    if "Output for Text" in prompt:
        if "Type:" in prompt:
            return (
                "#### Output for Text 1\nType: None\nRationale: -\nRating: 5\nRationale: right\n"
                "#### Output for Text 2\nType: 1\nRationale: -\nRating: 2\nRationale: wrong"
            )
        return "#### Output for Text 1\nRating: 5\nRationale: a\n#### Output for Text 2\nRating: 1\nRationale: b"
    if "[RESULT] <integer" in prompt:
        score = 3 if "as short as it can be" in prompt else 5
        return f"Feedback: The answer is correct but starts with filler. [RESULT] {score}"
    if "[[C]]" in system:
        first = prompt.split("[Assistant A's answer - start]\n")[1].split("\n")[0]
        return "[[A]]" if first == "Canberra." else "[[B]]"
    if "[Response 1] Score:" in prompt:
        return "[Response 1] Score: 2\n[Response 2] Score: 1"
    return "[1] Score: 1\n[2] Score: 2"


def blocks(name: str) -> list[str]:
    text = (DOCS / name).read_text(encoding="utf-8")
    return re.findall(r"```python\n(.*?)```", text, re.DOTALL)


def run_blocks(name: str, namespace: dict[str, Any], skip: str | None = None) -> None:
    for block in blocks(name):
        if skip is not None and skip in block:
            continue
        code = block.replace('OpenAILLM(model="gpt-4o-mini")', "FakeLLM(reply_fn=judge)").replace(
            "from alambic.llms import OpenAILLM", "from alambic.llms import FakeLLM"
        )
        exec(compile(code, name, "exec"), namespace)


def test_every_feedback_step_has_an_example() -> None:
    text = "\n".join(blocks("feedback.md"))
    for name in (
        "UltraFeedback",
        "PrometheusEval",
        "PairwiseJudge",
        "ComplexityScorer",
        "QualityScorer",
        "RewardModelScore",
    ):
        assert f"{name}(" in text, name


def test_feedback_examples_run(capsys: pytest.CaptureFixture[str]) -> None:
    run_blocks("feedback.md", {"judge": judge}, skip="RewardModelScore(")
    out = capsys.readouterr().out.splitlines()
    assert "[5, 2, None] [[], [1], None]" in out  # UltraFeedback, None generation skipped
    assert "B ['B', 'B']" in out  # PairwiseJudge with swapped positions
    assert "[1.0, 2.0]" in out
    assert "[2.0, 1.0]" in out
    assert "3 The answer is correct but starts with filler." in out  # PrometheusEval
    assert out[-2:] == ["[5, 1]", "5"]  # the pipeline example


@pytest.mark.slow
def test_reward_model_example_runs(
    tiny_reward_model_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    [block] = [b for b in blocks("feedback.md") if "RewardModelScore(" in b]
    code = block.replace("Skywork/Skywork-Reward-V2-Qwen3-0.6B", str(tiny_reward_model_path))
    exec(compile(code, "feedback.md", "exec"), {})
    scores = eval(capsys.readouterr().out.strip())
    assert len(scores) == 2
    assert all(isinstance(s, float) for s in scores)


def test_formatting_examples_run(capsys: pytest.CaptureFixture[str]) -> None:
    run_blocks("formatting.md", {})
    out = capsys.readouterr().out
    assert "{'role': 'assistant', 'content': 'Hi!'}]" in out
    assert "{'role': 'assistant', 'content': '4'} model-a 1" in out
    assert "tie None" in out

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from alambic.llms.fake import FakeLLM
from alambic.llms.typing import ChatType
from alambic.steps.tasks import EvolQuality
from alambic.steps.tasks.evol_quality import QUALITY_MUTATIONS


def improving_reply(messages: ChatType, index: int) -> str:
    match = re.search(r"<response>\n(.*?)\n</response>", messages[-1]["content"], re.DOTALL)
    assert match is not None
    return f"{match.group(1)} More detail."


def make(**kwargs: Any) -> EvolQuality:
    return EvolQuality(name="eq", llm=FakeLLM(reply_fn=improving_reply), **kwargs)


def test_prompt_holds_instruction_response_and_axis() -> None:
    task = make(mutations={"details": QUALITY_MUTATIONS["details"]})
    prompt = task.format_input({"instruction": "What is 2+2?", "response": "4"})[0]["content"]
    assert "<request>\nWhat is 2+2?\n</request>" in prompt
    assert "<response>\n4\n</response>" in prompt
    assert QUALITY_MUTATIONS["details"] in prompt


def test_outputs() -> None:
    assert list(make().get_outputs()) == ["evolved_response", "model_name"]
    assert list(make(store_evolutions=True).get_outputs()) == ["evolved_responses", "model_name"]


def test_evolves_responses(run_task: Callable[..., Any]) -> None:
    rows = run_task(make(num_evolutions=2), [{"instruction": "2+2?", "response": "4."}])
    assert rows[0]["evolved_response"] == "4. More detail. More detail."


def test_store_evolutions_with_original(run_task: Callable[..., Any]) -> None:
    task = make(num_evolutions=2, store_evolutions=True, include_original_response=True)
    rows = run_task(task, [{"instruction": "2+2?", "response": "4."}])
    assert rows[0]["evolved_responses"] == ["4.", "4. More detail.", "4. More detail. More detail."]


def test_bad_rows_fail_alone(run_task: Callable[..., Any], error_of: Callable[..., Any]) -> None:
    task = make()
    task.llm.enqueue("")  # type: ignore[attr-defined]
    rows = run_task(
        task,
        [
            {"instruction": "a", "response": "b"},
            {"instruction": None, "response": "c"},
            {"instruction": "d", "response": "e"},
        ],
    )
    assert rows[0]["evolved_response"] is None
    assert "empty" in error_of(rows[0], "eq")["message"]
    assert rows[1]["evolved_response"] is None
    assert "'instruction' must hold text" in error_of(rows[1], "eq")["message"]
    assert rows[2]["evolved_response"] == "e More detail."

"""``pipeline.run`` called where an event loop already runs, as in a notebook cell (Jupyter
runs cells inside its own loop): the run gets its loop in a helper thread and behaves as from
a script. (Ctrl-C in that case: tests/faults/test_executor_ctrl_c.py, ``notebook``.)"""

from __future__ import annotations

import asyncio
import threading

from tests.pipeline.priced_pipeline import priced_pipeline

from alambic.budget import Budget
from alambic.testing.openai_server import OpenAITestServer


def test_a_run_from_inside_a_running_loop_returns_its_rows(
    openai_server: OpenAITestServer,
) -> None:
    pipeline = priced_pipeline(openai_server.base_url, 10, "notebook")
    caller = threading.current_thread()

    async def cell() -> list[str | None]:
        distiset = pipeline.run(use_cache=False, show_progress=False)
        return list(distiset["default"]["train"]["generation"])

    # 4 output tokens at most: the reply is cut after "reply to: question i"
    assert asyncio.run(cell()) == [f"reply to: question {i}" for i in range(10)]
    assert threading.current_thread() is caller
    assert openai_server.stats["total_requests"] == 10


def test_the_budget_of_a_run_from_a_notebook_cell_holds(
    openai_server: OpenAITestServer,
) -> None:
    """The run's budget lives in the caller's context; the helper thread's loop sees it."""
    pipeline = priced_pipeline(openai_server.base_url, 30, "notebook")

    async def cell() -> None:
        pipeline.run(show_progress=False, budget=Budget(requests=7))

    asyncio.run(cell())
    assert openai_server.stats["total_requests"] == 7
    report = (pipeline.last_summary or {})["budget"]
    assert report["total"]["requests"] == 7
    assert "7 requests reached" in report["stopped"]


def test_a_synchronous_generate_from_a_notebook_cell_runs_in_a_helper_thread() -> None:
    from alambic.llms.fake import FakeLLM

    threads: list[str] = []

    def reply(messages: object, index: int) -> str:
        threads.append(threading.current_thread().name)
        return "ok"

    llm = FakeLLM(reply_fn=reply)
    llm.load()

    async def cell() -> list[object]:
        return list(llm.generate([[{"role": "user", "content": "hi"}]]))

    out = asyncio.run(cell())
    assert out[0]["generations"] == ["ok"]  # type: ignore[index]
    assert threads == ["alambic-run-sync"]

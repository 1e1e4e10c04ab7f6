"""Every code snippet of the Task API spec (../shared/spec) runs against a reachable LLM.

The snippets are read from the spec files themselves (CI has ``shared/`` beside the checkout),
with ``distilabel`` replaced by ``alambic`` and the hosted providers swapped for ``OpenAILLM``
pointed at the local OpenAI-compatible test server. Each test checks the documented row shape.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from alambic.steps import UnknownArgumentWarning
from alambic.testing.openai_server import OpenAITestServer, ServerConfig

SPEC = Path(__file__).resolve().parents[2] / "shared" / "spec"
pytestmark = pytest.mark.skipif(not SPEC.is_dir(), reason=f"the spec folder {SPEC} is not here")


def _spec(prefix: str) -> str:
    return next(SPEC.glob(f"{prefix}_*.txt")).read_text()


def _fenced_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)


def _adapt(code: str, base_url: str) -> str:
    code = code.replace("distilabel", "alambic")
    code = re.sub(
        r"from alambic\.llms(\.\w+)? import (InferenceEndpointsLLM|MistralLLM)",
        "from alambic.llms import OpenAILLM",
        code,
    )
    code = re.sub(
        r"InferenceEndpointsLLM\(\s*model_id=(\"[^\"]+\").*?\)",
        rf'OpenAILLM(model=\1, base_url="{base_url}")',
        code,
        flags=re.DOTALL,
    )
    code = re.sub(
        r"MistralLLM\(\s*model=(\"[^\"]+\"),\s*api_key=os\.getenv\(\"\w+\"\),[^\n]*\n\s*\)",
        rf'OpenAILLM(model=\1, base_url="{base_url}")',
        code,
    )
    code = code.replace(
        'OpenAILLM(model="gpt-4")', f'OpenAILLM(model="gpt-4", base_url="{base_url}")'
    )
    return code


def _reply(request: dict[str, Any], index: int) -> str:
    last = request["messages"][-1]["content"]
    if "programming problem" in last:
        return "[Problem Description] Sum two numbers.\n[Solution] def add(a, b): return a + b"
    return "The capital of Spain is Madrid."


@pytest.fixture
def server() -> Iterator[OpenAITestServer]:
    with OpenAITestServer(ServerConfig(reply=_reply)) as srv:
        yield srv


def _run(code: str, namespace: dict[str, Any]) -> dict[str, Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnknownArgumentWarning)
        exec(compile(code, "<spec snippet>", "exec"), namespace)
    return namespace


def _base_url(server: OpenAITestServer) -> str:
    return str(server.base_url)


def test_guide_1_2_text_generation_num_generations_and_grouping(server: OpenAITestServer) -> None:
    blocks = _fenced_blocks(_spec("000"))
    url = _base_url(server)
    results = []
    for block in blocks[:3]:
        code = _adapt(block, url).replace("next(task.process(", "result = next(task.process(")
        results.append(_run(code, {})["result"])
    single, three, grouped = results
    assert list(single[0]) == ["instruction", "generation", "alambic_metadata", "model_name"]
    assert single[0]["generation"] == "The capital of Spain is Madrid."
    assert (
        single[0]["alambic_metadata"]["raw_output_text-generation"]
        == "The capital of Spain is Madrid."
    )
    assert single[0]["model_name"] == "meta-llama/Meta-Llama-3-70B-Instruct"
    assert len(three) == 3
    assert all(r["generation"] == "The capital of Spain is Madrid." for r in three)
    assert len(grouped) == 1
    assert grouped[0]["generation"] == ["The capital of Spain is Madrid."] * 3
    assert len(grouped[0]["alambic_metadata"]) == 3
    assert grouped[0]["model_name"] == "meta-llama/Meta-Llama-3-70B-Instruct"


def test_guide_1_2_custom_task(server: OpenAITestServer) -> None:
    code = _adapt(_fenced_blocks(_spec("000"))[3], _base_url(server))
    ns = _run(code, {})
    from alambic.llms import OpenAILLM

    task = ns["MyCustomTask"](name="custom", llm=OpenAILLM(model="m", base_url=_base_url(server)))
    task.load()
    [row] = next(task.process([{"input_field": "What's the capital of Spain?"}]))
    assert row["output_field"] == "The capital of Spain is Madrid."
    assert list(task.get_outputs()) == ["output_field", "model_name"]


def test_guide_1_4_raw_input_and_step_columns(server: OpenAITestServer) -> None:
    text = _spec("002")
    url = _base_url(server)
    first = text[
        text.index("from distilabel.llms import InferenceEndpointsLLM") : text.index("Note\n")
    ]
    first = first[: first.rindex("# ]") + 3]
    ns = _run(_adapt(first, url).replace("next(task.process(", "result = next(task.process("), {})
    meta = ns["result"][0]["alambic_metadata"]
    assert meta["raw_input_text-generation"] == [
        {"role": "user", "content": "What's the capital of Spain?"}
    ]
    disable = text[
        text.index("disable raw input and output\n") + 29 : text.index("Specifying the number")
    ]
    ns = _run(
        "from alambic.llms import OpenAILLM\nfrom alambic.steps.tasks import TextGeneration\n"
        + _adapt(disable, url),
        {},
    )
    task = ns["task"]
    task.load()
    [row] = next(task.process([{"instruction": "q"}]))
    assert "raw_output_" + str(task.name) not in row["alambic_metadata"]
    assert "raw_input_" + str(task.name) not in row["alambic_metadata"]
    custom = text[text.index("from typing import Any, Dict, List, Union, TYPE_CHECKING") :]
    ns = _run(_adapt(custom, url), {})
    assert list(
        ns["MyCustomTask"](
            llm=ns.get("OpenAILLM")
            or __import__("alambic.llms", fromlist=["OpenAILLM"]).OpenAILLM(model="m", base_url=url)
        ).get_inputs()
    ) == ["input_field"]


def test_guide_1_0_text_generation_with_pipeline_argument_and_oss_instruct(
    server: OpenAITestServer,
) -> None:
    blocks = [_adapt(b, _base_url(server)) for b in _fenced_blocks(_spec("001"))]
    ns: dict[str, Any] = {}
    _run(blocks[0], ns)
    _run(blocks[1], ns)
    assert ns["result"][0]["generation"] == "The capital of Spain is Madrid."
    assert ns["text_generation"].input_batch_size == 8
    assert ns["text_generation"].pipeline.name == "sample-text-pipeline"
    for block in blocks[3:6]:
        _run(block, ns)
    result = ns["result"][0]
    assert result["problem"] == "Sum two numbers."
    assert result["solution"] == "def add(a, b): return a + b"
    assert result["model_name"] == "mistral-medium"


def test_generator_task_guide_as_written(server: OpenAITestServer) -> None:
    blocks = [_adapt(b, _base_url(server)) for b in _fenced_blocks(_spec("003"))]
    from alambic.llms import OpenAILLM

    ns: dict[str, Any] = {"OpenAILLM": OpenAILLM}
    _run(blocks[0], ns)
    _run(blocks[1].replace("next(task.process())", "result = next(task.process())"), ns)
    # The guide's own code overwrites the reply before formatting it and yields one row (a dict);
    # alambic accepts the single row. Its shape is the documented one.
    assert set(ns["result"]) == {"model_name", "output_field"}
    assert ns["result"]["model_name"] == "gpt-4"
    _run(blocks[2], ns)
    task = ns["MyCustomTask"](
        name="custom-generation", llm=OpenAILLM(model="gpt-4", base_url=_base_url(server))
    )
    task.load()
    assert set(next(task.process())) == {"model_name", "output_field"}

"""The examples of the issue-16 doc pages run as written, with fake LLMs swapped in."""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path
from typing import Any

import pytest

from alambic.llms.fake import FakeLLM

DOCS = Path(__file__).parents[3] / "docs" / "tasks"
PAGES = [
    "function-calling.md",
    "process-rewards.md",
    "embedding-data.md",
    "preference-and-style.md",
    "data-steps.md",
    "images.md",
    "reasoning.md",
]


def _replies() -> Any:
    path = Path(__file__).with_name("test_library_pipeline.py")
    spec = importlib.util.spec_from_file_location("library_pipeline_replies", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.good_reply


def blocks(page: str) -> list[str]:
    text = (DOCS / page).read_text(encoding="utf-8")
    return re.findall(r"```python\n(.*?)```", text, re.DOTALL)


@pytest.mark.parametrize(
    ("page", "names"),
    [
        (
            "function-calling.md",
            ["APIGenGenerator(", "APIGenExecutionChecker(", "APIGenSemanticChecker("],
        ),
        ("process-rewards.md", ["MathShepherdGenerator(", "MathShepherdCompleter(", "FormatPRM("]),
        (
            "embedding-data.md",
            ["EmbeddingTaskGenerator(", "GenerateTextRetrievalData(", "BitextRetrievalGenerator("],
        ),
        ("preference-and-style.md", ["CLAIR(", "URIAL(", "EvolComplexityGenerator("]),
        ("data-steps.md", ["DataSampler(", "make_generator_step(", "TruncateTextColumn(", "UMAP("]),
        (
            "images.md",
            [
                "TextGenerationWithImage(",
                "ImageGeneration(",
                "OpenAIImageGeneration(",
                "DiffusersImageGeneration(",
                "to_gemini_parts(",
                "to_vllm_messages(",
            ],
        ),
        ("reasoning.md", ["add_reasoning_column=True", "reasoning_parser="]),
    ],
)
def test_every_page_has_examples(page: str, names: list[str]) -> None:
    text = "\n".join(blocks(page))
    for name in names:
        assert name in text, name


@pytest.mark.slow
def test_doc_examples_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # the function-calling page writes tools.py
    reply = _replies()
    namespace: dict[str, Any] = {"FakeLLM": FakeLLM, "reply": reply}
    for page in PAGES:
        for block in blocks(page):
            if "SentenceTransformerEmbeddings" in block:
                continue  # the clustering pipeline: tests/steps/clustering runs it on real texts
            code = block.replace('OpenAILLM(model="gpt-4o-mini")', "FakeLLM(reply_fn=reply)")
            exec(compile(code, str(DOCS / page), "exec"), namespace)
    out = capsys.readouterr().out
    assert "'required': ['text']" in out  # describe_functions
    assert "<tool_call>" in out
    # FormatPRM(format="trl"): the fake solver's first solution ends at 7, not the golden 14
    assert "[False]" in out
    assert "'hard_negative_document'" in out
    assert "It is 14." in out  # CLAIR
    assert "# Assistant:" in out  # URIAL's prompt
    assert "[{'text': 'abcde'}]" in out
    assert "data:image/png;base64," in out  # TextGenerationWithImage, to_vllm_messages
    assert "image/png True" in out  # to_gemini_parts
    assert "'reasoning': False" in out  # the reasoning page
    assert os.path.exists(tmp_path / "tools.py")

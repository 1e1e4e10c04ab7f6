"""Issue 11 #5: a value whose type is not its column's is never rewritten: the row is refused
with a clear error (kind ``input``) before any request, its column's other values come back
exactly as given, and the output is the same whatever the batch size (the run writes real
parquet parts and reads them back; the requests are counted by a real server)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from alambic.errors import METADATA_COLUMN
from alambic.pipeline import Pipeline
from alambic.steps import KeepColumns, LoadDataFromDicts
from alambic.testing.openai_server import OpenAITestServer

ROWS = [{"id": i, "text": f"ok {i}"} for i in range(10)]
ROWS[3] = {"id": 3, "text": 42}


def error_of(row: dict[str, Any], step: str) -> dict[str, Any] | None:
    return (row.get(METADATA_COLUMN) or {}).get(f"error_{step}")


@pytest.mark.parametrize("batch_size", [1, 2, 3, 50])
def test_one_int_in_a_text_column_refuses_that_row_whatever_the_batch_size(
    tmp_path: Path, batch_size: int, caplog: pytest.LogCaptureFixture
) -> None:
    with Pipeline(name="mixed", cache_dir=tmp_path) as p:
        load = LoadDataFromDicts(name="load", data=ROWS, batch_size=batch_size)
        load >> KeepColumns(columns=["id", "text"], input_batch_size=batch_size)
    with caplog.at_level(logging.WARNING, logger="alambic"):
        rows = p.run(show_progress=False)["default"]["train"].to_list()
    assert [r["id"] for r in rows] == list(range(10))
    texts = [r["text"] for r in rows]
    assert texts == [f"ok {i}" if i != 3 else None for i in range(10)]  # never '"ok 0"'
    assert "mixes values of types" not in caplog.text  # nothing left for parquet to rewrite
    assert "Row refused by step 'load'" in caplog.text
    assert p.last_summary is not None


def test_the_refusal_names_the_column_the_value_its_type_and_the_column_type(
    tmp_path: Path,
) -> None:
    with Pipeline(name="mixed-meta", cache_dir=tmp_path, enable_metadata=True) as p:
        LoadDataFromDicts(name="load", data=ROWS, batch_size=4)
    rows = p.run(show_progress=False)["default"]["train"].to_list()
    refused = [r for r in rows if error_of(r, "load")]
    assert [r["id"] for r in refused] == [3]
    error = error_of(refused[0], "load")
    assert error is not None
    assert error["kind"] == "input"
    assert error["type"] == "ColumnTypeError"
    message = error["message"]
    assert "column 'text' holds 42 (type int" in message
    assert "'ok 0', made it a str column" in message
    assert "str(value)" in message  # the fix


def test_the_first_value_of_the_run_fixes_the_type_even_when_it_is_the_odd_one(
    tmp_path: Path,
) -> None:
    data = [{"text": 7}] + [{"text": f"s{i}"} for i in range(5)]
    results = []
    for batch_size in (1, 4):
        with Pipeline(name=f"first-{batch_size}", cache_dir=tmp_path) as p:
            LoadDataFromDicts(name="load", data=data, batch_size=batch_size)
        results.append([r["text"] for r in p.run(show_progress=False)["default"]["train"]])
    assert results[0] == results[1] == [7, None, None, None, None, None]


Factory = Callable[..., OpenAITestServer]


def run_generation(base_url: str, cache_dir: Path, batch_size: int) -> list[dict[str, Any]]:
    from alambic.llms.openai import OpenAILLM
    from alambic.steps.tasks.text_generation import TextGeneration

    data: list[dict[str, Any]] = [{"instruction": f"question {i}"} for i in range(12)]
    data[3] = {"instruction": 3}
    data[8] = {"instruction": ["a", "list"]}
    llm = OpenAILLM(model="test-model", base_url=base_url, api_key="not-needed", max_retries=0)
    with Pipeline(name=f"mixed-llm-{batch_size}", cache_dir=cache_dir) as p:
        load = LoadDataFromDicts(name="load", data=data, batch_size=batch_size)
        load >> TextGeneration(name="generate", llm=llm, input_batch_size=batch_size)
    rows = p.run(show_progress=False, use_cache=False)["default"]["train"].to_list()
    return [
        {
            "instruction": r["instruction"],
            "generation": r["generation"],
            "load": (error_of(r, "load") or {}).get("kind"),
            "generate": (error_of(r, "generate") or {}).get("kind"),
        }
        for r in rows
    ]


def test_refused_rows_send_no_request_and_the_output_is_identical_at_any_batch_size(
    openai_server_factory: Factory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALAMBIC_REQUEST_CACHE", "0")  # every row that is sent is counted
    server = openai_server_factory(
        reply=lambda request, i: "answer to " + str(request["messages"][-1]["content"])
    )
    outputs = []
    for batch_size in (1, 3, 50):
        server.reset()
        outputs.append(run_generation(server.base_url, tmp_path / str(batch_size), batch_size))
        assert server.stats["total_requests"] == 10  # 12 rows, 2 refused before any request
    assert outputs[0] == outputs[1] == outputs[2]
    rows = outputs[0]
    assert [r["instruction"] for r in rows] == [
        None if i in (3, 8) else f"question {i}" for i in range(12)
    ]
    for i, row in enumerate(rows):
        if i in (3, 8):
            assert row == {
                "instruction": None,
                "generation": None,
                "load": "input",
                "generate": "input",
            }
        else:
            assert row["generation"] == f"answer to question {i}"
            assert row["load"] is None
            assert row["generate"] is None


def test_an_image_column_takes_every_image_source_and_refuses_other_kinds() -> None:
    """A column whose first value is a PIL image also takes paths, bytes and datasets'
    {"bytes", "path"} dicts (the image tasks read each as an image); a number is refused."""
    from PIL import Image

    from alambic.pipeline.executor.column_types import ColumnTypes

    png = Image.new("RGB", (2, 2))
    rows = [
        {"image": png},
        {"image": "/tmp/a.png"},
        {"image": b"\x89PNG"},
        {"image": {"bytes": None, "path": "/tmp/b.png"}},
        {"image": 7},
    ]
    types = ColumnTypes("load")
    types.check(rows)
    assert [row["image"] is None for row in rows] == [False, False, False, False, True]
    assert types.kinds == {"image": "image"}

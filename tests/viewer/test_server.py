"""The viewer's server through a real HTTP client; sources paging through 100,000 rows."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest


def test_endpoints(served: str) -> None:
    assert served.startswith("http://127.0.0.1:")
    with httpx.Client(base_url=served, timeout=30) as client:
        page = client.get("/")
        assert page.status_code == 200
        assert "alambic viewer" in page.text
        assert client.get("/static/app.js").status_code == 200
        info = client.get("/api/info").json()
        assert [s["name"] for s in info["steps"]] == ["load_data_from_dicts_0", "gen"]
        assert [s["rows"] for s in info["steps"]] == [120, 120]
        rows = client.get("/api/rows", params={"step": "gen", "offset": 50, "limit": 20}).json()
        assert rows["total"] == 120
        assert [r["index"] for r in rows["rows"]] == list(range(50, 70))
        assert rows["rows"][0]["values"]["generation"] == "better answer: question 50"
        hits = client.get(
            "/api/rows", params={"step": "gen", "column": "instruction", "value": "question 11"}
        ).json()
        assert [r["values"]["instruction"] for r in hits["rows"]] == [
            "question 11",
            *[f"question {i}" for i in range(110, 120)],
        ]
        failed = client.get("/api/rows", params={"step": "gen", "failure": "any"}).json()
        assert failed["total"] == 11  # question 7 and 70-79
        assert [r["index"] for r in failed["rows"]] == [7, *range(70, 80)]
        by_kind = client.get("/api/rows", params={"step": "gen", "failure": "bad_request"})
        assert by_kind.json()["total"] == 11
        other_kind = client.get("/api/rows", params={"step": "gen", "failure": "timeout"})
        assert other_kind.json()["total"] == 0
        lineage = client.get("/api/row", params={"step": "gen", "index": 7}).json()
        assert [s["step"] for s in lineage["stages"]] == ["load_data_from_dicts_0", "gen"]
        assert "question 7" in lineage["errors"]["gen"]["message"]
        call = next(c for c in lineage["calls"] if c["name"] == "gen")
        assert "question 7" in str(call["raw_input"])
        groups = client.get("/api/failures", params={"step": "gen"}).json()
        assert groups["failed_rows"] == 11
        assert groups["groups"][0]["examples"] == [7, 70, 71]
        diff = client.get("/api/diff", params={"step": "gen"}).json()
        assert diff["rows_a"] == diff["rows_b"] == 120
        assert diff["changed_rows"] == 120
        assert diff["examples"][0]["changes"][0] == {
            "column": "generation",
            "before": "answer: question 0",
            "after": "better answer: question 0",
        }
        plots = client.get("/api/plots", params={"step": "gen"}).json()["plots"]
        titles = [p["title"] for p in plots]
        assert "column score" in titles
        assert "rows over time" in titles
        assert all(p["svg"].lstrip().startswith("<?xml") for p in plots)
        bad = client.get("/api/rows", params={"step": "nope"})
        assert bad.status_code == 400
        assert "nope" in bad.json()["error"]
        assert client.post("/api/rows").status_code == 405  # read-only


@pytest.mark.slow
def test_paging_100k_rows_reads_only_the_page(tmp_path: Path) -> None:
    from alambic.pipeline import Pipeline
    from alambic.steps import LoadDataFromDicts
    from alambic.viewer import open_target
    from alambic.viewer.queries import rows_page

    with Pipeline(name="big") as pipeline:
        LoadDataFromDicts(
            data=[{"n": i, "text": f"row {i}"} for i in range(100_000)], batch_size=500
        )
    pipeline.run(show_progress=False)
    source: Any = open_target("big")
    start = time.perf_counter()
    page = rows_page(source, "load_data_from_dicts_0", 99_950, 50)
    elapsed = time.perf_counter() - start
    assert page["total"] == 100_000
    assert [r["values"]["n"] for r in page["rows"]] == list(range(99_950, 100_000))
    assert elapsed < 1.0, elapsed
    found = rows_page(source, "load_data_from_dicts_0", 0, 10, column="text", value="row 99999")
    assert found["total"] == 1
    assert found["rows"][0]["index"] == 99_999


def test_distiset_folder(tmp_path: Path) -> None:
    from alambic.llms import FakeLLM
    from alambic.pipeline import Pipeline
    from alambic.steps import LoadDataFromDicts
    from alambic.steps.tasks import TextGeneration
    from alambic.viewer import open_target
    from alambic.viewer.queries import rows_page

    with Pipeline(name="ds") as pipeline:
        LoadDataFromDicts(data=[{"instruction": f"q{i}"} for i in range(30)]) >> TextGeneration(
            name="gen", llm=FakeLLM(fail_on=["q2"])
        )
    pipeline.run(show_progress=False).save_to_disk(tmp_path / "out")
    source: Any = open_target(str(tmp_path / "out"))
    assert source.steps() == ["default"]
    page = rows_page(source, "default", 25, 10)
    assert [r["values"]["instruction"] for r in page["rows"]] == [f"q{i}" for i in range(25, 30)]
    assert rows_page(source, "default", 0, 10, failure="any")["rows"][0]["index"] == 2


def test_other_definitions_of_the_pipeline_are_offered_for_the_diff(two_runs: Any) -> None:
    from alambic.viewer.sources import sibling_runs

    source, other = two_runs
    siblings = sibling_runs(source)
    assert list(siblings) == [other.label]
    assert sibling_runs(other).keys() == {source.label}


def test_lineage_skips_steps_that_are_not_one_row_per_row() -> None:
    from alambic.pipeline import Pipeline
    from alambic.steps import ExpandColumns, LoadDataFromDicts
    from alambic.viewer import open_target
    from alambic.viewer.queries import lineage

    with Pipeline(name="expand") as pipeline:
        load = LoadDataFromDicts(data=[{"xs": [1, 2, 3], "k": i} for i in range(4)])
        load >> ExpandColumns(name="expand", columns=["xs"])
    pipeline.run(show_progress=False)
    source: Any = open_target("expand")
    assert source.count("expand") == 12
    result = lineage(source, "expand", 5)
    assert [s["step"] for s in result["stages"]] == ["expand"]
    assert result["stages"][0]["values"] == {"xs": 3, "k": 1}
    assert result["not_aligned"] == ["load_data_from_dicts_0"]

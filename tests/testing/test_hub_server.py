from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("huggingface_hub")
datasets = pytest.importorskip("datasets")
pq = pytest.importorskip("pyarrow.parquet")
yaml = pytest.importorskip("yaml")

from huggingface_hub import HfApi  # noqa: E402

from alambic.distiset import METADATA_COLUMN, Distiset  # noqa: E402
from alambic.llms.openai import OpenAILLM  # noqa: E402
from alambic.steps.generators import LoadDataFromHub  # noqa: E402
from alambic.steps.tasks.text_generation import TextGeneration  # noqa: E402
from alambic.testing.hub_server import HubTestServer, hub_environment  # noqa: E402

SECRET = "sk-this-must-never-leave-the-machine"


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HubTestServer]:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # as in the rest of the suite; lifted below
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "ds-cache"))
    with HubTestServer() as server, hub_environment(server.url, cache_dir=tmp_path / "hub-cache"):
        yield server


def _pipeline_yaml() -> str:
    task = TextGeneration(
        name="gen", llm=OpenAILLM(model="m", base_url="http://127.0.0.1:1/v1", api_key=SECRET)
    )
    return yaml.safe_dump({"pipeline": {"name": "demo", "steps": [task.dump()]}})


def _rows(n: int) -> list[dict[str, object]]:
    return [
        {
            "instruction": f"q{i}",
            "generation": f"a{i}",
            METADATA_COLUMN: {"raw_output_gen": f"a{i}"},
        }
        for i in range(n)
    ]


def test_push_uploads_parquet_card_and_masked_pipeline(hub: HubTestServer) -> None:
    pipeline_yaml = _pipeline_yaml()
    assert SECRET not in pipeline_yaml
    distiset = Distiset.from_rows({"gen": _rows(7)}, pipeline_yaml=pipeline_yaml)
    url = distiset.push_to_hub("me/synthetic", endpoint=hub.url)
    assert url.startswith(f"{hub.url}/datasets/me/synthetic/commit/")

    assert hub.list_files("me/synthetic") == [
        "README.md",
        "default/train/data-00000-of-00001.parquet",
        "pipeline.yaml",
    ]
    for name in hub.list_files("me/synthetic"):
        assert SECRET.encode() not in hub.read_file("me/synthetic", name)
    pushed_yaml = hub.read_file("me/synthetic", "pipeline.yaml").decode()
    assert pushed_yaml == pipeline_yaml
    assert "api_key: '**********'" in pushed_yaml

    card = hub.read_file("me/synthetic", "README.md").decode()
    meta = yaml.safe_load(card.split("---")[1])
    assert meta["configs"] == [
        {"config_name": "default", "data_files": [{"split": "train", "path": "default/train/*"}]}
    ]
    assert "# Dataset card for me/synthetic" in card
    assert "split `train`: 7 rows" in card
    assert '"instruction": "q0"' in card

    table = pq.read_table(
        io.BytesIO(hub.read_file("me/synthetic", "default/train/data-00000-of-00001.parquet"))
    )
    assert table.column_names == ["instruction", "generation", METADATA_COLUMN]
    assert table.to_pylist() == _rows(7)
    assert hub.unhandled == []


def test_push_without_metadata_and_several_leaves_load_back(hub: HubTestServer) -> None:
    distiset = Distiset.from_rows({"a": _rows(3), "b": [{"x": 1}, {"x": 2}]})
    distiset.push_to_hub("me/two", endpoint=hub.url, include_metadata=False, private=True)
    repo = hub.repo("me/two")
    assert repo is not None
    assert repo.private
    assert "a/train/data-00000-of-00001.parquet" in hub.list_files("me/two")
    assert "pipeline.yaml" not in hub.list_files("me/two")

    loaded = datasets.load_dataset("me/two", "a", split="train")
    assert loaded.column_names == ["instruction", "generation"]
    assert loaded["instruction"] == ["q0", "q1", "q2"]
    assert datasets.load_dataset("me/two", "b", split="train")["x"] == [1, 2]

    # pushing again to the same repo is a new commit on the existing repo
    distiset.push_to_hub("me/two", endpoint=hub.url)
    assert len(hub.repo("me/two").commits) == 2  # type: ignore[union-attr]
    api = HfApi(endpoint=hub.url)
    assert api.dataset_info("me/two").sha == hub.repo("me/two").sha  # type: ignore[union-attr]


def test_load_data_from_hub_with_offset_and_num_examples(hub: HubTestServer) -> None:
    Distiset.from_rows({"gen": _rows(10)}).push_to_hub("me/ten", endpoint=hub.url)
    step = LoadDataFromHub(repo_id="me/ten", batch_size=4, num_examples=9)
    step.load()
    assert step.outputs == ["instruction", "generation", METADATA_COLUMN]
    batches = list(step.process(offset=2))
    assert [[r["instruction"] for r in rows] for rows, _ in batches] == [
        ["q2", "q3", "q4", "q5"],
        ["q6", "q7", "q8"],
    ]
    assert [last for _, last in batches] == [False, True]


def test_load_data_from_hub_streaming(hub: HubTestServer, monkeypatch: pytest.MonkeyPatch) -> None:
    # datasets imports torch (seconds) for every streamed dataset when torch is installed
    monkeypatch.setattr(datasets.config, "TORCH_AVAILABLE", False)
    Distiset.from_rows({"gen": _rows(10)}).push_to_hub("me/ten", endpoint=hub.url)
    streamed = LoadDataFromHub(
        repo_id="me/ten", streaming=True, batch_size=3, output_mappings={"instruction": "prompt"}
    )
    streamed.load()
    batches = list(streamed.process(offset=5))
    assert [[r["prompt"] for r in rows] for rows, _ in batches] == [
        ["q5", "q6", "q7"],
        ["q8", "q9"],
    ]
    assert "instruction" not in batches[0][0][0]


def test_unknown_repo_is_an_error(hub: HubTestServer) -> None:
    with pytest.raises(Exception, match=r"me/missing|404"):
        LoadDataFromHub(repo_id="me/missing").load()


def test_hub_environment_restores_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants as hub_constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    endpoint, offline = hub_constants.ENDPOINT, hub_constants.HF_HUB_OFFLINE
    with hub_environment("http://127.0.0.1:9"):
        assert hub_constants.ENDPOINT == "http://127.0.0.1:9"
        assert hub_constants.HF_HUB_OFFLINE is False
        assert datasets.config.HF_ENDPOINT == "http://127.0.0.1:9"
        assert "HF_HUB_OFFLINE" not in os.environ
    assert endpoint == hub_constants.ENDPOINT
    assert offline == hub_constants.HF_HUB_OFFLINE
    assert os.environ["HF_HUB_OFFLINE"] == "1"


def test_lfs_uploads_are_refused_with_a_clear_message(hub: HubTestServer) -> None:
    import json as json_module
    import urllib.error
    import urllib.request

    HfApi(endpoint=hub.url).create_repo("me/lfs", repo_type="dataset")
    body = "\n".join(
        json_module.dumps(item)
        for item in [
            {"key": "header", "value": {"summary": "x"}},
            {"key": "lfsFile", "value": {"path": "big.bin", "algo": "sha256", "oid": "0" * 64}},
        ]
    ).encode()
    request = urllib.request.Request(
        f"{hub.url}/api/datasets/me/lfs/commit/main", data=body, method="POST"
    )
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request)
    assert info.value.code == 400
    assert "regular files only" in info.value.read().decode()

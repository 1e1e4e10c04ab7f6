"""``Distiset.push_to_hub`` called from Python: Hub failures are one clear alambic error."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("huggingface_hub")
pytest.importorskip("datasets")

from alambic.distiset import Distiset
from alambic.errors import AlambicError, HubError
from alambic.testing.hub_server import HubTestServer, hub_environment
from alambic.testing.processes import free_port

TOKEN = "hf_SecretTokenThatMustNeverShow123"


def _distiset() -> Distiset:
    return Distiset.from_rows({"gen": [{"instruction": "q", "generation": "a"}]})


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # lifted by hub_environment where a test says
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "ds-cache"))
    return tmp_path


@pytest.fixture
def hub_with_token(isolated: Path) -> Iterator[HubTestServer]:
    with (
        HubTestServer(token=TOKEN) as server,
        hub_environment(server.url, cache_dir=isolated / "hub-cache"),
    ):
        yield server


def _check_one_clear_error(error: HubError, repo: str) -> str:
    text = str(error)
    assert isinstance(error, AlambicError)
    assert "\n" not in text  # one paragraph, not a traceback
    assert f"Pushing the dataset to {repo!r}" in text
    assert TOKEN not in text
    assert error.__cause__ is not None  # the library's own error, for whoever wants it
    return text


def test_an_unreachable_hub_names_the_repo_the_cause_and_the_fix(isolated: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with (
        hub_environment(url, cache_dir=isolated / "hub-cache"),
        pytest.raises(HubError) as caught,
    ):
        _distiset().push_to_hub("me/data", token=TOKEN, endpoint=url)
    text = _check_one_clear_error(caught.value, "me/data")
    assert url in text
    assert "the Hub cannot be reached" in text
    assert "HF_ENDPOINT" in text
    assert "save_to_disk" in text


def test_offline_mode_says_so_and_how_to_push(isolated: Path) -> None:
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    with pytest.raises(HubError) as caught:
        _distiset().push_to_hub("me/data", token=TOKEN)
    text = _check_one_clear_error(caught.value, "me/data")
    assert "offline mode is on (HF_HUB_OFFLINE=1)" in text
    assert "Unset HF_HUB_OFFLINE" in text


def test_a_wrong_token_is_an_auth_error_without_the_token(hub_with_token: HubTestServer) -> None:
    wrong = TOKEN[:-3] + "999"
    with pytest.raises(HubError) as caught:
        _distiset().push_to_hub("me/data", token=wrong, endpoint=hub_with_token.url)
    text = _check_one_clear_error(caught.value, "me/data")
    assert wrong not in text
    assert "no valid token" in text
    assert "HF_TOKEN" in text
    assert hub_with_token.list_files("me/data") == []


def test_the_right_token_pushes(hub_with_token: HubTestServer) -> None:
    url = _distiset().push_to_hub("me/data", token=TOKEN, endpoint=hub_with_token.url)
    assert "me/data" in url
    assert any(name.endswith(".parquet") for name in hub_with_token.list_files("me/data"))

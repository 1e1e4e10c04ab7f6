"""Secrets echoed by a server, and a full disk, against real pipelines (issue 11 #8, #9)."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.faults.fault_pipeline import run_pipeline

from alambic.pipeline.store.reserve import RESERVE_FILENAME
from alambic.testing.openai_server import OpenAITestServer

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]

Factory = Callable[..., OpenAITestServer]
SECRET = "sk-fault-matrix-SECRET-0123456789"


def files_containing(root: Path, needle: bytes) -> list[Path]:
    return [path for path in root.rglob("*") if path.is_file() and needle in path.read_bytes()]


def test_a_key_echoed_in_error_replies_reaches_no_row_store_parquet_or_log(
    openai_server_factory: Factory, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    # every 500 repeats the Authorization header; no retries, so the rows keep the message
    server = openai_server_factory(seed=2, failure_rate=0.2, echo_auth=True)
    with caplog.at_level(logging.DEBUG, logger="alambic"):
        result = run_pipeline(server.base_url, 100, api_key=SECRET, max_retries=0)
    failed = [r for r in result["rows"] if r["generation"] is None]
    assert failed, "the server failed no request"
    for row in failed:
        assert row["error_kind"] == "server"
        assert "[REDACTED]" in row["error"]
        assert SECRET not in row["error"]
    assert SECRET not in caplog.text
    cache_dir = Path(os.environ["ALAMBIC_CACHE_DIR"])
    assert list(cache_dir.rglob("*.parquet")), "the run wrote no parquet file"
    assert files_containing(cache_dir, SECRET.encode()) == []


def test_a_key_echoed_by_a_401_is_not_in_the_error_that_stops_the_run(
    openai_server_factory: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    server = openai_server_factory(api_key="the-right-key", echo_auth=True)
    with caplog.at_level(logging.DEBUG, logger="alambic"):
        result = run_pipeline(server.base_url, 50, api_key=SECRET)
    assert result["error_type"] == "LLMConfigurationError"
    assert SECRET not in result["error"]
    assert "[REDACTED]" in result["error"]
    assert SECRET not in caplog.text
    cache_dir = Path(os.environ["ALAMBIC_CACHE_DIR"])
    assert files_containing(cache_dir, SECRET.encode()) == []


def test_a_full_disk_stops_the_run_cleanly_and_the_rerun_repeats_little(
    openai_server_factory: Factory, small_tmpfs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # long replies fill the 3 MiB tmpfs with the request cache and run store; a 0.5 MiB
    # reserve (the default 8 MiB would not fit) is freed when the disk fills
    filler = "x" * 4000
    server = openai_server_factory(reply=lambda request, i: filler + str(request["messages"]))
    monkeypatch.setenv("ALAMBIC_CACHE_DIR", str(small_tmpfs / "cache"))
    monkeypatch.setenv("ALAMBIC_DISK_RESERVE_MB", "0.5")
    result = run_pipeline(server.base_url, 2000, max_concurrency=16, batch=50)
    assert result["error_type"] == "StoreError"
    assert "Disk full" in result["error"]
    assert "free some space" in result["error"]
    first = server.stats["total_requests"]
    assert first < 2000
    assert not (small_tmpfs / "cache" / RESERVE_FILENAME).exists()  # spent on the answers
    # free the space (a bigger disk: the cache moves with its folder) and run again
    bigger = small_tmpfs.parent / "bigger"
    bigger.mkdir()
    os.system(f"cp -a {small_tmpfs / 'cache'} {bigger / 'cache'}")
    monkeypatch.setenv("ALAMBIC_CACHE_DIR", str(bigger / "cache"))
    server.reset()
    again = run_pipeline(server.base_url, 2000, max_concurrency=16, batch=50)
    assert again["error"] is None
    rows = again["rows"]
    assert len(rows) == 2000
    assert all(r["generation"] is not None for r in rows)  # no row was failed by the disk
    repeats = server.stats["total_requests"] - (2000 - first)
    # every answer received before the stop reached the request cache (paid from the
    # reserve): at most the requests in flight when the run stopped are sent again
    assert 0 <= repeats <= 16, repeats
    reserve = bigger / "cache" / RESERVE_FILENAME
    assert reserve.stat().st_blocks * 512 >= 512 * 1024  # allocated again for the next fault


def test_a_disk_without_room_for_the_reserve_refuses_to_start_before_any_request(
    openai_server_factory: Factory, small_tmpfs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = openai_server_factory()
    monkeypatch.setenv("ALAMBIC_CACHE_DIR", str(small_tmpfs / "cache"))
    monkeypatch.setenv("ALAMBIC_DISK_RESERVE_MB", "4")  # more than the 3 MiB tmpfs
    result = run_pipeline(server.base_url, 20)
    assert result["error_type"] == "StoreError"
    assert "Not enough free space" in result["error"]
    assert "4 MiB reserve" in result["error"]
    assert "ALAMBIC_DISK_RESERVE_MB=0" in result["error"]
    assert server.stats["total_requests"] == 0
    assert not (small_tmpfs / "cache" / RESERVE_FILENAME).exists()  # no half-made reserve


def test_without_a_reserve_a_full_disk_still_stops_cleanly_and_says_what_is_repaid(
    openai_server_factory: Factory, small_tmpfs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    filler = "z" * 4000
    server = openai_server_factory(reply=lambda request, i: filler + str(request["messages"]))
    monkeypatch.setenv("ALAMBIC_CACHE_DIR", str(small_tmpfs / "cache"))
    monkeypatch.setenv("ALAMBIC_DISK_RESERVE_MB", "0")
    result = run_pipeline(server.base_url, 2000, max_concurrency=16, batch=50)
    assert result["error_type"] == "StoreError"
    assert "Disk full" in result["error"]
    assert "free some space" in result["error"]
    assert not (small_tmpfs / "cache" / RESERVE_FILENAME).exists()
    # the run released its locks: the same process can run the pipeline again at once
    again = run_pipeline(server.base_url, 2000, max_concurrency=16, batch=50)
    assert again["error_type"] == "StoreError"
    assert "Another run" not in again["error"]


def test_a_full_disk_with_the_request_cache_off_gives_the_documented_message(
    openai_server_factory: Factory, small_tmpfs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    filler = "y" * 4000
    server = openai_server_factory(reply=lambda request, i: filler + str(request["messages"]))
    monkeypatch.setenv("ALAMBIC_CACHE_DIR", str(small_tmpfs / "cache"))
    monkeypatch.setenv("ALAMBIC_REQUEST_CACHE", "0")
    monkeypatch.setenv("ALAMBIC_DISK_RESERVE_MB", "0.5")
    result = run_pipeline(server.base_url, 2000, max_concurrency=16, batch=50)
    assert result["error_type"] == "StoreError", result["error"]
    assert "Disk full" in result["error"]
    assert "Errno 28" not in result["error"].split("(")[0]


def test_a_full_disk_under_the_dataset_writer_is_a_store_error_not_errno_28(
    small_tmpfs: Path,
) -> None:
    from alambic.errors import StoreError
    from alambic.utils.parquet import ParquetRowWriter

    (small_tmpfs / "ballast").write_bytes(b"\0" * (3 * 1024 * 1024 - 64 * 1024))
    writer = ParquetRowWriter(small_tmpfs / "data")
    writer.write([{"text": os.urandom(2000).hex()} for _ in range(200)])
    with pytest.raises(StoreError, match=r"Disk full while writing the dataset file"):
        writer.flush()

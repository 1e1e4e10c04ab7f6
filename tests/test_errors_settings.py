"""The row-metadata protocol (one column name, one error-entry builder) and the settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from alambic import settings
from alambic.errors import (
    METADATA_COLUMN,
    AlambicUserError,
    ErrorKind,
    StoreError,
    error_entry,
    row_errors,
    set_row_error,
)


def test_error_entry_from_an_exception_and_from_a_name() -> None:
    exc = ValueError("x" * 5000)
    entry = error_entry(ErrorKind.STEP, exc, type=exc)
    assert entry == {"type": "ValueError", "kind": "step", "message": "x" * 2000}
    assert error_entry("format_output", "bad", type="TypeError") == {
        "type": "TypeError",
        "kind": "format_output",
        "message": "bad",
    }


def test_error_entry_refuses_an_unknown_kind() -> None:
    with pytest.raises(ValueError, match="nonsense"):
        error_entry("nonsense", "x")


def test_every_kind_written_in_rows_is_an_error_kind() -> None:
    for kind in ("step", "format_output", "invalid_response", "structured_output", "input"):
        assert ErrorKind(kind).value == kind


def test_set_row_error_copies_shared_metadata() -> None:
    shared = {"raw_output_a": "hi"}
    one = {"x": 1, METADATA_COLUMN: shared}
    two = {"x": 2, METADATA_COLUMN: shared}
    set_row_error(one, "b", error_entry(ErrorKind.STEP, "boom"))
    assert row_errors(one) == {"b": {"type": "Error", "kind": "step", "message": "boom"}}
    assert row_errors(two) == {}
    assert one[METADATA_COLUMN]["raw_output_a"] == "hi"


def test_settings_read_the_environment_each_time(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("ALAMBIC_CACHE_DIR", str(tmp_path))
    assert settings.cache_dir() == tmp_path
    monkeypatch.setenv("ALAMBIC_REQUEST_CACHE", "0")
    assert settings.request_cache_enabled() is False
    monkeypatch.setenv("ALAMBIC_REQUEST_CACHE", "maybe")
    with pytest.raises(AlambicUserError, match="ALAMBIC_REQUEST_CACHE='maybe'"):
        settings.request_cache_enabled()
    monkeypatch.setenv("ALAMBIC_LOCK_TIMEOUT", "2.5")
    assert settings.lock_timeout() == 2.5
    monkeypatch.setenv("ALAMBIC_LOCK_TIMEOUT", "soon")
    with pytest.raises(AlambicUserError, match="ALAMBIC_LOCK_TIMEOUT='soon'"):
        settings.lock_timeout()
    monkeypatch.setenv("ALAMBIC_STORE_SYNC", "sometimes")
    with pytest.raises(StoreError, match="SOMETIMES"):
        settings.store_sync()

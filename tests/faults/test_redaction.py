"""alambic.redaction: what is removed from error texts and log lines."""

from __future__ import annotations

import logging

import pytest

from alambic.errors import ErrorKind, error_entry
from alambic.redaction import REDACTED, redact, register_secret


def test_registered_keys_and_key_shaped_values_are_redacted() -> None:
    register_secret("plain-registered-key-42")
    text = (
        'got plain-registered-key-42; headers {"authorization": "Bearer abcdef123456", '
        '"x-api-key": "zzz-999-yyy"}; key sk-proj-ABCDEFGHIJKLMNOPQRST; api_key=hunter22'
    )
    clean = redact(text)
    for secret in (
        "plain-registered-key-42",
        "abcdef123456",
        "zzz-999-yyy",
        "sk-proj-ABCDEFGHIJKLMNOPQRST",
        "hunter22",
    ):
        assert secret not in clean
    assert clean.count(REDACTED) == 5
    assert '"authorization": "Bearer [REDACTED]"' in clean


def test_advice_about_keys_is_left_readable() -> None:
    text = "no API key: set the OPENAI_API_KEY environment variable or pass api_key=..."
    assert redact(text) == text


def test_error_entries_and_log_lines_are_redacted(caplog: pytest.LogCaptureFixture) -> None:
    register_secret("another-secret-value-7")
    entry = error_entry(ErrorKind.SERVER, "echo: another-secret-value-7", type="X")
    assert entry["message"] == f"echo: {REDACTED}"
    with caplog.at_level(logging.INFO, logger="alambic"):
        logging.getLogger("alambic").warning("server said %s", "another-secret-value-7")
    assert "another-secret-value-7" not in caplog.text
    assert REDACTED in caplog.text

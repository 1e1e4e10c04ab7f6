"""What a pipeline's runs spent, kept beside its run store (``spend.sqlite``).

One row per (step, model): what was settled, and the worst case of the requests in flight
when it was last written. The budget writes it before every request it lets leave (one small
SQLite transaction, in WAL mode), so a run killed at any instant and started again counts
everything earlier runs may have been charged for: requests that were in flight count at
their worst case. Kept out of ``store.sqlite`` so the budget never waits on the store's
writer thread.
"""

from __future__ import annotations

import sqlite3
import threading
from decimal import Decimal
from pathlib import Path

from alambic.budget import Spend
from alambic.pipeline.store._sqlite import StoreFile, connect, translate_error

__all__ = ["SPEND_FILENAME", "SpendJournal"]

SPEND_FILENAME = "spend.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spend (
    step TEXT NOT NULL,
    model TEXT NOT NULL,
    requests INTEGER NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    usd TEXT,
    in_flight_requests INTEGER NOT NULL,
    in_flight_input_tokens INTEGER NOT NULL,
    in_flight_output_tokens INTEGER NOT NULL,
    in_flight_usd TEXT,
    cached_tokens INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (step, model)
)
"""
_COLUMNS = (
    "step, model, requests, input_tokens, output_tokens, usd, in_flight_requests, "
    "in_flight_input_tokens, in_flight_output_tokens, in_flight_usd, cached_tokens"
)


class SpendJournal:
    """The :class:`~alambic.budget.Journal` of one pipeline folder."""

    def __init__(self, folder: Path, *, fresh: bool = False) -> None:
        self.file = StoreFile(
            folder / SPEND_FILENAME,
            "spend journal",
            f"delete {folder / SPEND_FILENAME} to forget what earlier runs spent",
        )
        folder.mkdir(parents=True, exist_ok=True)
        self._conn = connect(self.file)
        self._lock = threading.Lock()
        self._earlier: dict[tuple[str, str], Spend] = {}
        try:
            self._conn.execute(_SCHEMA)
            columns = {row[1] for row in self._conn.execute("PRAGMA table_info(spend)")}
            if "cached_tokens" not in columns:  # a journal written before cached tokens counted
                self._conn.execute(
                    "ALTER TABLE spend ADD COLUMN cached_tokens INTEGER NOT NULL DEFAULT 0"
                )
            if fresh:
                self._conn.execute("DELETE FROM spend")
            rows = self._conn.execute(f"SELECT {_COLUMNS} FROM spend").fetchall()
        except sqlite3.Error as exc:
            raise translate_error(exc, self.file) from exc
        for row in rows:
            spend = Spend(row[2], row[3], row[4], _dec(row[5]), row[10])
            spend.add(Spend(row[6], row[7], row[8], _dec(row[9])))
            self._earlier[(row[0], row[1])] = spend

    def load(self) -> dict[tuple[str, str], Spend]:
        """Per (step, model), what earlier runs spent (in-flight requests at worst case)."""
        return dict(self._earlier)

    def save(self, entries: dict[tuple[str, str], tuple[Spend, Spend]]) -> None:
        """Record this run's accounts (added to what earlier runs had recorded)."""
        rows = []
        for key, (settled, in_flight) in entries.items():
            total = Spend()
            total.add(self._earlier.get(key, Spend()))
            total.add(settled)
            rows.append(
                (
                    *key,
                    total.requests,
                    total.input_tokens,
                    total.output_tokens,
                    _text(total.usd),
                    in_flight.requests,
                    in_flight.input_tokens,
                    in_flight.output_tokens,
                    _text(in_flight.usd),
                    total.cached_tokens,
                )
            )
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                self._conn.executemany(
                    f"INSERT OR REPLACE INTO spend ({_COLUMNS}) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    rows,
                )
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise translate_error(exc, self.file) from exc

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _dec(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)


def _text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)

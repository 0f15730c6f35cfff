"""The chain worker's database sessions: one per thread, as its threads (each channel,
the intake, the run driver) work side by side and a session serves one at a time."""

from __future__ import annotations

import threading
from typing import Any

import psycopg
from psycopg.rows import dict_row


class ThreadConnections:
    """An autocommit connection per thread, opened on first use and again after it broke."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self.local = threading.local()

    def conn(self) -> psycopg.Connection[dict[str, Any]]:
        conn = getattr(self.local, "conn", None)
        if conn is None or conn.closed:
            conn = self.local.conn = psycopg.connect(self.database_url, row_factory=dict_row, autocommit=True)
        return conn

    def close(self) -> None:
        """The calling thread's connection."""
        conn = getattr(self.local, "conn", None)
        if conn is not None:
            conn.close()

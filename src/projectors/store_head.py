"""The event store's head, as the projector checks positions claimed on the topic.

A checkpoint or an event on Kafka only claims a position; the store alone knows how far
it has got. The projector asks this (through a read-only session: it never needs to
write) when a claim goes beyond the head it last saw.
"""

from __future__ import annotations

import psycopg

HEAD_QUERY = "SELECT coalesce(max(notification_id), 0) FROM ledger_events"


class StoreHead:
    """A callable returning the highest position in the event store (0 when empty)."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self.conn: psycopg.Connection[tuple[int]] | None = None

    def __call__(self) -> int:
        try:
            row = self._conn().execute(HEAD_QUERY).fetchone()
        except psycopg.Error:
            self.close()  # the next call connects again
            raise
        return int(row[0]) if row else 0

    def _conn(self) -> psycopg.Connection[tuple[int]]:
        if self.conn is None or self.conn.closed:
            self.conn = psycopg.connect(
                self.database_url, autocommit=True, options="-c default_transaction_read_only=on"
            )
        return self.conn

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

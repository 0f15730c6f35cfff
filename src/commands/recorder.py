"""The event store's recorder: eventsourcing's, plus appends without a version check,
a hash chain per stream (tamper evidence), and one statement that writes a group of
commands (``write``): the events, checks on streams the commands only read, and the
side table of pending-transfer timeouts, in one transaction.

System accounts (an asset's issuance account, its fee account) have no limit to
protect, so their movements need no read-check-write cycle. Their events are saved
with ``originator_version = 0`` (``ledger.accounts.APPEND_VERSION``, "append at the
end"), and the version is assigned by the insert itself (``ledger_append``, which also
chains each event's hash to its stream's previous one), under the table lock every
insert already takes. Concurrent deposits into distinct accounts therefore never
conflict on the shared issuance account, and its stream stays contiguous for readers.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.persistence import InterfaceError, OperationalError, ProgrammingError, StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.utils import retry
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Identifier


class LedgerRecorder(PostgresApplicationRecorder):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        event_type = SQL("{schema}.{name}").format(
            schema=Identifier(self.datastore.schema), name=Identifier(self.stored_event_type_name)
        )
        # ledger_append (migration 0006) numbers, chains and inserts the events in
        # their input order and returns their positions in that order, as the library
        # expects of its own insert statement.
        self.insert_events_statement = SQL(
            "SELECT notification_id FROM {schema}.ledger_append(%s::{event_type}[]) AS notification_id"
        ).format(schema=Identifier(self.datastore.schema), event_type=event_type)
        self._write_statement = SQL(
            "SELECT position FROM {schema}.ledger_write(%b::uuid[], %b::bigint[], %b::text[], %b::bytea[], "
            "%b::uuid[], %b::bigint[], %b::text[], %b::timestamptz[], %b::text[]) AS position"
        ).format(schema=Identifier(self.datastore.schema))
        table = SQL("{schema}.{table}").format(
            schema=Identifier(self.datastore.schema), table=Identifier(self.events_table_name)
        )
        # One index probe per stream (a plain join would scan the table), each stream's
        # events in version order.
        self._select_beyond_statement = SQL(
            "SELECT e.originator_id, e.originator_version, e.topic, e.state "
            "FROM unnest(%b::uuid[], %b::bigint[]) AS k(id, version) CROSS JOIN LATERAL ("
            "SELECT originator_id, originator_version, topic, state FROM {table} "
            "WHERE originator_id = k.id AND originator_version > k.version ORDER BY originator_version) e"
        ).format(table=table)
        self._range_statement = SQL(
            "SELECT originator_id, originator_version, topic, state FROM {table} "
            "WHERE notification_id BETWEEN %s AND %s ORDER BY notification_id"
        ).format(table=table)
        self._position_statement = SQL(
            "SELECT notification_id FROM {table} WHERE originator_id = %s AND originator_version = %s"
        ).format(table=table)
        # (Parameters in binary: psycopg's text form of a large array costs five times more.)
        # The table lock every insert takes, through the owner's function (migration 0009):
        # the ledger's writer has no right to LOCK the table itself, as it cannot UPDATE it.
        self.lock_table_statements = [
            SQL("SET LOCAL lock_timeout = '{0}s'").format(self.datastore.lock_timeout),
            SQL("SELECT {schema}.ledger_lock_events()").format(schema=Identifier(self.datastore.schema)),
        ]

    def select_beyond(self, stream_ids: Sequence[UUID], versions: Sequence[int]) -> list[StoredEvent]:
        """In one query, each stream's events after the version given for it (0: all)."""
        with self.datastore.get_connection() as conn:  # autocommit: one round trip
            rows = conn.execute(self._select_beyond_statement, (list(stream_ids), list(versions))).fetchall()
        return _stored(rows)

    def select_range(self, first: int, last: int) -> list[StoredEvent]:
        """The events at positions ``first`` to ``last``, in order."""
        with self.datastore.get_connection() as conn:
            rows = conn.execute(self._range_statement, (first, last)).fetchall()
        return _stored(rows)

    def position_of(self, stream_id: UUID, version: int) -> int | None:
        """The notification id of one stored event, if it is stored."""
        with self.datastore.get_connection() as conn:
            row = conn.execute(self._position_statement, (stream_id, version)).fetchone()
        return None if row is None else int(row["notification_id"])

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def write(
        self,
        stored_events: Sequence[StoredEvent],
        *,
        read_versions: dict[str, int],
        timeouts_set: Sequence[tuple[str, datetime]] = (),
        timeouts_cleared: Sequence[str] = (),
    ) -> list[int]:
        """Write a group's events and side tables in one statement (``ledger_write``,
        migration 0010), its own transaction: the events' positions, in order.

        Run again after a lost connection, a write that did commit collides with itself
        (IntegrityError), and the writer then finds the group's commands already done."""
        with self.datastore.get_connection() as conn:
            rows = conn.execute(
                self._write_statement,
                (
                    [e.originator_id for e in stored_events],
                    [e.originator_version for e in stored_events],
                    [e.topic for e in stored_events],
                    [e.state for e in stored_events],
                    list(read_versions),
                    list(read_versions.values()),
                    [transfer_id for transfer_id, _ in timeouts_set],
                    [expires_at for _, expires_at in timeouts_set],
                    list(timeouts_cleared),
                ),
            ).fetchall()
        positions = [row["position"] for row in rows]
        if len(positions) != len(stored_events):
            raise ProgrammingError(f"ledger_write returned {len(positions)} positions for {len(stored_events)} events")
        return positions

    def _fetch_ids_after_insert_events(
        self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        ids = [row["notification_id"] for row in curs.fetchall()]
        if len(ids) != len(stored_events):
            raise ProgrammingError(f"ledger_append returned {len(ids)} positions for {len(stored_events)} events")
        return ids


def _stored(rows: Sequence[DictRow]) -> list[StoredEvent]:
    return [
        StoredEvent(
            originator_id=row["originator_id"],
            originator_version=row["originator_version"],
            topic=row["topic"],
            state=bytes(row["state"]),
        )
        for row in rows
    ]

"""The event store's recorder: eventsourcing's, plus appends without a version check,
a hash chain per stream (tamper evidence), checks on streams a command only read, and
a side table of pending-transfer timeouts written in the same transaction.

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

from eventsourcing.persistence import IntegrityError, ProgrammingError, StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Identifier


class LedgerRecorder(PostgresApplicationRecorder):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._table = SQL("{schema}.{table}").format(
            schema=Identifier(self.datastore.schema), table=Identifier(self.events_table_name)
        )
        event_type = SQL("{schema}.{name}").format(
            schema=Identifier(self.datastore.schema), name=Identifier(self.stored_event_type_name)
        )
        # ledger_append (migration 0006) numbers, chains and inserts the events in
        # their input order and returns their positions in that order, as the library
        # expects of its own insert statement.
        self.insert_events_statement = SQL(
            "SELECT notification_id FROM {schema}.ledger_append(%s::{event_type}[]) AS notification_id"
        ).format(schema=Identifier(self.datastore.schema), event_type=event_type)
        # The table lock every insert takes, through the owner's function (migration 0009):
        # the ledger's writer has no right to LOCK the table itself, as it cannot UPDATE it.
        self.lock_table_statements = [
            SQL("SET LOCAL lock_timeout = '{0}s'").format(self.datastore.lock_timeout),
            SQL("SELECT {schema}.ledger_lock_events()").format(schema=Identifier(self.datastore.schema)),
        ]

    def _insert_stored_events(
        self,
        curs: Cursor[DictRow],
        stored_events: Sequence[StoredEvent],
        *,
        expected_versions: dict[str, int] | None = None,
        timeouts_set: Sequence[tuple[str, datetime]] = (),
        timeouts_cleared: Sequence[str] = (),
        **kwargs: Any,
    ) -> None:
        """Around the events' insert, in the same transaction:

        - before it, refuse the write if a stream the command read (not wrote) has moved
          since. A transfer reads its asset's fee rule without changing it; checking the
          rule's version under the table lock puts a rule change and the transfers around
          it in one order, as if each ran alone. The caller retries on the conflict;
        - after it, keep ``transfer_timeouts`` in step with the pending transfers saved.

        These statements are never server-prepared: in pipeline mode a statement queued
        behind a failed one is skipped, and psycopg would then believe it prepared.
        """
        extra = curs.connection.cursor()  # the events' cursor keeps its RETURNING rows
        if expected_versions:
            self._lock_table(curs)
            extra.execute(
                SQL(
                    "SELECT originator_id::text AS id, max(originator_version) AS version FROM {table} "
                    "WHERE originator_id = ANY(%s::uuid[]) GROUP BY originator_id"
                ).format(table=self._table),
                (list(expected_versions),),
                prepare=False,
            )
            found = {row["id"]: row["version"] for row in extra.fetchall()}
            for stream, version in expected_versions.items():
                if found.get(stream, 0) != version:
                    raise IntegrityError(f"stream {stream} moved from version {version} while the command ran")
        super()._insert_stored_events(curs, stored_events, **kwargs)
        for transfer_id, expires_at in timeouts_set:
            extra.execute(
                "INSERT INTO transfer_timeouts (transfer_id, expires_at) VALUES (%s, %s)",
                (transfer_id, expires_at),
                prepare=False,
            )
        for transfer_id in timeouts_cleared:
            extra.execute("DELETE FROM transfer_timeouts WHERE transfer_id = %s", (transfer_id,), prepare=False)

    def _fetch_ids_after_insert_events(
        self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        ids = [row["notification_id"] for row in curs.fetchall()]
        if len(ids) != len(stored_events):
            raise ProgrammingError(f"ledger_append returned {len(ids)} positions for {len(stored_events)} events")
        return ids

"""The event store's recorder: eventsourcing's, plus appends without a version check,
checks on streams a command only read, and a side table of pending-transfer timeouts
written in the same transaction.

System accounts (an asset's issuance account, its fee account) have no limit to
protect, so their movements need no read-check-write cycle. Their events are saved
with ``originator_version = 0`` (``ledger.accounts.APPEND_VERSION``, "append at the
end"), and the version is assigned by the insert itself, under the table lock every insert already takes. Concurrent
deposits into distinct accounts therefore never conflict on the shared issuance
account, and its stream stays contiguous for readers.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from eventsourcing.persistence import IntegrityError, StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Identifier


class LedgerRecorder(PostgresApplicationRecorder):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        table = self._table = SQL("{schema}.{table}").format(
            schema=Identifier(self.datastore.schema), table=Identifier(self.events_table_name)
        )
        event_type = SQL("{schema}.{name}").format(
            schema=Identifier(self.datastore.schema), name=Identifier(self.stored_event_type_name)
        )
        # Rows keep their input order (WITH ORDINALITY ... ORDER BY n), so the returned
        # notification ids line up with the events, as the library expects.
        self.insert_events_statement = SQL(
            "WITH input AS ("
            "  SELECT e.originator_id, e.originator_version, e.topic, e.state, e.n"
            "  FROM unnest(%s::{event_type}[]) WITH ORDINALITY AS e(originator_id, originator_version, topic, state, n)"
            "), numbered AS ("
            "  SELECT originator_id, topic, state, n,"
            "    CASE WHEN originator_version > 0 THEN originator_version"
            "    ELSE COALESCE((SELECT max(t.originator_version) FROM {table} t"
            "                   WHERE t.originator_id = input.originator_id), 0)"
            "         + row_number() OVER (PARTITION BY originator_id, originator_version > 0 ORDER BY n)"
            "    END AS originator_version"
            "  FROM input"
            ") "
            "INSERT INTO {table} (originator_id, originator_version, topic, state) "
            "SELECT originator_id, originator_version, topic, state FROM numbered ORDER BY n "
            "RETURNING notification_id"
        ).format(table=table, event_type=event_type)

    def _insert_events(
        self,
        curs: Cursor[DictRow],
        stored_events: Sequence[StoredEvent],
        *,
        timeouts_set: Sequence[tuple[str, datetime]] = (),
        timeouts_cleared: Sequence[str] = (),
        **kwargs: Any,
    ) -> None:
        """Keep ``transfer_timeouts`` in step with the events being saved (same transaction)."""
        for transfer_id, expires_at in timeouts_set:
            curs.execute(
                "INSERT INTO transfer_timeouts (transfer_id, expires_at) VALUES (%s, %s)",
                (transfer_id, expires_at),
            )
        for transfer_id in timeouts_cleared:
            curs.execute("DELETE FROM transfer_timeouts WHERE transfer_id = %s", (transfer_id,))
        super()._insert_events(curs, stored_events, **kwargs)

    def _insert_stored_events(
        self,
        curs: Cursor[DictRow],
        stored_events: Sequence[StoredEvent],
        *,
        expected_versions: dict[str, int] | None = None,
        **kwargs: Any,
    ) -> None:
        """Refuse the write if a stream the command read (not wrote) has moved since.

        A transfer reads its asset's fee rule without changing it; checking the rule's
        version under the table lock makes a rule change and the transfers around it
        happen in one order, as if each ran alone. The caller retries on the conflict.
        """
        if expected_versions:
            self._lock_table(curs)
            curs.execute(
                SQL(
                    "SELECT originator_id::text AS id, max(originator_version) AS version FROM {table} "
                    "WHERE originator_id = ANY(%s::uuid[]) GROUP BY originator_id"
                ).format(table=self._table),
                (list(expected_versions),),
            )
            found = {row["id"]: row["version"] for row in curs.fetchall()}
            for stream, version in expected_versions.items():
                if found.get(stream, 0) != version:
                    raise IntegrityError(f"stream {stream} moved from version {version} while the command ran")
        super()._insert_stored_events(curs, stored_events, **kwargs)

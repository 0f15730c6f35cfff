"""The sealer: follows the event store, keeps every stream's head, and now and then
appends a seal event whose Merkle root covers them all.

The root is computed under the event table's write lock (the one every insert takes),
so no write can land between the heads it covers and the seal itself: the seal at
position S covers exactly the events before S. The lock is held only to read the last
few events and hash what moved since the previous seal.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable

import psycopg
from psycopg.rows import tuple_row

from audit.hashes import StreamHeads
from commands.application import Books
from ledger.seals import SEAL_STREAM, Seal
from runtime import metrics

log = logging.getLogger(__name__)

_HEADS_AS_OF = (
    "SELECT DISTINCT ON (originator_id) uuid_send(originator_id), originator_version, hash "
    "FROM ledger_events WHERE notification_id <= %s ORDER BY originator_id, originator_version DESC"
)
_AFTER = (
    "SELECT notification_id, uuid_send(originator_id), originator_version, hash "
    "FROM ledger_events WHERE notification_id > %s ORDER BY notification_id LIMIT 10000"
)


class SealBroken(RuntimeError):
    """The store no longer gives the last seal's root: history before it was changed."""


class Sealer:
    def __init__(self, books: Books, database_url: str) -> None:
        self.books = books
        self.database_url = database_url
        self.heads = StreamHeads()
        self.position = 0  # every event up to here is in ``heads``
        self.last_seal = 0  # the position of the last seal seen
        self._loaded = False
        self.sealed_at = time.monotonic()  # when the store was last known sealed up to its head
        metrics.seal_age().set_function(lambda: time.monotonic() - self.sealed_at)

    def load(self) -> None:
        """Every stream's head, and the position they are current at, from one snapshot.

        Inserts hold the table lock until they commit, so positions become visible in
        order: once position P is visible, every event before it is too."""
        self.heads = StreamHeads()
        with psycopg.connect(self.database_url) as conn:
            conn.read_only = True
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            with conn.transaction():
                row = conn.execute("SELECT coalesce(max(notification_id), 0) FROM ledger_events").fetchone()
                self.position = int(row[0]) if row else 0
                for stream, version, hash_ in conn.execute(_HEADS_AS_OF, (self.position,), binary=True):
                    self.heads.set(bytes(stream), version, bytes(hash_))
                seal = self.heads.heads.get(SEAL_STREAM.bytes)
                if seal is not None:
                    self._check_last_seal(conn, seal[0])
        self._loaded = True

    def _check_last_seal(self, conn: psycopg.Connection, number: int) -> None:  # type: ignore[type-arg]
        """The heads as of the last seal must still give its root. If they do not, history
        before it was changed (the end of a stream cut off, say), and a seal now would
        cover the change up: refuse, loudly."""
        row = conn.execute(
            "SELECT notification_id, state FROM ledger_events WHERE originator_id = %s AND originator_version = %s",
            (SEAL_STREAM, number),
        ).fetchone()
        if row is None:
            raise SealBroken(f"seal {number} is gone")
        self.last_seal = int(row[0])
        try:
            sealed = json.loads(bytes(row[1]))
            through, root = int(sealed["through_position"]), str(sealed["root"])
        except (ValueError, KeyError, TypeError) as exc:
            raise SealBroken(f"seal {number} does not read as a seal ({exc!r})") from None
        heads = StreamHeads()
        for stream, version, hash_ in conn.execute(_HEADS_AS_OF, (through,), binary=True):
            heads.set(bytes(stream), version, bytes(hash_))
        if heads.root().hex() != root:
            raise SealBroken(
                f"the event store no longer gives seal {number}'s root (through position {through}): "
                "history before it was changed; not sealing over it (run `ledger audit verify`)"
            )

    def seal(self) -> int | None:
        """Append a seal if anything was written since the last one; its position, or None."""
        if not self._loaded:
            self.load()
        datastore = self.books.recorder.datastore  # type: ignore[attr-defined]
        with datastore.get_connection() as conn:
            self._follow(conn)  # most of the way, without the lock
            if self.position <= self.last_seal:
                return None
            try:
                with conn.transaction(), conn.cursor() as curs:
                    self.books.recorder._lock_table(curs)  # type: ignore[attr-defined]
                    self._follow(conn)
                    version = self.heads.heads.get(SEAL_STREAM.bytes, (0, b""))[0] + 1
                    event = Seal.event(version, self.position, len(self.heads), self.heads.root().hex())
                    stored = self.books.mapper.to_stored_event(event)
                    self.books.recorder._insert_stored_events(curs, [stored])  # type: ignore[attr-defined]
                    row = curs.fetchone()
                    position = int(row["notification_id"]) if row else 0
            except psycopg.errors.UniqueViolation:
                log.info("another sealer sealed first")
                return None
        log.info("sealed", extra={"position": position, "through": event.through_position, "streams": event.streams})
        self.last_seal = position
        return position

    def _follow(self, conn: psycopg.Connection) -> None:  # type: ignore[type-arg]
        while True:
            with conn.cursor(binary=True, row_factory=tuple_row) as curs:
                rows = curs.execute(_AFTER, (self.position,)).fetchall()
            for position, stream, version, hash_ in rows:
                self.heads.set(bytes(stream), version, bytes(hash_))
                self.position = position
            if len(rows) < 10000:
                return

    def run(self, stop: threading.Event, interval: float, on_ready: Callable[[], None] = lambda: None) -> None:
        """Seal every ``interval`` seconds. A broken seal stops the sealing (and is logged
        every interval), not the service: the rest of the ledger keeps running."""
        on_ready()
        while True:
            try:
                self.seal()
                self.sealed_at = time.monotonic()
            except SealBroken as exc:
                log.error("not sealing", extra={"reason": str(exc)})
            except psycopg.Error as exc:  # a lock not granted in time, a restarting database: next time
                log.warning("sealing failed; trying again later", extra={"error": repr(exc)})
            if stop.wait(interval):
                return

"""The expirer: voids pending transfers whose timeout has passed.

It reads ``transfer_timeouts`` (kept by the recorder in the same transaction as the
events), and expires each transfer through the ledger, so resolving stays the
Transfer aggregate's job: a transfer posted or voided in the meantime is left alone,
and two expirers (or a restart mid-way) cannot resolve one twice.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import psycopg

from commands.application import Books
from ledger.errors import LedgerError

log = logging.getLogger(__name__)


class Expirer:
    def __init__(self, books: Books, database_url: str, *, batch_size: int = 100) -> None:
        self.books = books
        self.conn = psycopg.connect(database_url, autocommit=True)
        self.batch_size = batch_size

    def due(self) -> list[str]:
        rows = self.conn.execute(
            "SELECT transfer_id FROM transfer_timeouts WHERE expires_at <= %s ORDER BY expires_at LIMIT %s",
            (self.books.clock(), self.batch_size),
        ).fetchall()
        return [row[0] for row in rows]

    def expire_due(self) -> int:
        """Expire what is due now; returns how many transfers it expired."""
        expired = 0
        for transfer_id in self.due():
            try:
                if self.books.expire_transfer(transfer_id):
                    expired += 1
                    log.info("expired pending transfer", extra={"transfer": transfer_id})
                else:
                    # Resolved some other way after its row was read: nothing to release.
                    self.conn.execute("DELETE FROM transfer_timeouts WHERE transfer_id = %s", (transfer_id,))
            except LedgerError:
                log.exception("could not expire transfer", extra={"transfer": transfer_id})
        return expired

    def run(self, stop: threading.Event, on_ready: Callable[[], None] = lambda: None, interval: float = 0.5) -> None:
        on_ready()
        while not stop.is_set():
            if self.expire_due() < self.batch_size:
                stop.wait(interval)

    def close(self) -> None:
        self.conn.close()

"""The rows the auditor's replay reads: their shapes, and where they come from (the live
store through a read-only connection, a page at a time, or an export file).
"""

from __future__ import annotations

import base64
import queue
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

from audit.hashes import hash_prefix

# Each check reads only the columns it needs (the database and the driver cost as much as the checks):
# the chain check (position, stream uuid bytes, version, state, stored hash, write (its first
# position), what the hash covers before the state: see ``hash_prefix``) ...
ChainRow = tuple[int, bytes, int, bytes, bytes, int, bytes]
# ... and the books' check (position, stream uuid bytes, version, topic utf-8, state, write).
BookRow = tuple[int, bytes, int, bytes, bytes, int]
Row = ChainRow | BookRow
CHAIN, BOOKS = "chain", "books"
Pages = Callable[[str], Iterator[list[Any]]]  # the pages of rows of one shape (CHAIN or BOOKS)


_PAGE_FROM = "FROM ledger_events WHERE notification_id > %s AND notification_id <= %s ORDER BY notification_id LIMIT %s"
_PAGE_SQL = {
    CHAIN: "SELECT notification_id, uuid_send(originator_id), originator_version, state, hash, write_position, "
    "int8send(notification_id) || uuid_send(originator_id) || int8send(originator_version) "
    "|| int8send(write_position) || convert_to(topic, 'UTF8') || '\\x00'::bytea " + _PAGE_FROM,
    BOOKS: "SELECT notification_id, uuid_send(originator_id), originator_version, convert_to(topic, 'UTF8'), state, "
    "write_position " + _PAGE_FROM,
}


def read_only(url: str) -> Any:
    """A connection that can only read: every transaction is read-only (as on a replica)."""
    import psycopg

    return psycopg.connect(url, autocommit=True, options="-c default_transaction_read_only=on")


def store_head(url: str) -> int:
    """The store's last position now: what a replay of the live store reads up to."""
    with read_only(url) as conn:
        row = conn.execute("SELECT coalesce(max(notification_id), 0) FROM ledger_events").fetchone()
        return int(row[0]) if row else 0


def store_pages_at(url: str, shape: str, *, head: int, page: int = 20_000) -> Iterator[list[Any]]:
    with read_only(url) as conn:
        yield from store_pages(conn, shape, head=head, page=page)


def store_pages(conn: Any, shape: str, *, head: int, page: int = 20_000) -> Iterator[list[Any]]:
    """The stored rows up to ``head``, a page at a time, each page its own short read (a
    replica cancels long ones). Inserts commit in position order (they hold the table
    lock until they commit), so paging by position misses nothing."""
    after = 0
    with conn.cursor(binary=True) as curs:
        while after < head:
            rows = curs.execute(_PAGE_SQL[shape], (after, head, page)).fetchall()
            if not rows:
                return
            yield rows
            after = rows[-1][0]


def read_ahead(pages: Iterator[list[Any]], depth: int = 2) -> Iterator[list[Any]]:
    """The same pages, read by a thread while the caller folds the previous ones: the
    database (another process, another core) prepares the next page meanwhile."""
    ready: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for page in pages:
                while not stop.is_set():
                    try:
                        ready.put(("page", page), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            ready.put(("end", None))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
            ready.put(("error", exc))

    reader = threading.Thread(target=produce, name="verify-read-ahead", daemon=True)
    reader.start()
    try:
        while True:
            kind, item = ready.get()
            if kind == "end":
                return
            if kind == "error":
                raise item
            yield item
    finally:
        stop.set()
        reader.join()


def file_pages(path: Path, shape: str, page: int = 20_000) -> Iterator[list[Any]]:
    """An export's events as stored rows (``ledger audit export`` carries them)."""
    from audit.stream import read_lines

    rows: list[Row] = []
    for event in read_lines(path):
        try:
            position, stream, version = (
                int(event["position"]),
                UUID(event["ledgerstream"]).bytes,
                int(event["sequence"]),
            )
            topic, state = event["ledgertopic"].encode(), base64.b64decode(event["ledgerstate"])
            write = int(event["ledgerwrite"])
            if shape == CHAIN:
                prefix = hash_prefix(position, stream, version, write, topic)
                rows.append((position, stream, version, state, bytes.fromhex(event["ledgerhash"]), write, prefix))
            else:
                rows.append((position, stream, version, topic, state, write))
        except Exception as exc:  # noqa: BLE001 - any malformed line is the export's fault, named as such
            raise ValueError(f"{path}: event {event.get('id')!r} lacks the stored form ({exc!r})") from None
        if len(rows) == page:
            yield rows
            rows = []
    if rows:
        yield rows

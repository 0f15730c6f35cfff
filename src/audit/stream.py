"""The event stream for auditors: every stored event, in order, as a CloudEvents object
(JSON lines), with the same payloads as on Kafka, read page by page (constant memory).

Each object carries who asked for the write (``ledgerkeyid``: an API key id, or
``service:NAME``; absent for events written before keys existed) and the event as stored,
in extension attributes (``ledgerstream``, ``ledgertopic``, ``ledgerstate`` in base64,
``ledgerhash``, ``ledgerwrite``), so that an
export can be checked against the hash chains and seals (``ledger audit verify
--from-file``) by us or by the auditor's own tools."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from eventsourcing.persistence import Notification

from commands.application import Books
from contracts.events import KEY_ID_HEADER
from contracts.stored_events import StoredEventEncoder

PAGE = 2000


def events(
    books: Books,
    *,
    after_position: int = 0,
    to_position: int | None = None,
    from_time: datetime | None = None,
    to_time: datetime | None = None,
) -> Iterator[dict[str, Any]]:
    """Stored events after ``after_position``, in position order, up to ``to_position``
    or ``to_time`` (an event's recorded time), always ending at the end of a write: the
    events one command saved share a write (and its first position), and a balance "as
    of" the middle of one would show half a transfer."""
    encoder = StoredEventEncoder(books)
    position = after_position
    last_write: int | None = None
    while True:
        page = _page(books, position)
        for notification, write, hash_ in page:
            event = cloud_event(encoder, notification, write=write, hash_=hash_)
            moment = datetime.fromisoformat(event["time"])
            past = (to_position is not None and notification.id > to_position) or (
                to_time is not None and moment > to_time
            )
            if past and write != last_write:
                return
            last_write = write
            if from_time is None or moment >= from_time:
                yield event
        if len(page) < PAGE:
            return
        position = page[-1][0].id


def _page(books: Books, after: int) -> list[tuple[Notification, int, bytes]]:
    """The next stored events, each with its write (first position) and hash."""
    table = f"{books.name.lower()}_events"
    with books.recorder.datastore.transaction(commit=False) as curs:  # type: ignore[attr-defined]
        curs.execute(
            f"SELECT notification_id, originator_id, originator_version, topic, state, hash, write_position "
            f"FROM {table} WHERE notification_id > %s ORDER BY notification_id LIMIT %s",
            (after, PAGE),
        )
        rows = curs.fetchall()
    return [
        (
            Notification(
                id=row["notification_id"],
                originator_id=row["originator_id"],
                originator_version=row["originator_version"],
                topic=row["topic"],
                state=bytes(row["state"]),
            ),
            row["write_position"],
            bytes(row["hash"]),
        )
        for row in rows
    ]


def cloud_event(encoder: StoredEventEncoder, notification: Any, *, write: int, hash_: bytes) -> dict[str, Any]:
    message = encoder.encode(notification)
    h = message.headers
    event = {
        "specversion": h["ce_specversion"],
        "id": h["ce_id"],
        "source": h["ce_source"],
        "type": h["ce_type"],
        "subject": h["ce_subject"],
        "time": h["ce_time"],
        "sequence": h["ce_sequence"],
        "position": int(h["ce_position"]),
        "datacontenttype": "application/json",
        "data": json.loads(message.value),
        "ledgerstream": str(notification.originator_id),
        "ledgertopic": notification.topic,
        "ledgerstate": base64.b64encode(notification.state).decode(),
        "ledgerhash": hash_.hex(),
        "ledgerwrite": write,
    }
    if KEY_ID_HEADER in h:
        event["ledgerkeyid"] = h[KEY_ID_HEADER]
    return event


def write_lines(stream: Iterable[dict[str, Any]], out: IO[str]) -> int:
    count = 0
    for event in stream:
        out.write(json.dumps(event, separators=(",", ":"), sort_keys=True))
        out.write("\n")
        count += 1
    return count


def read_lines(path: Path) -> Iterator[dict[str, Any]]:
    """An export, one event at a time."""
    with path.open() as lines:
        for number, line in enumerate(lines, 1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path}:{number}: not a JSON object ({exc.msg})") from None

"""Rebuild the read models from the event store into a new generation, without downtime.

The event store (not Kafka, whose retention may be shorter) is replayed through the
projector's own writer into a fresh database while queries keep reading the active
one. When the replay has caught up, the projector is paused for a moment, the replay
takes the last events, the projector's Kafka state is copied over, the new generation
becomes active, and the projector resumes on it. Events the projector then receives
again are ones the replay already applied; the writer ignores them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from commands.application import Books
from contracts.events import from_message
from contracts.generations import Generations
from contracts.readmodel import PROJECTOR_STATE, WATERMARK_ID
from contracts.stored_events import StoredEventEncoder
from projectors.views import ReadModelWriter

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]  # (position reached, head)


def replay(
    books: Books,
    encoder: StoredEventEncoder,
    writer: ReadModelWriter,
    after: int,
    progress: Progress,
    batch_size: int = 2000,
) -> int:
    """Apply every event after ``after`` up to the current head; returns the last position."""
    position = after
    while True:
        notifications = books.recorder.select_notifications(start=position, limit=batch_size, inclusive_of_start=False)
        if not notifications:
            return position
        events = []
        for notification in notifications:
            message = encoder.encode(notification)
            events.append(from_message(message.headers, message.value))
        writer.apply_batch(events)
        position = notifications[-1].id
        progress(position, max(position, books.head_position()))


def rebuild(
    books: Books,
    generations: Generations,
    progress: Progress = lambda position, head: None,
    pause_timeout: float = 10.0,
) -> int:
    """Build and activate a new generation; returns its number."""
    old = generations.active()
    new = old + 1
    generations.drop(new)  # what a rebuild that stopped half-way left
    target = generations.database(new)
    writer = ReadModelWriter(target)
    writer.create_indexes()
    encoder = StoredEventEncoder(books)
    position = replay(books, encoder, writer, 0, progress)
    log.info("replayed; pausing the projector to switch", extra={"position": position, "generation": new})

    generations.request_pause()
    try:
        deadline = time.monotonic() + pause_timeout
        while not generations.pause_acknowledged() and time.monotonic() < deadline:
            time.sleep(0.05)
        if not generations.pause_acknowledged():
            log.warning("no projector acknowledged the pause; switching anyway (is it running?)")
        position = replay(books, encoder, writer, position, progress)
        source = generations.database(old)[PROJECTOR_STATE]
        for doc in source.find({"_id": {"$ne": WATERMARK_ID}}):
            target[PROJECTOR_STATE].replace_one({"_id": doc["_id"]}, doc, upsert=True)
        writer.raise_watermark(position)
        generations.activate(new)
    finally:
        generations.resume()
    if old > 1:
        generations.drop(old - 1)  # keep one generation back, for comparison or rollback
    log.info("rebuilt read model active", extra={"generation": new, "position": position})
    return new

"""The projector: Kafka to the MongoDB read models.

It assigns itself every partition (no consumer-group join to wait for) and keeps its
offsets in MongoDB next to the read models, written after the batch they cover, so a
crash replays at most one batch, which the writer ignores. The watermark (the position
up to which everything is applied) is the lowest relay checkpoint seen across all
partitions.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from bson.errors import InvalidDocument
from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, TopicPartition
from pymongo import UpdateOne
from pymongo.database import Database

from contracts.dead_letters import DeadLetter
from contracts.events import LedgerEvent
from contracts.generations import Generations
from contracts.readmodel import PROJECTOR_STATE, watermark
from contracts.validation import BadMessage, Checkpoint, read_message
from projectors.views import ReadModelWriter, relay_report, watermark_raise
from runtime import kafka, metrics

log = logging.getLogger(__name__)

CONSUMER = "projector"
BEYOND_HEAD = "beyond_head"  # a position the event store has not reached
UNREADABLE = "unreadable"  # passed the checks, yet the writer could not apply it
# What applying a wrong event raises, as opposed to the read-model store failing.
UNAPPLICABLE = (KeyError, ValueError, TypeError, OverflowError, InvalidDocument)
GENERATIONS_EVERY = 0.5  # seconds between looks at the active generation while running


def _claim(item: LedgerEvent | Checkpoint) -> int:
    """The highest event-store position a message claims exists."""
    return item.position if isinstance(item, LedgerEvent) else max(item.position, item.head)


class Projector:
    """Reads ``topic_watch``'s topic with the ``consumer`` it is given
    (``runtime.kafka.consumer``), which it assigns itself and closes when ``run`` ends;
    the clients are passed in so the one wiring module configures them
    (``entrypoints.bootstrap``)."""

    def __init__(
        self,
        db: Database[Any],
        consumer: Consumer,
        topic_watch: kafka.TopicWatch,
        *,
        store_head: Callable[[], int],
        batch_size: int = 500,
        generations: Generations | None = None,
    ) -> None:
        self.db = db
        self.writer = ReadModelWriter(db)
        self.generations = generations  # when given, the projector follows rebuilds
        self.topic = topic_watch.topic
        self.batch_size = batch_size
        self.topic_watch = topic_watch
        self.consumer = consumer
        self.offsets: dict[int, int] = {}
        self.checkpoints: dict[int, int] = {}
        self.store_head = store_head  # the event store's head, read when a message claims more
        self.known_head = 0
        self._paused = False
        self._generations_checked = float("-inf")

    def check_topic(self) -> None:
        """A broker that restarted empty brings the topic back with a new id: read it
        again from the start (everything is republished; the writer ignores what it has)."""
        if self.topic_watch.recreated():
            log.warning("the topic was recreated (the broker lost its data); reading it again from the start")
            self.checkpoints.clear()
            self.offsets.clear()
            self.consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in range(self.partitions)])

    @property
    def topic_id(self) -> str:
        return self.topic_watch.topic_id

    @property
    def partitions(self) -> int:
        return self.topic_watch.partitions

    def start(self) -> None:
        self.writer.create_indexes()
        self.topic_watch.ensure()
        assignment = []
        for partition in range(self.partitions):
            state = self.db[PROJECTOR_STATE].find_one({"_id": f"partition:{partition}"}) or {}
            if state.get("checkpoint") is not None:
                self.checkpoints[partition] = int(state["checkpoint"])
            if state.get("topic_id") == self.topic_id:
                offset = int(state["offset"])
            else:
                if state:
                    log.warning("topic was recreated; reading it from the start", extra={"partition": partition})
                offset = OFFSET_BEGINNING
            assignment.append(TopicPartition(self.topic, partition, offset))
        self.consumer.assign(assignment)
        log.info("projector starting", extra={"topic": self.topic, "partitions": self.partitions})

    def follow_generations(self) -> bool:
        """Pause while a rebuild switches generations, then write to the active one.

        Returns False while paused (nothing may be applied)."""
        if self.generations is None:
            return True
        # Looked at every GENERATIONS_EVERY seconds while running (one read, not one per
        # batch), at every call while paused. A rebuild waits for the acknowledgement
        # before it takes the projector's state over, and resumes it only after the
        # switch, which the paused projector then sees before it applies anything.
        now = time.monotonic()
        if not self._paused and now - self._generations_checked < GENERATIONS_EVERY:
            return True
        self._generations_checked = now
        generation, paused = self.generations.state()
        self._paused = paused
        if paused:
            self.generations.acknowledge_pause()
            return False
        active = self.generations.database(generation)
        if active.name != self.db.name:
            log.info("switching to a rebuilt read model", extra={"database": active.name})
            self.db, self.writer = active, ReadModelWriter(active)
        return True

    def process_batch(self, timeout: float = 0.5) -> int:
        """Apply the next batch of messages; returns how many were read (set aside ones included)."""
        messages = kafka.take_batch(self.consumer, timeout, self.batch_size, service="projector")
        if not messages:
            return 0
        touched: set[int] = set()
        read: list[tuple[Message, LedgerEvent | Checkpoint]] = []
        rejected: list[DeadLetter] = []
        for message in messages:
            partition = int(message.partition() or 0)
            try:
                read.append((message, read_message(message)))
            except BadMessage as exc:
                rejected.append(DeadLetter.of(message, self.topic_id, exc))
            self.offsets[partition] = int(message.offset() or 0) + 1
            touched.add(partition)
        events: list[tuple[Message, LedgerEvent]] = []
        relay_seen = (0, 0)  # (relay position, event-store head) reported by checkpoints
        for message, item in self._within_store(read, rejected):
            if isinstance(item, LedgerEvent):
                events.append((message, item))
            # One from another incarnation of the topic proves nothing about this one.
            elif item.topic_id in (None, self.topic_id):
                partition = int(message.partition() or 0)
                self.checkpoints[partition] = max(item.position, self.checkpoints.get(partition, 0))
                relay_seen = (max(relay_seen[0], item.position), max(relay_seen[1], item.head))
        self._apply(events, rejected)
        self._set_aside(rejected)
        # Progress in one round trip, after the documents it vouches for.
        progress = [
            UpdateOne(
                {"_id": f"partition:{partition}"},
                {
                    "$set": {
                        "topic_id": self.topic_id,
                        "offset": self.offsets[partition],
                        "checkpoint": self.checkpoints.get(partition),
                    }
                },
                upsert=True,
            )
            for partition in touched
        ]
        if relay_seen[0]:
            progress.append(relay_report(*relay_seen))
        if touched and len(self.checkpoints) >= self.partitions:
            applied = min(self.checkpoints[p] for p in range(self.partitions))
            progress.append(watermark_raise(applied))
            metrics.projector_watermark().set(applied)
            metrics.projector_lag().set(max(max(relay_seen[1], self.known_head) - applied, 0))
        if progress:
            self.db[PROJECTOR_STATE].bulk_write(progress, ordered=False)
        return len(messages)

    def _within_store(
        self, read: list[tuple[Message, LedgerEvent | Checkpoint]], rejected: list[DeadLetter]
    ) -> list[tuple[Message, LedgerEvent | Checkpoint]]:
        """The messages whose positions the event store has reached; the others are set
        aside (a checkpoint claiming more would raise the watermark over events that do
        not exist). The head is read again only when a claim goes beyond the one known:
        at most once a batch."""
        claims = [(message, item, _claim(item)) for message, item in read]
        highest = max((claim for _, _, claim in claims), default=0)
        if highest > self.known_head:
            self.known_head = max(self.known_head, self.store_head())
        accepted = []
        for message, item, claim in claims:
            if claim > self.known_head:
                error = BadMessage(BEYOND_HEAD, f"claims position {claim}; the event store's head is {self.known_head}")
                rejected.append(DeadLetter.of(message, self.topic_id, error))
            else:
                accepted.append((message, item))
        return accepted

    def _apply(self, events: list[tuple[Message, LedgerEvent]], rejected: list[DeadLetter]) -> None:
        """Apply the batch's events; should one that passed the checks still not apply
        (a case they missed), each is applied alone and that one is set aside, so that
        one message never stops the projector. Failures of the store itself still raise."""
        try:
            self.writer.apply_batch([event for _, event in events])
            return
        except UNAPPLICABLE:
            log.exception("a batch did not apply; applying its events one by one")
        for message, event in events:
            try:
                self.writer.apply(event)
            except UNAPPLICABLE as exc:
                error = BadMessage(UNREADABLE, f"{type(exc).__name__}: {exc}"[:500])
                rejected.append(DeadLetter.of(message, self.topic_id, error))

    def _set_aside(self, rejected: list[DeadLetter]) -> None:
        """Record dead letters before the offsets that pass them (a crash in between
        records them again: keyed by topic, partition and offset, they are kept once)."""
        if not rejected:
            return
        metrics.DEAD_LETTERS.labels("projector").inc(len(rejected))
        for letter in rejected:
            letter.log(log, CONSUMER)
        now = datetime.now(UTC).isoformat()
        self.writer.record_dead_letters([letter.document(CONSUMER, now) for letter in rejected])

    def run(self, stop: threading.Event, on_ready: Callable[[], None] = lambda: None) -> None:
        self.start()
        on_ready()
        last_report = time.monotonic()
        try:
            while not stop.is_set():
                if self.follow_generations():
                    self.check_topic()
                    self.process_batch()
                else:
                    stop.wait(0.05)
                if time.monotonic() - last_report > 10:
                    log.info("projector position", extra={"watermark": watermark(self.db)})
                    last_report = time.monotonic()
        finally:
            self.consumer.close()

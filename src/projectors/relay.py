"""The relay: the event store's notification log, in order, onto Kafka.

The event store is the outbox: nothing is published "after commit" by the writers.
The relay reads committed notifications after its position, publishes them with an
idempotent producer followed by a checkpoint to every partition (in the same flush, so
each partition's checkpoint lands after the round's events in it), and waits until the
broker confirmed every one before it moves its position on. Its position is stored (in
PostgreSQL) only once that confirmation is in, never ahead of it.

Rounds are few and large on purpose. A round starts at most every ``interval`` seconds
while commits keep coming (at once when the relay was idle, and back to back while it
is behind by a full batch), so a steady load makes one record batch per partition per
round instead of one per commit: the embedded broker's fetch cost grows with the
number of record batches it holds, and every consumer pays it on every fetch. The
stored position is written at most every ``save_interval`` seconds (and when the relay
stops), not after every round: a crash republishes what was confirmed since the last
save (at most ``save_interval`` seconds of rounds) and the round in flight, nothing
is skipped, and consumers deduplicate by position or ``ce_id``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
from confluent_kafka import KafkaError, Producer

from commands.application import Books
from contracts.events import Message, checkpoint_message
from contracts.stored_events import StoredEventEncoder
from runtime import kafka, metrics

log = logging.getLogger(__name__)


class DeliveryFailed(RuntimeError):
    pass


class RelayState:
    """The relay's stored position, in the event store's database."""

    def __init__(self, database_url: str, topic: str) -> None:
        self.conn = psycopg.connect(database_url, autocommit=True)
        self.topic = topic

    def load(self) -> tuple[int, str | None]:
        row = self.conn.execute("SELECT position, topic_id FROM relay_state WHERE topic = %s", (self.topic,)).fetchone()
        return (int(row[0]), str(row[1])) if row else (0, None)

    def save(self, position: int, topic_id: str) -> None:
        self.conn.execute(
            "INSERT INTO relay_state (topic, position, topic_id) VALUES (%s, %s, %s) "
            "ON CONFLICT (topic) DO UPDATE SET position = EXCLUDED.position, "
            "topic_id = EXCLUDED.topic_id, updated_at = now()",
            (self.topic, position, topic_id),
        )

    def close(self) -> None:
        self.conn.close()


class Relay:
    """Publishes with the ``producer`` it is given (``runtime.kafka.producer``: idempotent,
    ordered) to ``topic_watch``'s topic, and flushes it when ``run`` ends; the clients are
    passed in so the one wiring module configures them (``entrypoints.bootstrap``)."""

    def __init__(
        self,
        books: Books,
        state: RelayState,
        database_url: str,
        producer: Producer,
        topic_watch: kafka.TopicWatch,
        *,
        batch_size: int = 1000,
        interval: float = 0.25,
        save_interval: float = 1.0,
    ) -> None:
        self.books = books
        self.state = state
        self.database_url = database_url
        self.topic = topic_watch.topic
        self.batch_size = batch_size
        self.topic_watch = topic_watch
        self.producer = producer
        self.encoder = StoredEventEncoder(books)
        self.interval = interval
        self.save_interval = save_interval
        self.position = 0
        self._saved_position = 0
        self._saved_at = float("-inf")

    def start(self) -> None:
        self.topic_watch.ensure()
        position, stored_topic_id = self.state.load()
        if stored_topic_id is not None and stored_topic_id != self.topic_id:
            log.warning(
                "the topic was recreated (the broker lost its data); republishing from the start",
                extra={"topic": self.topic, "stored_position": position},
            )
            position = 0
        self.position = self._saved_position = position
        log.info("relay starting", extra={"position": position, "topic": self.topic, "partitions": self.partitions})

    def check_topic(self) -> None:
        """Notice, while running, a broker that restarted empty: the topic comes back with a
        new id (recreated here if it is missing), and everything is published again."""
        if self.topic_watch.recreated():
            log.warning("the topic was recreated (the broker lost its data); republishing from the start")
            self.position = self._saved_position = 0
            self.state.save(0, self.topic_id)

    @property
    def topic_id(self) -> str:
        return self.topic_watch.topic_id

    @property
    def partitions(self) -> int:
        return self.topic_watch.partitions

    def publish_batch(self) -> int:
        """Publish the next batch (a round); returns how many events it published.

        The position moves on once the broker confirmed the round, and is stored when
        the last save is ``save_interval`` seconds old (``save_position`` stores it now)."""
        notifications = self.books.recorder.select_notifications(
            start=self.position, limit=self.batch_size, inclusive_of_start=False
        )
        if not notifications:
            return 0
        last = notifications[-1].id
        head = last if len(notifications) < self.batch_size else self.books.head_position()
        # One flush for both: a partition keeps the order of what was produced to it, so
        # each checkpoint lands after the batch's events in its partition.
        self._deliver(
            [self.encoder.encode(n) for n in notifications],
            [checkpoint_message(last, head, self.topic_id)] * self.partitions,
        )
        self.position = last
        metrics.relay_position().set(last)
        metrics.relay_lag().set(max(head - last, 0))
        self.save_position(force=False)
        return len(notifications)

    def save_position(self, *, force: bool = True) -> None:
        """Store the confirmed position (unless ``force`` is off and the last save is recent)."""
        if self.position == self._saved_position:
            return
        if not force and time.monotonic() - self._saved_at < self.save_interval:
            return
        self.state.save(self.position, self.topic_id)
        self._saved_position = self.position
        self._saved_at = time.monotonic()

    def run(self, stop: threading.Event, on_ready: Callable[[], None] = lambda: None) -> None:
        self.start()
        with psycopg.connect(self.database_url, autocommit=True) as listener:
            listener.execute("LISTEN ledger_events")
            on_ready()
            last_report = time.monotonic()
            next_round = 0.0
            while not stop.is_set():
                self.check_topic()
                # Let commits gather into one round: fewer, larger record batches.
                if (wait := next_round - time.monotonic()) > 0 and stop.wait(wait):
                    break
                started = time.monotonic()
                published = self.publish_batch()
                if published == 0:
                    self.save_position(force=False)
                    for _ in listener.notifies(timeout=min(0.5, self.save_interval), stop_after=1):
                        pass
                # A full batch means the relay is behind: the next round goes at once.
                next_round = started + self.interval if 0 < published < self.batch_size else 0.0
                if time.monotonic() - last_report > 10:
                    head = self.books.head_position()
                    log.info("relay lag", extra={"position": self.position, "head": head, "lag": head - self.position})
                    metrics.relay_position().set(self.position)
                    metrics.relay_lag().set(max(head - self.position, 0))
                    last_report = time.monotonic()
        self.producer.flush(10)
        self.save_position()

    def _deliver(self, events: list[Message], checkpoints: list[Message]) -> None:
        """Events by key, then checkpoint ``i`` to partition ``i``; all acknowledged, or raise."""
        errors: list[KafkaError] = []

        def on_delivery(err: KafkaError | None, _msg: object) -> None:
            if err is not None:
                errors.append(err)

        addressed: list[tuple[Message, dict[str, Any]]] = [(m, {"key": m.key}) for m in events]
        addressed += [(m, {"partition": index}) for index, m in enumerate(checkpoints)]
        for message, kwargs in addressed:
            while True:
                try:
                    self.producer.produce(
                        self.topic,
                        value=message.value,
                        headers=message.header_list(),
                        on_delivery=on_delivery,
                        **kwargs,
                    )
                    break
                except BufferError:
                    self.producer.poll(0.1)
        remaining = self.producer.flush(20)
        if remaining or errors:
            raise DeliveryFailed(f"{remaining} undelivered, errors: {errors[:3]}")

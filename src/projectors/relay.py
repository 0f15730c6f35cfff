"""The relay: the event store's notification log, in order, onto Kafka.

The event store is the outbox: nothing is published "after commit" by the writers.
The relay reads committed notifications after its stored position, publishes them with
an idempotent producer, waits until the broker confirmed every one, writes a
checkpoint to every partition, and only then stores the new position. A crash at any
point republishes at most one batch; consumers deduplicate by position or ``ce_id``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any
from uuid import UUID

import psycopg
from confluent_kafka import KafkaError, Producer

from commands.application import Ledger
from projectors import kafka
from projectors.messages import Message, SubjectRef, checkpoint_message, creation_ref, to_message

log = logging.getLogger(__name__)


class DeliveryFailed(RuntimeError):
    pass


class StoredEventEncoder:
    """Stored events (notifications) to messages; remembers each stream's public id."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self._refs: dict[UUID, SubjectRef] = {}

    def encode(self, notification: Any) -> Message:
        event = self.ledger.mapper.to_domain_event(notification)
        if notification.originator_version == 1:
            return to_message(event, notification.id)
        return to_message(event, notification.id, self._ref(event.originator_id))

    def _ref(self, originator_id: UUID) -> SubjectRef:
        """A stream's public id and asset, from its first event (cached)."""
        ref = self._refs.get(originator_id)
        if ref is None:
            ref = creation_ref(next(iter(self.ledger.events.get(originator_id, lte=1))))
            if len(self._refs) > 100_000:
                self._refs.clear()
            self._refs[originator_id] = ref
        return ref


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
    def __init__(
        self,
        ledger: Ledger,
        state: RelayState,
        database_url: str,
        bootstrap: kafka.Broker,
        topic: str,
        partitions: int,
        *,
        batch_size: int = 1000,
        retention_ms: int = -1,
    ) -> None:
        self.ledger = ledger
        self.state = state
        self.database_url = database_url
        self.topic = topic
        self.batch_size = batch_size
        self.topic_watch = kafka.TopicWatch(bootstrap, topic, partitions, retention_ms)
        self.producer = Producer(kafka.producer_config(bootstrap))
        self.encoder = StoredEventEncoder(ledger)
        self.position = 0

    def start(self) -> None:
        self.topic_watch.ensure()
        position, stored_topic_id = self.state.load()
        if stored_topic_id is not None and stored_topic_id != self.topic_id:
            log.warning(
                "the topic was recreated (the broker lost its data); republishing from the start",
                extra={"topic": self.topic, "stored_position": position},
            )
            position = 0
        self.position = position
        log.info("relay starting", extra={"position": position, "topic": self.topic, "partitions": self.partitions})

    def check_topic(self) -> None:
        """Notice, while running, a broker that restarted empty: the topic comes back with a
        new id (recreated here if it is missing), and everything is published again."""
        if self.topic_watch.recreated():
            log.warning("the topic was recreated (the broker lost its data); republishing from the start")
            self.position = 0
            self.state.save(0, self.topic_id)

    @property
    def topic_id(self) -> str:
        return self.topic_watch.topic_id

    @property
    def partitions(self) -> int:
        return self.topic_watch.partitions

    def publish_batch(self) -> int:
        """Publish the next batch; returns how many events it published."""
        notifications = self.ledger.recorder.select_notifications(
            start=self.position, limit=self.batch_size, inclusive_of_start=False
        )
        if not notifications:
            return 0
        last = notifications[-1].id
        head = last if len(notifications) < self.batch_size else self.ledger.head_position()
        # One flush for both: a partition keeps the order of what was produced to it, so
        # each checkpoint lands after the batch's events in its partition.
        self._deliver(
            [self.encoder.encode(n) for n in notifications],
            [checkpoint_message(last, head, self.topic_id)] * self.partitions,
        )
        self.state.save(last, self.topic_id)
        self.position = last
        return len(notifications)

    def run(self, stop: threading.Event, on_ready: Callable[[], None] = lambda: None) -> None:
        self.start()
        with psycopg.connect(self.database_url, autocommit=True) as listener:
            listener.execute("LISTEN ledger_events")
            on_ready()
            last_report = time.monotonic()
            while not stop.is_set():
                self.check_topic()
                published = self.publish_batch()
                if published == 0:
                    for _ in listener.notifies(timeout=0.5, stop_after=1):
                        pass
                if time.monotonic() - last_report > 10:
                    head = self.ledger.head_position()
                    log.info("relay lag", extra={"position": self.position, "head": head, "lag": head - self.position})
                    last_report = time.monotonic()
        self.producer.flush(10)

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

"""Kafka plumbing shared by the relay, the projector and the chain's intake: configs,
clients and the topic."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicCollection
from confluent_kafka.admin import AdminClient, NewTopic

from runtime import metrics

log = logging.getLogger(__name__)

# Where the broker is: its address, or a client config with the security settings too
# (``Settings.kafka_client()``: SASL on compose's Kafka).
Broker = str | Mapping[str, str]


def client_config(broker: Broker) -> dict[str, object]:
    return {"bootstrap.servers": broker} if isinstance(broker, str) else dict(broker)


def producer_config(bootstrap: Broker) -> dict[str, object]:
    return client_config(bootstrap) | {
        "enable.idempotence": True,
        # Fail rather than leave a gap in a partition after a delivery timeout.
        "enable.gapless.guarantee": True,
        "acks": "all",
        # Surface an unreachable broker in seconds: the relay then republishes the batch.
        "message.timeout.ms": 10_000,
        "linger.ms": 2,
        # Java clients' default partitioner, so keys land where they expect.
        "partitioner": "murmur2_random",
    }


def consumer_config(bootstrap: Broker, group: str) -> dict[str, object]:
    return client_config(bootstrap) | {
        "group.id": group,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 500,
        # The broker answers a fetch as soon as there is data, or after this long.
        "fetch.wait.max.ms": 20,
    }


def producer(bootstrap: Broker) -> Producer:
    """The relay's producer: idempotent and ordered (``producer_config``)."""
    return Producer(producer_config(bootstrap))


def consumer(bootstrap: Broker, group: str) -> Consumer:
    """A consumer whose owner assigns it partitions and stores its offsets itself
    (``consumer_config``: nothing is committed to ``group``)."""
    return Consumer(consumer_config(bootstrap, group))


def take_batch(consumer: Consumer, timeout: float, size: int, *, service: str = "consumer") -> list[Message]:
    """Wait up to ``timeout`` for a first message, then take what else is already here
    (``size`` in all at most), so a quiet topic adds no delay; partition-end markers are
    dropped and any other error raised."""
    first = consumer.poll(timeout)
    if first is None:
        return []
    batch = []
    for message in [first, *consumer.consume(size - 1, 0)]:
        error = message.error()
        if error is None:
            batch.append(message)
        elif error.code() != KafkaError._PARTITION_EOF:
            metrics.CONSUMER_ERRORS.labels(service).inc()
            raise KafkaException(error)
    return batch


def admin_client(bootstrap: Broker) -> AdminClient:
    return AdminClient(client_config(bootstrap))


def ensure_topic(admin: AdminClient, topic: str, partitions: int, retention_ms: int = -1) -> tuple[str, int]:
    """Create the topic if missing; returns its id and partition count.

    The id changes when a broker that lost its memory recreates the topic, which is how
    the relay and the projector notice that earlier offsets mean nothing any more.
    """
    if topic not in admin.list_topics(timeout=10).topics:
        # Kept forever by default (-1): the topic is the stream subscribers and the projector replay.
        new = NewTopic(
            topic, num_partitions=partitions, replication_factor=1, config={"retention.ms": str(retention_ms)}
        )
        future = admin.create_topics([new])[topic]
        try:
            future.result(timeout=10)
            log.info("created topic", extra={"topic": topic, "partitions": partitions})
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
    description = admin.describe_topics(TopicCollection([topic]))[topic].result(timeout=10)
    return str(description.topic_id), len(description.partitions)


class TopicWatch:
    """The topic's current incarnation (its id and partition count), for the relay and the
    projector: a broker that restarted empty brings the topic back with a new id."""

    def __init__(
        self, bootstrap: Broker, topic: str, partitions: int, retention_ms: int = -1, every: float = 1.0
    ) -> None:
        self.admin = admin_client(bootstrap)  # one connection for all the checks
        self.topic = topic
        self.requested_partitions = partitions
        self.retention_ms = retention_ms
        self.every = every
        self.topic_id = ""
        self.partitions = 0
        self._checked_at = 0.0

    def ensure(self) -> None:
        """Create the topic if missing and note its incarnation."""
        self.topic_id, self.partitions = ensure_topic(
            self.admin, self.topic, self.requested_partitions, self.retention_ms
        )
        self._checked_at = time.monotonic()

    def recreated(self) -> bool:
        """Whether the topic has a new incarnation since the last look (at most every ``every`` s)."""
        if time.monotonic() - self._checked_at < self.every:
            return False
        before = self.topic_id
        self.ensure()
        return self.topic_id != before

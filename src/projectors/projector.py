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
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from pymongo import UpdateOne
from pymongo.database import Database

from projectors import kafka
from projectors.messages import CHECKPOINT, from_message, headers_of
from projectors.views import ReadModelWriter, relay_report, watermark_raise
from queries.generations import Generations
from queries.readmodel import PROJECTOR_STATE, watermark

log = logging.getLogger(__name__)


class Projector:
    def __init__(
        self,
        db: Database[Any],
        bootstrap: str,
        topic: str,
        partitions: int,
        *,
        group: str = "ledger-projector",
        batch_size: int = 500,
        retention_ms: int = -1,
        generations: Generations | None = None,
    ) -> None:
        self.db = db
        self.writer = ReadModelWriter(db)
        self.generations = generations  # when given, the projector follows rebuilds
        self.topic = topic
        self.batch_size = batch_size
        self.topic_watch = kafka.TopicWatch(bootstrap, topic, partitions, retention_ms)
        self.consumer = Consumer(kafka.consumer_config(bootstrap, group))
        self.offsets: dict[int, int] = {}
        self.checkpoints: dict[int, int] = {}

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
        generation, paused = self.generations.state()
        if paused:
            self.generations.acknowledge_pause()
            return False
        active = self.generations.database(generation)
        if active.name != self.db.name:
            log.info("switching to a rebuilt read model", extra={"database": active.name})
            self.db, self.writer = active, ReadModelWriter(active)
        return True

    def process_batch(self, timeout: float = 0.5) -> int:
        messages = kafka.take_batch(self.consumer, timeout, self.batch_size)
        if not messages:
            return 0
        touched: set[int] = set()
        events = []
        relay_seen = (0, 0)  # (relay position, event-store head) reported by checkpoints
        for message in messages:
            partition = int(message.partition() or 0)
            headers = headers_of(message.headers())
            if headers.get("ce_type") == CHECKPOINT:
                # One from another incarnation of the topic proves nothing about this one.
                if headers.get("ledger_topic_id", self.topic_id) == self.topic_id:
                    position = int(headers["ce_position"])
                    self.checkpoints[partition] = max(position, self.checkpoints.get(partition, 0))
                    relay_seen = (
                        max(relay_seen[0], position),
                        max(relay_seen[1], int(headers.get("ledger_head", position))),
                    )
            else:
                events.append(from_message(headers, message.value()))
            self.offsets[partition] = int(message.offset() or 0) + 1
            touched.add(partition)
        self.writer.apply_batch(events)
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
            progress.append(watermark_raise(min(self.checkpoints[p] for p in range(self.partitions))))
        if progress:
            self.db[PROJECTOR_STATE].bulk_write(progress, ordered=False)
        return len(messages)

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

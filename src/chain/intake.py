"""The chain worker's intake: payout requests and payout-run hints from Kafka, each
checked against the event store before the worker takes it in."""

from __future__ import annotations

import logging
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from chain.kill_switch import KillSwitch
from chain.store import INTAKE_CONSUMER, ChainStore
from commands.application import Books
from contracts.dead_letters import DeadLetter
from contracts.events import PAYOUT_REQUESTED, LedgerEvent
from contracts.validation import UNKNOWN_TYPE, BadMessage, decode_headers, message_type, read_checked
from ledger.ids import CLIENT_ID
from runtime import kafka, metrics

log = logging.getLogger(__name__)


NOT_IN_STORE = "not_in_store"  # dead-letter reasons of the intake, besides contracts.validation's
DIFFERS_FROM_STORE = "differs_from_store"


RUN_EVENTS = "ledger.payout_run."  # the type prefix of a payout run's events


class Intake:
    """Payout requests from Kafka into ``chain_payouts``, offsets stored with them.

    A message is a hint to look, never an order: it only names a payout, which is read
    from the event store, and what is taken in is the store's payout, not the message's.
    A payout message that does not read as the contract says, names a payout the store
    does not have, or differs from it, is set aside (table ``dead_letters``) with its
    offset, so no message can pay anything nor stop the intake.

    It assigns itself every partition (no consumer-group join to wait for) and keeps
    offsets in PostgreSQL with the payouts; a topic recreated by a broker that lost
    its data is read again from the start, which only finds payouts already taken in.

    The ``consumer`` (``runtime.kafka.consumer``) and ``topic_watch`` are passed in, so
    the one wiring module configures them (``entrypoints.bootstrap``); ``close`` closes
    the consumer."""

    def __init__(
        self,
        store: ChainStore,
        books: Books,
        consumer: Consumer,
        topic_watch: kafka.TopicWatch,
        kill: KillSwitch,
    ) -> None:
        self.store = store
        self.books = books
        self.topic = topic_watch.topic
        self.kill = kill
        self.topic_watch = topic_watch
        self.consumer = consumer

    def start(self) -> None:
        self.topic_watch.ensure()
        saved = self.store.cursors("kafka:")
        assignment = []
        for partition in range(self.topic_watch.partitions):
            value = saved.get(f"kafka:{partition}")
            topic_id, _, offset = (value or "").partition("@")
            start = int(offset) if value and topic_id == self.topic_watch.topic_id else OFFSET_BEGINNING
            assignment.append(TopicPartition(self.topic, partition, start))
        self.consumer.assign(assignment)

    def poll(self, timeout: float = 0.5) -> int:
        if self.topic_watch.recreated():
            log.warning("the topic was recreated; reading payouts from its start again")
            self.consumer.assign(
                [TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in range(self.topic_watch.partitions)]
            )
        payouts: list[dict[str, Any]] = []
        dead_letters: list[DeadLetter] = []
        offsets: dict[str, str] = {}
        runs: set[str] = set()
        for message in kafka.take_batch(self.consumer, timeout, 500, service="chain"):
            try:
                headers = decode_headers(message)
                kind = message_type(headers)
                if kind.startswith(RUN_EVENTS) and CLIENT_ID.fullmatch(headers.get("ce_subject", "")):
                    runs.add(headers["ce_subject"])  # a hint for the run driver, which reads the run from the store
                payout = self._payout_named(headers, message.value()) if kind == PAYOUT_REQUESTED else None
            except BadMessage as exc:
                letter = DeadLetter.of(message, self.topic_watch.topic_id, exc)
                letter.log(log, INTAKE_CONSUMER)
                metrics.DEAD_LETTERS.labels("chain").inc()
                dead_letters.append(letter)
            else:
                if payout is not None:
                    payouts.append(payout)
            offsets[f"kafka:{message.partition()}"] = f"{self.topic_watch.topic_id}@{(message.offset() or 0) + 1}"
        if not offsets:
            return 0
        added = self.store.take_in(payouts, dead_letters, offsets, runs)
        if added:
            log.info("payouts taken in", extra={"count": added})
            self.kill.passed("intake")
        return added

    def _payout_named(self, headers: dict[str, str], value: bytes | None) -> dict[str, Any] | None:
        """The payout a payout-requested message names, as the event store has it; None
        for payouts already ended. Raises BadMessage for a message that is not to be acted on."""
        event = read_checked(headers, value)
        if not isinstance(event, LedgerEvent):  # a checkpoint: the intake reads those apart
            raise BadMessage(UNKNOWN_TYPE, "not a payout request")
        claimed = event.data
        record = self.books.payout_record(claimed["payout"])
        if record is None:
            raise BadMessage(NOT_IN_STORE, f"payout {claimed['payout']!r} is not in the event store"[:300])
        stored = {
            "payout": record.payout_id,
            "account": record.account,
            "asset": record.asset,
            "amount": str(record.amount),
            "destination": record.destination,
            "memo": record.memo,
            "hold": record.hold_id,
        }
        differing = sorted(name for name, value in stored.items() if claimed.get(name) != value)
        if differing:
            raise BadMessage(DIFFERS_FROM_STORE, f"payout {record.payout_id!r}: {', '.join(differing)}"[:300])
        if record.resolved:
            log.debug("payout already ended; not taken in", extra={"payout": record.payout_id, "state": record.state})
            return None
        return stored

    def close(self) -> None:
        self.consumer.close()

"""Messages produced straight onto the topic, as anyone who can reach the broker could:
forged events and malformed ones, for the tests of what consumers do with them."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Producer

from contracts.events import CHECKPOINT, SOURCE

Headers = list[tuple[str, str | bytes | None]]


@dataclass
class Forged:
    """One message to produce: its headers and value exactly as given (nothing added)."""

    headers: Headers
    value: bytes | None
    partition: int = 0
    label: str = field(default="", compare=False)


def event_headers(
    event_type: str, subject: str, sequence: int, position: int, /, **changes: str | bytes | None
) -> Headers:
    """Headers as the relay writes them; ``changes`` replaces some (None drops one)."""
    headers: dict[str, str | bytes | None] = {
        "ce_specversion": "1.0",
        "ce_id": f"forged-{subject}-{sequence}",
        "ce_source": SOURCE,
        "ce_type": event_type,
        "ce_subject": subject,
        "ce_time": datetime.now(UTC).isoformat(),
        "ce_sequence": f"{sequence:020d}",
        "ce_position": str(position),
        "content-type": "application/json",
    }
    headers.update(changes)
    return [(name, value) for name, value in headers.items() if value is not None]


def checkpoint_headers(position: int, head: int, topic_id: str) -> Headers:
    return [
        ("ce_specversion", "1.0"),
        ("ce_id", f"checkpoint-{position}"),
        ("ce_source", SOURCE),
        ("ce_type", CHECKPOINT),
        ("ce_position", str(position)),
        ("ledger_head", str(head)),
        ("ledger_topic_id", topic_id),
    ]


def payout_requested(payout: str, account: str, amount: Any, destination: str, **changes: Any) -> bytes:
    """A payout-requested value (``amount`` as given: a forged one may not be a string)."""
    data = {
        "payout": payout,
        "account": account,
        "asset": "XLM/7",
        "amount": amount,
        "destination": destination,
        "memo": None,
        "hold": f"{payout}$payout",
    }
    return json.dumps({**data, **changes}).encode()


def produce(bootstrap: str, topic: str, messages: list[Forged]) -> None:
    """Produce every message and wait until the broker has them all."""
    producer = Producer({"bootstrap.servers": bootstrap})
    errors: list[Any] = []
    for message in messages:
        producer.produce(
            topic,
            value=message.value,
            headers=message.headers,
            partition=message.partition,
            on_delivery=lambda err, _msg: errors.append(err) if err else None,
        )
    assert producer.flush(20) == 0 and not errors, errors

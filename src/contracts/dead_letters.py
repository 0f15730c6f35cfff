"""Dead letters: messages from the topic a consumer set aside instead of acting on them.

A malformed or forged message must neither stop a consumer (a crash would meet it
again on every restart) nor vanish without a trace. The consumer records it with the
reason, logs it, and moves its offset past it. Each consumer keeps its own record
where it keeps its offsets, written together with them: the projector in the
read-model database (collection ``dead_letters``), the chain worker in PostgreSQL
(table ``dead_letters``). A copy of the message is kept, bounded, for whoever looks
into it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, cast

from confluent_kafka import Message as KafkaMessage

from contracts.validation import BadMessage, RawHeaders

MAX_VALUE_BYTES = 64 * 1024
MAX_HEADERS = 64
MAX_HEADER_CHARS = 1024


@dataclass(frozen=True)
class DeadLetter:
    topic: str
    topic_id: str  # the topic's incarnation: offsets start again in a recreated topic
    partition: int
    offset: int
    reason: str  # a stable code (contracts.validation, or the consumer's own)
    detail: str
    headers: list[list[str]]  # [name, value] pairs as they came (a name may repeat), bounded
    value: bytes | None  # the first MAX_VALUE_BYTES of the value
    value_size: int

    @classmethod
    def of(cls, message: KafkaMessage, topic_id: str, error: BadMessage) -> DeadLetter:
        value = message.value()
        return cls(
            topic=str(message.topic()),
            topic_id=topic_id,
            partition=int(message.partition() or 0),
            offset=int(message.offset() or 0),
            reason=error.reason,
            detail=_text(error.detail, 1000),
            headers=_headers(message),
            value=None if value is None else bytes(value[:MAX_VALUE_BYTES]),
            value_size=0 if value is None else len(value),
        )

    @property
    def key(self) -> str:
        """Unique per message: a redelivered one is recorded once."""
        return f"{self.topic_id}:{self.partition}:{self.offset}"

    def document(self, consumer: str, now: str) -> dict[str, Any]:
        """As stored in MongoDB (headers as pairs: a header name may hold "$" or ".")."""
        return {
            "_id": self.key,
            "consumer": consumer,
            "topic": self.topic,
            "topic_id": self.topic_id,
            "partition": self.partition,
            "offset": self.offset,
            "reason": self.reason,
            "detail": self.detail,
            "headers": self.headers,
            "value": self.value,
            "value_size": self.value_size,
            "created_at": now,
        }

    def log(self, logger: logging.Logger, consumer: str) -> None:
        logger.error(
            "message set aside as a dead letter",
            extra={
                "consumer": consumer,
                "topic": self.topic,
                "partition": self.partition,
                "offset": self.offset,
                "reason": self.reason,
                "detail": self.detail,
            },
        )


def _headers(message: KafkaMessage) -> list[list[str]]:
    try:
        raw = cast(RawHeaders, message.headers() or [])
    except UnicodeDecodeError:
        return [["?", "(a header name is not UTF-8)"]]
    pairs = []
    for name, value in raw[:MAX_HEADERS]:
        text = value.decode("utf-8", "backslashreplace") if isinstance(value, bytes) else str(value or "")
        pairs.append([_text(str(name), MAX_HEADER_CHARS), _text(text, MAX_HEADER_CHARS)])
    return pairs


def _text(text: str, limit: int) -> str:
    """Storable anywhere: PostgreSQL text and jsonb refuse NUL characters."""
    bounded = text if len(text) <= limit else text[:limit] + "..."
    return bounded.replace("\x00", "\\x00")

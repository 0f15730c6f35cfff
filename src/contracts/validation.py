"""Messages from the topic read as untrusted input: checked, or refused with a reason.

Kafka carries facts for subscribers, and anyone who can produce to the topic can put
anything on it. A consumer that trusted the headers and the value as they come would
crash on the first malformed message (and again on every restart: a crash loop) or,
worse, act on a forged one. So every message is read here: its CloudEvents headers
must be present and well-formed, its type one the contract names, its value a JSON
object matching that type's schema (``schemas/*.json``). Anything else raises
``BadMessage`` with a stable reason code, and the consumer sets the message aside as a
dead letter and goes on.

A message that passes is well-formed, not true: only the event store says what
happened. The projector also refuses positions the store has not reached, and the
chain worker looks every payout up in the store before paying it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any, cast

import fastjsonschema
from confluent_kafka import Message as KafkaMessage

from contracts.events import CHECKPOINT, SOURCE, LedgerEvent

SCHEMAS = Path(__file__).parent / "schemas"
MAX_INT64 = 2**63 - 1  # positions and sequence numbers are stored as 64-bit integers
EVENT_HEADERS = (
    "ce_specversion",
    "ce_id",
    "ce_source",
    "ce_type",
    "ce_subject",
    "ce_time",
    "ce_sequence",
    "ce_position",
)
CHECKPOINT_HEADERS = ("ce_specversion", "ce_id", "ce_source", "ce_type", "ce_position")
_DIGITS = re.compile(r"[0-9]{1,32}")  # ce_sequence is zero-padded to 20 digits

# Reason codes (stable: dead letters are searched by them).
MISSING_HEADER = "missing_header"
BAD_HEADER = "bad_header"
UNKNOWN_TYPE = "unknown_type"
BAD_JSON = "bad_json"
BAD_DATA = "bad_data"


class BadMessage(Exception):
    """A message a consumer must not act on: ``reason`` is a stable code, ``detail`` says what was wrong."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Checkpoint:
    """A relay checkpoint: every event up to ``position`` is on the topic incarnation
    ``topic_id`` (None: not said); the event store was at ``head``."""

    position: int
    head: int
    topic_id: str | None


Validator = Callable[[Any], Any]
RawHeaders = list[tuple[str, bytes | None]]  # as the Kafka client gives them


@cache
def validators() -> dict[str, Validator]:
    """One compiled validator per event type, keyed by type (compiled once per process:
    a compiled check costs microseconds per message, the projector's budget)."""
    return {
        path.stem: fastjsonschema.compile(json.loads(path.read_text()), use_default=False)
        for path in sorted(SCHEMAS.glob("*.json"))
    }


def decode_headers(message: KafkaMessage) -> dict[str, str]:
    """A message's Kafka headers as a dict of strings; a name or value that is not
    UTF-8, or a name given twice (which of the two would count?), makes it unreadable."""
    try:
        raw = cast(RawHeaders, message.headers() or [])
    except UnicodeDecodeError:  # the client decodes header names itself
        raise BadMessage(BAD_HEADER, "a header name is not UTF-8") from None
    headers: dict[str, str] = {}
    for name, value in raw:
        if name in headers:
            raise BadMessage(BAD_HEADER, f"{_shown(name)} appears more than once")
        try:
            headers[name] = value.decode() if isinstance(value, bytes) else str(value or "")
        except UnicodeDecodeError:
            raise BadMessage(BAD_HEADER, f"{_shown(name)} is not UTF-8") from None
    return headers


def message_type(headers: dict[str, str]) -> str:
    """The message's type, once its envelope says it is one of ours: a CloudEvent from
    the ledger, of a type the contract names."""
    for name in ("ce_specversion", "ce_source", "ce_type"):
        if not headers.get(name):
            raise BadMessage(MISSING_HEADER, name)
    if headers["ce_specversion"] != "1.0":
        raise BadMessage(BAD_HEADER, f"ce_specversion {_shown(headers['ce_specversion'])} is not 1.0")
    if headers["ce_source"] != SOURCE:
        raise BadMessage(BAD_HEADER, f"ce_source {_shown(headers['ce_source'])} is not {SOURCE}")
    ce_type = headers["ce_type"]
    if ce_type not in validators():
        raise BadMessage(UNKNOWN_TYPE, _shown(ce_type))
    return ce_type


def read_message(message: KafkaMessage) -> LedgerEvent | Checkpoint:
    """A message from the topic, checked: a ledger event or a relay checkpoint."""
    return read_checked(decode_headers(message), message.value())


def read_checked(headers: dict[str, str], value: bytes | None) -> LedgerEvent | Checkpoint:
    """As ``read_message``, for headers already decoded."""
    ce_type = message_type(headers)
    required = CHECKPOINT_HEADERS if ce_type == CHECKPOINT else EVENT_HEADERS
    missing = [name for name in required if not headers.get(name)]
    if missing:
        raise BadMessage(MISSING_HEADER, ", ".join(missing))
    data = _data(ce_type, value)
    if ce_type == CHECKPOINT:
        position = _integer(headers, "ce_position", minimum=0)
        head = _integer(headers, "ledger_head", minimum=position) if "ledger_head" in headers else position
        return Checkpoint(position, head, headers.get("ledger_topic_id"))
    return LedgerEvent(
        id=headers["ce_id"],
        type=ce_type,
        subject=headers["ce_subject"],
        sequence=_integer(headers, "ce_sequence", minimum=1),
        position=_integer(headers, "ce_position", minimum=1),
        time=_time(headers["ce_time"]),
        data=data,
    )


def _data(ce_type: str, value: bytes | None) -> dict[str, Any]:
    if value is None:
        raise BadMessage(BAD_JSON, "no value")
    try:
        data = json.loads(value)
    except (ValueError, RecursionError) as exc:  # RecursionError: nesting deeper than the parser goes
        raise BadMessage(BAD_JSON, _bounded(f"{type(exc).__name__}: {exc}")) from None
    try:
        validators()[ce_type](data)
    except fastjsonschema.JsonSchemaValueException as exc:
        raise BadMessage(BAD_DATA, _bounded(exc.message)) from None
    if not isinstance(data, dict):  # every schema says so; a changed schema must not change this
        raise BadMessage(BAD_DATA, "data must be object")
    return data


def _integer(headers: dict[str, str], name: str, minimum: int) -> int:
    """A header holding a decimal integer that fits a 64-bit integer (digits only: no
    sign, spaces or underscores, which ``int`` would accept)."""
    text = headers[name]
    if not _DIGITS.fullmatch(text) or not minimum <= int(text) <= MAX_INT64:
        raise BadMessage(BAD_HEADER, f"{name} {_shown(text)} is not an integer from {minimum} to 2^63-1")
    return int(text)


def _time(text: str) -> str:
    """An RFC 3339 time with its offset (read models compare times as instants)."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        moment = None
    if moment is None or moment.utcoffset() is None:
        raise BadMessage(BAD_HEADER, f"ce_time {_shown(text)} is not a time with an offset")
    return text


def _shown(text: str) -> str:
    """An untrusted value quoted in a reason: printable, and bounded."""
    return _bounded(repr(text))


def _bounded(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit] + "..."

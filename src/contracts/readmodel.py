"""The read model's schema: its collections, the keys its documents are found by, and
how far it has applied the event stream (the watermark).

The projector writes these documents and the query API, the rebuild and the auditors'
drift check read them; they meet here, below all of them, so none imports another.
Amounts are stored as strings of integer minor units (nx-27017 has no Decimal128 and
int64 is too small for 2^127-1).
"""

from __future__ import annotations

import json
import time
from typing import Any

from pymongo.database import Database

ACCOUNTS = "accounts"
ENTRIES = "entries"
TRANSFERS = "transfers"
PAYOUTS = "payouts"
PAYOUT_RUNS = "payout_runs"
RUN_ROWS = "payout_run_rows"
PROJECTOR_STATE = "projector_state"
DEAD_LETTERS = "dead_letters"  # messages the projector set aside (contracts.dead_letters)
WATERMARK_ID = "watermark"
RELAY_ID = "relay"


def amount_key(minor: int) -> str:
    """Minor units as 39 digits (2^127-1 has 39): string order is number order, so a range
    of amounts is a range of strings (the store has no integer wide enough)."""
    return f"{minor:039d}"


def metadata_pairs(metadata: Any) -> list[str]:
    """The top-level scalar values of an account's metadata, each as the JSON text of
    ``[key, value as text]``, for ``GET /v1/accounts?metadata.KEY=VALUE`` (ASCII-escaped
    like the projector's other client JSON: nothing in it can be refused by the store)."""
    if not isinstance(metadata, dict):
        return []
    return sorted(
        metadata_pair(key, value if isinstance(value, str) else json.dumps(value))
        for key, value in metadata.items()
        if isinstance(value, (str, int, float, bool))
    )


def metadata_pair(key: str, value: str) -> str:
    return json.dumps([key, value])


def watermark(db: Database[Any]) -> int:
    """Every event at or below this position is reflected in the read models."""
    doc = db[PROJECTOR_STATE].find_one({"_id": WATERMARK_ID})
    return int(doc["position"]) if doc else 0


def status(db: Database[Any]) -> dict[str, Any]:
    """How far each stage has got, as the read model knows it."""
    relay = db[PROJECTOR_STATE].find_one({"_id": RELAY_ID}) or {}
    applied = watermark(db)
    head = int(relay.get("head", 0))
    return {
        "event_store_head": head,
        "relay_position": int(relay.get("position", 0)),
        "read_model_position": applied,
        "lag": max(head - applied, 0),
        "reported_at": relay.get("reported_at"),
    }


def wait_for_position(db: Database[Any], position: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if watermark(db) >= position:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.005)

"""The read-model writer: one method per event type, each safe to run twice.

Account documents carry the aggregate ``version`` they reflect. A movement applies only
to the version right before it: an older version means a redelivery (ignored), a newer
one means an event went missing, which must never happen, so it fails loudly.
Entries and transfers are keyed by their identity, so re-inserting one is a no-op.
"""

from __future__ import annotations

import logging
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from projectors.messages import LedgerEvent
from queries.readmodel import ACCOUNTS, ENTRIES, PROJECTOR_STATE, TRANSFERS, WATERMARK_ID

log = logging.getLogger(__name__)


class MissingEvent(RuntimeError):
    pass


class ReadModelWriter:
    def __init__(self, db: Database[Any]) -> None:
        self.db = db

    def create_indexes(self) -> None:
        self.db[ENTRIES].create_index([("account", ASCENDING), ("version", DESCENDING)])
        try:
            self.db[PROJECTOR_STATE].insert_one({"_id": WATERMARK_ID, "position": 0})
        except DuplicateKeyError:
            pass

    def apply(self, event: LedgerEvent) -> None:
        handler = {
            "ledger.account.opened.v1": self._account_opened,
            "ledger.account.debited.v1": self._account_moved,
            "ledger.account.credited.v1": self._account_moved,
            "ledger.transfer.posted.v1": self._transfer_posted,
        }.get(event.type)
        if handler is None:
            log.debug("ignoring event type", extra={"type": event.type})
            return
        handler(event)

    def _account_opened(self, event: LedgerEvent) -> None:
        data = event.data
        self._insert(
            ACCOUNTS,
            {
                "_id": data["account"],
                "asset": data["asset"],
                "system": data["system"],
                "status": "open",
                "overdraft_limit": data["overdraft_limit"],
                "metadata": data["metadata"],
                "posted_debits": "0",
                "posted_credits": "0",
                "pending_debits": "0",
                "pending_credits": "0",
                "version": event.sequence,
                "position": event.position,
                "opened_at": event.time,
                "updated_at": event.time,
            },
        )

    def _account_moved(self, event: LedgerEvent) -> None:
        account_id = event.data["account"]
        doc = self.db[ACCOUNTS].find_one({"_id": account_id})
        if doc is None or doc["version"] < event.sequence - 1:
            have = None if doc is None else doc["version"]
            raise MissingEvent(f"account {account_id!r} is at version {have}, got {event.sequence}")
        if doc["version"] >= event.sequence:
            return  # already applied
        amount = int(event.data["amount"])
        debits, credits = int(doc["posted_debits"]), int(doc["posted_credits"])
        side = "debit" if event.type == "ledger.account.debited.v1" else "credit"
        if side == "debit":
            debits += amount
        else:
            credits += amount
        self._insert(
            ENTRIES,
            {
                "_id": f"{account_id}:{event.sequence:020d}",
                "account": account_id,
                "version": event.sequence,
                "position": event.position,
                "transfer": event.data["transfer"],
                "side": side,
                "amount": event.data["amount"],
                "balance_after": str(credits - debits),
                "time": event.time,
            },
        )
        self.db[ACCOUNTS].update_one(
            {"_id": account_id, "version": event.sequence - 1},
            {
                "$set": {
                    "posted_debits": str(debits),
                    "posted_credits": str(credits),
                    "version": event.sequence,
                    "position": event.position,
                    "updated_at": event.time,
                }
            },
        )

    def _transfer_posted(self, event: LedgerEvent) -> None:
        data = event.data
        self._insert(
            TRANSFERS,
            {
                "_id": data["transfer"],
                "kind": data["kind"],
                "status": "posted",
                "debit_account": data["debit_account"],
                "credit_account": data["credit_account"],
                "asset": data["asset"],
                "amount": data["amount"],
                "metadata": data["metadata"],
                "time": event.time,
                "position": event.position,
            },
        )

    def _insert(self, collection: str, doc: dict[str, Any]) -> None:
        try:
            self.db[collection].insert_one(doc)
        except DuplicateKeyError:
            pass

    def raise_watermark(self, position: int) -> None:
        self.db[PROJECTOR_STATE].update_one(
            {"_id": WATERMARK_ID, "position": {"$lt": position}}, {"$set": {"position": position}}
        )

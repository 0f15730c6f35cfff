"""Payments into the distribution account, credited in the ledger."""

from __future__ import annotations

import logging
import threading
from typing import Any

from stellar_sdk import Server

from chain.config import ChainSettings
from chain.stellar import asset_key, record_asset_key, stroops_of
from chain.store import ChainStore
from commands.application import Books
from runtime import metrics

log = logging.getLogger(__name__)


# Operations that move money to an account; a path payment's "amount" is what arrived.
PAYMENT_TYPES = {"payment", "path_payment_strict_send", "path_payment_strict_receive"}


class DepositFollower:
    """Payments into the distribution account, credited in the ledger from a stored cursor.

    Each payment is credited under an id derived from its Stellar operation id, so one
    credited again after a crash (before the cursor moved) is found and not repeated."""

    def __init__(self, settings: ChainSettings, store: ChainStore, books: Books, horizon: Server) -> None:
        self.store = store
        self.books = books
        self.account_id = settings.keys.distribution.public_key
        self.cursor_name = f"deposits:{self.account_id}"
        self.assets = {asset_key(asset): ledger_asset for ledger_asset, asset in settings.assets.items()}
        self.horizon = horizon

    def poll(self) -> int:
        """Credit the next page of payments; returns how many records it went through."""
        cursor = self.store.cursors(self.cursor_name).get(self.cursor_name, "0")
        page = (
            self.horizon.payments()
            .for_account(self.account_id)
            .cursor(cursor)
            .order(desc=False)
            .limit(200)
            .join("transactions")
            .call()
        )
        records = page["_embedded"]["records"]
        for record in records:
            self._credit(record)
            self.store.set_cursor(self.cursor_name, record["paging_token"])
        return len(records)

    def _credit(self, record: dict[str, Any]) -> None:
        if record.get("type") not in PAYMENT_TYPES or record.get("to") != self.account_id:
            return  # our own payouts, and operations that are not payments to us
        if not record.get("transaction_successful", True):
            return
        asset = self.assets.get(record_asset_key(record))
        if asset is None:
            log.warning("payment in an asset the ledger does not map; not credited", extra={"payment": record["id"]})
            return
        transaction = record.get("transaction") or {}
        memo = transaction.get("memo") if transaction.get("memo_type") == "text" else None
        result = self.books.credit_from_chain(record["id"], asset, stroops_of(record["amount"]), memo)
        log.info("deposit from chain", extra={"payment": record["id"], "account": result["account"]})

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                if not self.poll():
                    stop.wait(1.0)
            except Exception:
                metrics.HORIZON_ERRORS.labels("deposits").inc()
                log.exception("following deposits failed; retrying")
                stop.wait(2.0)

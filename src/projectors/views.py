"""The read-model writer: every event type, each safe to apply twice.

Account and transfer documents carry the ``version`` of their event stream they
reflect. An event applies only on top of the version right before it: an older one is
a redelivery (ignored); a newer one means earlier events have not arrived yet (logged,
skipped, and applied when the relay's republished batch brings them in order).
Entries are keyed by account and version, so re-inserting one is a no-op.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import ASCENDING, DESCENDING, UpdateOne
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from contracts.balances import BALANCE_CHANGES
from contracts.events import (
    ACCOUNT_LIMITS_CHANGED,
    ACCOUNT_OPENED,
    ACCOUNT_POLICY_CHANGED,
    ACCOUNT_STATUS_TYPES,
    PAYOUT_ATTEMPTED,
    PAYOUT_CANCEL_REQUESTED,
    PAYOUT_CONFIRMED,
    PAYOUT_FAILED,
    PAYOUT_REQUESTED,
    PAYOUT_RUN_ROWS_ADDED,
    PAYOUT_RUN_UPLOADED,
    PAYOUT_STUCK,
    TRANSFER_PENDING,
    TRANSFER_PENDING_POSTED,
    TRANSFER_POSTED,
    TRANSFER_REVERSED,
    TRANSFER_VOIDED,
    LedgerEvent,
)
from contracts.readmodel import (
    ACCOUNTS,
    DEAD_LETTERS,
    ENTRIES,
    PAYOUT_RUNS,
    PAYOUTS,
    PROJECTOR_STATE,
    RELAY_ID,
    RUN_ROWS,
    TRANSFERS,
    WATERMARK_ID,
    amount_key,
    metadata_pairs,
)
from ledger.accounts import BALANCE_FIELDS, OPEN
from ledger.payouts import PayoutStatus
from ledger.transfers import TransferStatus
from projectors.monitor_views import MONITOR_TYPES, monitors_changed
from projectors.run_views import RUN_TYPES, RowWriter, run_changed, run_doc
from projectors.versioned_docs import NotNew, VersionedDocs, insert_new

log = logging.getLogger(__name__)


# Events that set account fields to the values they carry (status, limits).
POLICY_EVENT_TYPES = {ACCOUNT_POLICY_CHANGED, ACCOUNT_LIMITS_CHANGED} | {t for t, _ in ACCOUNT_STATUS_TYPES.values()}


# The first event of a stream: its document does not exist before it.
CREATION_TYPES = {ACCOUNT_OPENED, TRANSFER_POSTED, TRANSFER_PENDING, PAYOUT_REQUESTED, PAYOUT_RUN_UPLOADED}
VERSIONED = (ACCOUNTS, TRANSFERS, PAYOUTS, PAYOUT_RUNS)  # one document per event stream


def _stream_of(event: LedgerEvent) -> tuple[str | None, str]:
    """The read-model collection and document an event changes."""
    if event.type.startswith("ledger.account.") or event.type in MONITOR_TYPES:
        return ACCOUNTS, event.data["account"]
    if event.type.startswith("ledger.transfer."):
        return TRANSFERS, event.data["transfer"]
    if event.type.startswith("ledger.payout."):
        return PAYOUTS, event.data["payout"]
    if event.type in RUN_TYPES:
        return PAYOUT_RUNS, event.data["run"]
    return None, ""


class ReadModelWriter:
    """Applies a batch of events with a handful of round trips, whatever the batch size.

    The batch's accounts and transfers are read once, changed in memory event by event,
    and written back with one update each, guarded by the version they were read at.

    The projector is the read models' only writer, so the documents it wrote are
    remembered (``CACHE_LIMIT`` per collection) and not read again for the next batch:
    a steady load then costs no reads at all, only one write per collection. The guard
    still checks every update against the version remembered; should a document have
    changed underneath (a second writer), the update fails loudly, and any failure
    forgets everything remembered, so the next attempt reads the store again.
    """

    def __init__(self, db: Database[Any]) -> None:
        self.db = db
        self._cache: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in VERSIONED}

    def forget(self) -> None:
        """Drop every remembered document (the next batch reads what it needs)."""
        for remembered in self._cache.values():
            remembered.clear()

    def create_indexes(self) -> None:
        """What the query API's lists search by (``queries.readmodel``). Single-field
        indexes: the embedded MongoDB-protocol server (nx-27017, on SQLite) uses those for
        equality and ranges, and a compound index only for its first field's ranges."""
        self.db[ENTRIES].create_index([("account", ASCENDING), ("version", DESCENDING)])
        self.db[ENTRIES].create_index([("account", ASCENDING)])
        # No index on status: every list also ranges over the order it is sorted by, so that
        # index leads, and each index costs every insert (with one on status too, the lists'
        # indexes took the embedded server from 0.50 to 0.68 ms of CPU per transfer).
        for field in ("created", "debit_account", "credit_account"):
            self.db[TRANSFERS].create_index([(field, ASCENDING)])
        for field in ("opened_position", "asset", "id_key"):
            self.db[ACCOUNTS].create_index([(field, ASCENDING)])
        self.db[RUN_ROWS].create_index([("run", ASCENDING)])
        try:
            self.db[PROJECTOR_STATE].insert_one({"_id": WATERMARK_ID, "position": 0})
        except DuplicateKeyError:
            pass

    def apply(self, event: LedgerEvent) -> None:
        self.apply_batch([event])

    def apply_batch(self, events: list[LedgerEvent]) -> None:
        try:
            try:
                self._apply_batch(events, assume_new=True)
            except NotNew:
                # A stream the batch creates was there already (a redelivery): what was
                # built on top of a new document is not what the stored one needs. Again,
                # reading every document; all that was written is written again or ignored.
                self.forget()
                self._apply_batch(events, assume_new=False)
        except BaseException:
            self.forget()  # what was written is not known: read it again
            raise

    def _apply_batch(self, events: list[LedgerEvent], *, assume_new: bool) -> None:
        """Apply ``events``; with ``assume_new``, a stream whose creating event is in the
        batch is not looked up (it is new, unless this is a redelivery: ``NotNew``)."""
        ids: dict[str, dict[str, bool]] = {name: {} for name in VERSIONED}
        for event in events:
            name, key = _stream_of(event)
            if name is not None:
                ids[name].setdefault(key, assume_new and event.type in CREATION_TYPES)
        accounts, transfers, payouts, runs = (
            VersionedDocs(self.db[name], ids[name], self._cache[name]) for name in VERSIONED
        )
        entries: list[dict[str, Any]] = []
        rows = RowWriter()
        for event in events:
            if event.type == ACCOUNT_OPENED:
                accounts.create(event, self._opened(event))
            elif event.type in BALANCE_CHANGES:
                doc = accounts.next_version(event, event.data["account"])
                if doc is not None:
                    entries.append(self._moved(doc, event))
            elif event.type in POLICY_EVENT_TYPES:
                doc = accounts.next_version(event, event.data["account"])
                if doc is not None:
                    doc.update({k: v for k, v in event.data.items() if k not in ("account", "asset")})
            elif event.type in MONITOR_TYPES:
                doc = accounts.next_version(event, event.data["account"])
                if doc is not None:
                    monitors_changed(doc, event)
            elif event.type in (TRANSFER_POSTED, TRANSFER_PENDING):
                transfers.create(event, self._transfer(event))
            elif event.type in (TRANSFER_PENDING_POSTED, TRANSFER_VOIDED, TRANSFER_REVERSED):
                doc = transfers.next_version(event, event.data["transfer"])
                if doc is not None:
                    self._resolved(doc, event)
            elif event.type == PAYOUT_REQUESTED:
                payouts.create(event, self._payout(event))
                rows.change(event)
            elif event.type.startswith("ledger.payout."):
                doc = payouts.next_version(event, event.data["payout"])
                if doc is not None:
                    self._payout_changed(doc, event)
                rows.change(event)  # guarded by attempt: safe to apply again
            elif event.type == PAYOUT_RUN_UPLOADED:
                runs.create(event, run_doc(event))
            elif event.type in RUN_TYPES:
                doc = runs.next_version(event, event.data["run"])
                if doc is not None:
                    run_changed(doc, event)
                rows.change(event)
            elif event.type == PAYOUT_RUN_ROWS_ADDED:
                rows.add_rows(event)
            else:
                log.debug("ignoring event type", extra={"type": event.type})
        # Entries before balances: a crash in between leaves entries that a redelivery
        # finds already there, and balances that it then brings up to date.
        insert_new(self.db[ENTRIES], entries)
        transfers.write()
        payouts.write()
        accounts.write()
        rows.write(self.db[RUN_ROWS])
        runs.write()
        for docs in (transfers, payouts, accounts, runs):
            docs.remember()

    @staticmethod
    def _payout(event: LedgerEvent) -> dict[str, Any]:
        data = event.data
        return {
            "_id": data["payout"],
            "state": PayoutStatus.PENDING,
            "account": data["account"],
            "asset": data["asset"],
            "amount": data["amount"],
            "destination": data["destination"],
            "memo": data["memo"],
            "hold": data["hold"],
            "attempts": 0,
            "tx_hash": None,
            "ledger": None,
            "reason": None,
            "stuck": None,
            "cancel_requested": None,
            "version": event.sequence,
            "position": event.position,
            "created_at": event.time,
            "updated_at": event.time,
        }

    @staticmethod
    def _payout_changed(doc: dict[str, Any], event: LedgerEvent) -> None:
        data = event.data
        if event.type == PAYOUT_ATTEMPTED:
            doc.update(
                state=PayoutStatus.SUBMITTED, attempts=data["attempt"], tx_hash=data["tx_hash"], reason=data["error"]
            )
        elif event.type == PAYOUT_CONFIRMED:
            doc.update(
                state=PayoutStatus.CONFIRMED, tx_hash=data["tx_hash"], ledger=data["ledger"], reason=None, stuck=None
            )
        elif event.type == PAYOUT_FAILED:
            doc.update(state=PayoutStatus.FAILED, reason=data["reason"], stuck=None)
        elif event.type == PAYOUT_STUCK:
            doc["stuck"] = data["reason"]
        elif event.type == PAYOUT_CANCEL_REQUESTED:
            doc["cancel_requested"] = data["reason"]

    @staticmethod
    def _opened(event: LedgerEvent) -> dict[str, Any]:
        data = event.data
        return {
            "_id": data["account"],
            "asset": data["asset"],
            "system": data["system"],
            "status": str(OPEN),  # a plain str for BSON
            "overdraft_limit": data["overdraft_limit"],
            "daily_limit": None,
            "monthly_limit": None,
            "monitors": [],
            "metadata": _json_text(data["metadata"]),
            "metadata_pairs": metadata_pairs(data["metadata"]),
            "id_key": data["account"],  # the id again: an indexed field serves prefix ranges, _id does not
            **{field: "0" for field in BALANCE_FIELDS},
            "version": event.sequence,
            "position": event.position,
            "opened_position": event.position,
            "opened_ts": _microseconds(event.time),
            "opened_at": event.time,
            "updated_at": event.time,
        }

    @staticmethod
    def _moved(doc: dict[str, Any], event: LedgerEvent) -> dict[str, Any]:
        """Change ``doc`` in place; returns the account entry for the movement."""
        for field, sign, key in BALANCE_CHANGES[event.type]:
            doc[field] = str(int(doc[field]) + sign * int(event.data[key]))
        posted = int(doc["posted_credits"]) - int(doc["posted_debits"])
        kind = event.type.removeprefix("ledger.account.").removesuffix(".v1")
        return {
            "_id": f"{doc['_id']}:{event.sequence:020d}",
            "account": doc["_id"],
            "version": event.sequence,
            "position": event.position,
            "transfer": event.data["transfer"],
            "kind": kind,
            "side": "debit" if "debit" in kind else "credit",
            "amount": event.data["amount"],
            "balance_after": str(posted),
            "available_after": str(posted - int(doc["pending_debits"])),
            "balances_after": {field: doc[field] for field in BALANCE_FIELDS},
            "time": event.time,
            "ts": _microseconds(event.time),
        }

    @staticmethod
    def _transfer(event: LedgerEvent) -> dict[str, Any]:
        data = event.data
        pending = event.type == TRANSFER_PENDING
        return {
            "_id": data["transfer"],
            "kind": data["kind"],
            "status": TransferStatus.PENDING if pending else TransferStatus.POSTED,
            "pending": pending,
            "debit_account": data["debit_account"],
            "credit_account": data["credit_account"],
            "asset": data["asset"],
            "amount": data["amount"],
            "posted_amount": "0" if pending else data["amount"],
            "expires_at": data.get("expires_at"),
            "transaction": data.get("transaction"),
            "reverses": data.get("reverses"),
            "reversed_amount": "0",
            "fee": data.get("fee", "0"),
            "fee_payer": data.get("fee_payer"),
            "fee_for": data.get("fee_for"),
            "metadata": _json_text(data["metadata"]),
            "time": event.time,
            "ts": _microseconds(event.time),
            "amount_key": amount_key(int(data["amount"])),
            "version": event.sequence,
            "position": event.position,
            "created": event.position,  # the position it was made at: lists page by it
            "updated_at": event.time,
        }

    @staticmethod
    def _resolved(doc: dict[str, Any], event: LedgerEvent) -> None:
        if event.type == TRANSFER_PENDING_POSTED:
            doc.update(status=TransferStatus.POSTED, posted_amount=event.data["amount"])
        elif event.type == TRANSFER_REVERSED:
            doc["reversed_amount"] = str(int(doc.get("reversed_amount", "0")) + int(event.data["amount"]))
        else:
            doc.update(status=event.data["reason"])

    def record_dead_letters(self, documents: list[dict[str, Any]]) -> None:
        """Messages set aside (``contracts.dead_letters``); one already recorded is kept as it was."""
        insert_new(self.db[DEAD_LETTERS], documents)

    def record_relay(self, position: int, head: int) -> None:
        self.db[PROJECTOR_STATE].bulk_write([relay_report(position, head)])

    def raise_watermark(self, position: int) -> None:
        self.db[PROJECTOR_STATE].bulk_write([watermark_raise(position)])


def relay_report(position: int, head: int) -> UpdateOne:
    """What the relay last reported: its position and the event store's head then."""
    return UpdateOne(
        {"_id": RELAY_ID},
        {"$max": {"position": position, "head": head}, "$set": {"reported_at": datetime.now(UTC).isoformat()}},
        upsert=True,
    )


def watermark_raise(position: int) -> UpdateOne:
    """The read models now show every event up to ``position`` (never lowered)."""
    return UpdateOne({"_id": WATERMARK_ID, "position": {"$lt": position}}, {"$set": {"position": position}})


def _microseconds(iso_time: str) -> int:
    """An event time as microseconds since the epoch, for exact "as of" comparisons."""
    moment = datetime.fromisoformat(iso_time)
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def _json_text(value: Any) -> str:
    """Client JSON is stored as text (ASCII-escaped), so no value of it can be refused by
    the document store (integers over 64 bits, "$" or "." in keys, NUL characters) and
    stop the projector."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True)

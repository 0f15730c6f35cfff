"""The MongoDB read models, as the query side reads them. Thin functions, plain dicts.

The schema they share with the projector (collection names, the watermark) is
``contracts.readmodel``.

Amounts are stored as strings of integer minor units (nx-27017 has no Decimal128 and
int64 is too small for 2^127-1); they are formatted in major units on the way out.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo.database import Database

from contracts.readmodel import (
    ACCOUNTS,
    ENTRIES,
    PAYOUTS,
    TRANSFERS,
)
from ledger.accounts import BALANCE_FIELDS
from ledger.errors import AccountNotFound, InvalidRequest, PayoutNotFound, TransferNotFound
from ledger.ids import fee_account_id
from ledger.money import Asset


def account(
    db: Database[Any], account_id: str, *, at_position: int | None = None, at_time: datetime | None = None
) -> dict[str, Any]:
    """An account now, or as it was at an event-store position or a moment (UTC)."""
    doc = db[ACCOUNTS].find_one({"_id": account_id})
    if doc is None:
        raise AccountNotFound(f"account {account_id!r} does not exist")
    if at_position is not None or at_time is not None:
        return account_view(doc, _as_of(db, doc, at_position, at_time))
    return account_view(doc)


def account_view(doc: dict[str, Any], as_of: tuple[int, dict[str, int]] | None = None) -> dict[str, Any]:
    """An account document as the API shows it; ``as_of``: the position and balances to
    show instead of today's."""
    asset = Asset.parse(doc["asset"])
    position, balances = as_of or (doc["position"], {field: int(doc[field]) for field in BALANCE_FIELDS})
    return {
        "id": doc["_id"],
        "asset": doc["asset"],
        "status": doc["status"],
        "system": bool(doc["system"]),  # nx-27017 gives booleans back as 0 and 1
        "overdraft_limit": asset.format(int(doc["overdraft_limit"])),
        "daily_limit": _optional_amount(asset, doc.get("daily_limit")),
        "monthly_limit": _optional_amount(asset, doc.get("monthly_limit")),
        "metadata": json.loads(doc["metadata"]),
        "balance": balance_view(asset, balances),
        "monitors": [{**m, "amount": asset.format(int(m["amount"]))} for m in doc.get("monitors", [])],
        "position": position,
    }


def balance_view(asset: Asset, balances: dict[str, int]) -> dict[str, str]:
    """Totals in major units, and what is available (posted credits less posted and pending debits)."""
    available = balances["posted_credits"] - balances["posted_debits"] - balances["pending_debits"]
    return {field: asset.format(balances[field]) for field in BALANCE_FIELDS} | {"available": asset.format(available)}


def _as_of(
    db: Database[Any], doc: dict[str, Any], at_position: int | None, at_time: datetime | None
) -> tuple[int, dict[str, int]]:
    """The balances after the account's last movement at or before the point asked for.

    Status and limits are today's: point-in-time answers are about money."""
    if at_position is not None:
        opened, point, key = doc.get("opened_position", 0), at_position, "position"
        what = f"position {at_position}"
    elif at_time is not None:
        opened, point, key = doc.get("opened_ts", 0), microseconds(at_time), "ts"
        what = at_time.isoformat()
    else:
        raise ValueError("a point in time is a position or a time")
    if opened > point:
        raise AccountNotFound(f"account {doc['_id']!r} did not exist yet at {what}")
    position, balances = balances_after(db, doc["_id"], {key: {"$lte": point}})
    return doc.get("opened_position", 0) if position is None else position, balances


def balances_after(db: Database[Any], account_id: str, within: dict[str, Any]) -> tuple[int | None, dict[str, int]]:
    """The account's totals after its last entry that meets ``within`` (a condition on
    entries; ``{}``: its last of all), and that entry's position (None: no entry, zeros)."""
    rows = list(db[ENTRIES].find({"account": account_id, **within}).sort("version", -1).limit(1))
    if not rows:
        return None, dict.fromkeys(BALANCE_FIELDS, 0)
    return rows[0]["position"], {field: int(rows[0]["balances_after"][field]) for field in BALANCE_FIELDS}


def within_period(since: datetime | None, until: datetime | None) -> dict[str, Any]:
    """The condition on a document's ``ts`` for ``[since, until)`` (``{}`` for all time)."""
    bounds = {}
    if since is not None:
        bounds["$gte"] = microseconds(since)
    if until is not None:
        bounds["$lt"] = microseconds(until)
    return {"ts": bounds} if bounds else {}


def microseconds(moment: datetime) -> int:
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def entries(
    db: Database[Any],
    account_id: str,
    limit: int,
    cursor: str | None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> dict[str, Any]:
    """One page of an account's statement for ``[since, until)``, newest first, with the
    balances before the period (opening) and at its end (closing)."""
    doc = db[ACCOUNTS].find_one({"_id": account_id}, {"asset": 1})
    if doc is None:
        raise AccountNotFound(f"account {account_id!r} does not exist")
    asset = Asset.parse(doc["asset"])
    query: dict[str, Any] = {"account": account_id} | within_period(since, until)
    if cursor is not None:
        query["version"] = {"$lt": decode_cursor(cursor)}
    rows = list(db[ENTRIES].find(query).sort("version", -1).limit(limit + 1))
    page = rows[:limit]
    return {
        "account": account_id,
        "from": None if since is None else since.isoformat(),
        "to": None if until is None else until.isoformat(),
        "opening_balance": balance_view(
            asset, dict.fromkeys(BALANCE_FIELDS, 0) if since is None else _balances_before(db, account_id, since)
        ),
        "closing_balance": balance_view(asset, _balances_before(db, account_id, until)),
        "entries": [
            {
                "transfer_id": row["transfer"],
                "kind": row.get("kind", f"{row['side']}ed"),
                "side": row["side"],
                "amount": asset.format(int(row["amount"])),
                "balance_after": asset.format(int(row["balance_after"])),
                "available_after": asset.format(int(row.get("available_after", row["balance_after"]))),
                "position": row["position"],
                "time": row["time"],
            }
            for row in page
        ],
        "next_cursor": encode_cursor(page[-1]["version"]) if len(rows) > limit else None,
    }


def _balances_before(db: Database[Any], account_id: str, moment: datetime | None) -> dict[str, int]:
    """The account's totals after its last entry before ``moment`` (or its last of all)."""
    return balances_after(db, account_id, {} if moment is None else {"ts": {"$lt": microseconds(moment)}})[1]


def payout(db: Database[Any], payout_id: str) -> dict[str, Any]:
    """A payout's state on its way to the chain: pending, submitted, confirmed or failed."""
    doc = db[PAYOUTS].find_one({"_id": payout_id})
    if doc is None:
        raise PayoutNotFound(f"payout {payout_id!r} does not exist")
    asset = Asset.parse(doc["asset"])
    fields = ("state", "account", "asset", "destination", "memo", "hold", "attempts", "tx_hash", "ledger", "reason")
    return {
        "id": doc["_id"],
        **{name: doc[name] for name in fields},
        "amount": asset.format(int(doc["amount"])),
        "stuck": doc["stuck"],
        "created_at": doc["created_at"],
        "updated_at": doc["updated_at"],
        "position": doc["position"],
        "cancel_requested": doc.get("cancel_requested"),  # absent from views projected before it existed
    }


def transfer(db: Database[Any], transfer_id: str) -> dict[str, Any]:
    doc = db[TRANSFERS].find_one({"_id": transfer_id})
    if doc is None:
        raise TransferNotFound(f"transfer {transfer_id!r} does not exist")
    return transfer_view(doc)


def transfer_view(doc: dict[str, Any]) -> dict[str, Any]:
    asset = Asset.parse(doc["asset"])
    result = {
        "id": doc["_id"],
        "kind": doc["kind"],
        "status": doc["status"],
        "debit_account": doc["debit_account"],
        "credit_account": doc["credit_account"],
        "asset": doc["asset"],
        "amount": asset.format(int(doc["amount"])),
        "metadata": json.loads(doc["metadata"]),
        "time": doc["time"],
        "position": doc["position"],
    }
    if doc.get("transaction"):
        result["transaction"] = doc["transaction"]
    net = int(doc["amount"])
    legs = [
        {"debit_account": doc["debit_account"], "credit_account": doc["credit_account"], "amount": asset.format(net)}
    ]
    if int(doc.get("fee", "0")):
        fee = int(doc["fee"])
        result["fee"] = {"transfer_id": f"{doc['_id']}$fee", "amount": asset.format(fee), "payer": doc["fee_payer"]}
        legs.append(
            {
                "debit_account": doc["debit_account"],
                "credit_account": fee_account_id(doc["asset"]),
                "amount": asset.format(fee),
            }
        )
        if doc["fee_payer"] == "recipient":
            result["amount"] = asset.format(net + fee)  # what was asked; the recipient got the first leg
    result["legs"] = legs
    if doc.get("fee_for"):
        result["fee_for"] = doc["fee_for"]
    if doc.get("reverses"):
        result["reverses"] = doc["reverses"]
    if int(doc.get("reversed_amount", "0")):
        result["reversed_amount"] = asset.format(int(doc["reversed_amount"]))
    # Documents projected before the field was renamed say two_phase; `ledger projections rebuild` rewrites them.
    if doc.get("pending", doc.get("two_phase")):
        result["posted_amount"] = asset.format(int(doc["posted_amount"]))
        result["expires_at"] = doc["expires_at"]
    return result


def _optional_amount(asset: Asset, minor: str | None) -> str | None:
    return None if minor is None else asset.format(int(minor))


def encode_cursor(version: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"v": version}).encode()).decode().rstrip("=")


MAX_VERSION = 2**63 - 1  # versions are stored as MongoDB int64
MAX_CURSOR_CHARS = 64  # the longest cursor this API returns is 36 characters


def decode_cursor(cursor: str) -> int:
    """The version a cursor names; anything else, however odd, is a 400 (never sent to MongoDB)."""
    try:
        if len(cursor) > MAX_CURSOR_CHARS or not cursor.isascii():
            raise ValueError
        padded = cursor + "=" * (-len(cursor) % 4)
        version = json.loads(base64.urlsafe_b64decode(padded.encode()))["v"]
        if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= MAX_VERSION:
            raise ValueError
        return version
    except (ValueError, KeyError, TypeError):
        raise InvalidRequest("cursor is not one this API returned") from None

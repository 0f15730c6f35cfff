"""The lists and totals clients ask for beyond look-ups by id: transfers by account,
status, time and amount; accounts by asset, status and metadata; totals over an id
prefix (``shop-42:``). Newest first, a page at a time (``next_cursor``), each query led
by an index the projector creates (``projectors.views.ReadModelWriter.create_indexes``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pymongo.database import Database

from auth.keys import pattern_regex
from contracts.readmodel import ACCOUNTS, TRANSFERS, amount_key, metadata_pair
from ledger.accounts import BALANCE_FIELDS
from ledger.errors import InvalidRequest, RuleViolation
from ledger.money import Asset
from queries.readmodel import (
    account_view,
    balance_view,
    balances_after,
    decode_cursor,
    encode_cursor,
    transfer_view,
    within_period,
)

MAX_AT_POSITION_ACCOUNTS = 1000  # balances as of a position read each account's entries


@dataclass(frozen=True)
class TransferFilter:
    account: str | None = None
    status: str | None = None
    asset: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    min_amount: str | None = None  # major units, at ``asset``'s scale (or the account's)
    max_amount: str | None = None


def transfers(db: Database[Any], wanted: TransferFilter, limit: int, cursor: str | None) -> dict[str, Any]:
    """Transfers made in ``[since, until)``, newest first. With ``account``, the union of
    two index searches (its debits, its credits), merged here: one query with ``$or``
    would scan the collection."""
    query: dict[str, Any] = {}
    if wanted.status is not None:
        query["status"] = wanted.status
    if wanted.asset is not None:
        query["asset"] = wanted.asset
    query |= within_period(wanted.since, wanted.until)
    amounts = _amount_range(db, wanted)
    if amounts:
        query["amount_key"] = amounts
    query["created"] = {"$lt": decode_cursor(cursor)} if cursor is not None else {"$gte": 0}
    sides = (
        [{"debit_account": wanted.account}, {"credit_account": wanted.account}] if wanted.account is not None else [{}]
    )
    found: dict[str, dict[str, Any]] = {}
    for side in sides:
        for doc in db[TRANSFERS].find(query | side).sort("created", -1).limit(limit + 1):
            found[doc["_id"]] = doc
    rows = sorted(found.values(), key=lambda doc: doc["created"], reverse=True)[: limit + 1]
    page = rows[:limit]
    return {
        "transfers": [transfer_view(doc) for doc in page],
        "next_cursor": encode_cursor(page[-1]["created"]) if len(rows) > limit else None,
    }


def _amount_range(db: Database[Any], wanted: TransferFilter) -> dict[str, str]:
    """``min_amount`` and ``max_amount`` (both inclusive) in minor units: the scale is the
    asset's, so one of ``asset`` and ``account`` must say which."""
    if wanted.min_amount is None and wanted.max_amount is None:
        return {}
    asset = wanted.asset
    if asset is None and wanted.account is not None:
        doc = db[ACCOUNTS].find_one({"_id": wanted.account}, {"asset": 1})
        asset = doc["asset"] if doc else None
    if asset is None:
        raise InvalidRequest("min_amount and max_amount need asset= (or an existing account=) to know the scale")
    unit = Asset.parse(asset)
    bounds = {}
    if wanted.min_amount is not None:
        bounds["$gte"] = amount_key(unit.parse_amount(wanted.min_amount, allow_zero=True))
    if wanted.max_amount is not None:
        bounds["$lte"] = amount_key(unit.parse_amount(wanted.max_amount, allow_zero=True))
    return bounds


@dataclass(frozen=True)
class AccountFilter:
    asset: str | None = None
    status: str | None = None
    metadata: tuple[tuple[str, str], ...] = ()  # (KEY, VALUE) that the metadata must all have
    patterns: tuple[str, ...] = field(default=())  # a limited key's account patterns; () for all


def accounts(db: Database[Any], wanted: AccountFilter, limit: int, cursor: str | None) -> dict[str, Any]:
    """Accounts, newest opened first. A limited key's patterns each become a range of ids
    (the part before the first ``*``), the rest of the pattern is checked here.

    Filters are one flat document: the embedded server translates those to SQL, while
    ``$and``, ``$or`` and ``$regex`` make it scan the whole collection."""
    query: dict[str, Any] = {"opened_position": {"$lt": decode_cursor(cursor)} if cursor is not None else {"$gte": 0}}
    if wanted.asset is not None:
        query["asset"] = wanted.asset
    if wanted.status is not None:
        query["status"] = wanted.status
    if wanted.metadata:
        query["metadata_pairs"] = {"$all": [metadata_pair(k, v) for k, v in wanted.metadata]}
    if not wanted.patterns:
        rows = list(db[ACCOUNTS].find(query).sort("opened_position", -1).limit(limit + 1))
    else:
        found: dict[str, dict[str, Any]] = {}
        for pattern in wanted.patterns:
            matches = pattern_regex(pattern).fullmatch
            ranged = query | _id_range(pattern.split("*", 1)[0])
            taken = 0
            for doc in db[ACCOUNTS].find(ranged).sort("opened_position", -1):
                if matches(doc["_id"]):
                    found[doc["_id"]] = doc
                    taken += 1
                    if taken > limit:
                        break
        rows = sorted(found.values(), key=lambda doc: doc["opened_position"], reverse=True)[: limit + 1]
    page = rows[:limit]
    return {
        "accounts": [account_view(doc) for doc in page],
        "next_cursor": encode_cursor(page[-1]["opened_position"]) if len(rows) > limit else None,
    }


def _id_range(prefix: str) -> dict[str, Any]:
    """Account ids starting with ``prefix``, as a range of the indexed ``id_key``."""
    if not prefix:
        return {}
    if ord(prefix[-1]) >= 0x10FFFF:
        return {"id_key": {"$gte": prefix}}
    return {"id_key": {"$gte": prefix, "$lt": prefix[:-1] + chr(ord(prefix[-1]) + 1)}}


def balances(db: Database[Any], prefix: str, asset: str | None, at_position: int | None) -> dict[str, Any]:
    """Totals over the accounts whose ids start with ``prefix``, by asset: now, or after
    each account's last entry at or before ``at_position``. System accounts ($...) count
    only when the prefix names them."""
    query: dict[str, Any] = _id_range(prefix) or {"opened_position": {"$gte": 0}}
    if asset is not None:
        query["asset"] = asset
    if not prefix.startswith("$"):
        query["system"] = {"$ne": True}
    if at_position is not None and (many := db[ACCOUNTS].count_documents(query)) > MAX_AT_POSITION_ACCOUNTS:
        raise RuleViolation(
            f"{many} accounts share the prefix {prefix!r}; totals at a position are read account by account, "
            f"at most {MAX_AT_POSITION_ACCOUNTS}: give a longer prefix"
        )
    fields = {"asset": 1, "opened_position": 1, **dict.fromkeys(BALANCE_FIELDS, 1)}
    totals: dict[str, dict[str, int]] = {}
    counted = 0
    for doc in db[ACCOUNTS].find(query, fields):  # read as it comes: the sums are all that is kept
        if not doc["_id"].startswith(prefix):
            continue
        if at_position is None:
            amounts = {f: int(doc[f]) for f in BALANCE_FIELDS}
        elif doc.get("opened_position", 0) > at_position:
            continue  # not opened yet then
        else:
            amounts = balances_after(db, doc["_id"], {"position": {"$lte": at_position}})[1]
        counted += 1
        into = totals.setdefault(doc["asset"], dict.fromkeys(BALANCE_FIELDS, 0))
        for f in BALANCE_FIELDS:
            into[f] += amounts[f]
    return {
        "prefix": prefix,
        "accounts": counted,
        "totals": {name: balance_view(Asset.parse(name), sums) for name, sums in sorted(totals.items())},
        "at_position": at_position,
    }

"""Payout runs as the query API shows them: a run with its rows counted by state (and
their amounts by asset), and its rows a page at a time, in file order.

Counts are taken from the rows when asked (one pass over the run's rows, a document at a
time), not kept as running totals: a row's state is then the one place a number comes
from, and redelivered events cannot make the totals drift.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

import falcon
from pymongo.database import Database

from auth import keys as scopes
from auth.http import request_key, require_accounts
from contracts.readmodel import PAYOUT_RUNS, RUN_ROWS
from ledger.errors import RunNotFound
from ledger.money import Asset
from ledger.payout_runs import ROW_STATES
from queries import parameters
from queries.readmodel import decode_cursor, encode_cursor
from runtime import web

Source = Callable[[], Database[Any]]


def run_view(db: Database[Any], run_id: str) -> tuple[dict[str, Any], list[str]]:
    """The run, and the accounts it pays from (for a key limited to accounts)."""
    doc = db[PAYOUT_RUNS].find_one({"_id": run_id})
    if doc is None:
        raise RunNotFound(f"payout run {run_id!r} does not exist")
    counts = dict.fromkeys(ROW_STATES, 0)
    amounts: dict[str, dict[str, int]] = {state: defaultdict(int) for state in ROW_STATES}
    accounts: dict[str, None] = {}
    for row in db[RUN_ROWS].find({"run": run_id}, {"state": 1, "asset": 1, "amount": 1, "account": 1}):
        if "account" not in row:
            continue  # its payout was read before its chunk: counted once the chunk is
        counts[row["state"]] += 1
        amounts[row["state"]][row["asset"]] += int(row["amount"])
        accounts[row["account"]] = None
    view = {
        "id": doc["_id"],
        "state": doc["state"],
        "rows": doc["rows"],
        "attempt": doc["attempt"],
        "totals": {asset: Asset.parse(asset).format(int(total)) for asset, total in doc["totals"].items()},
        "counts": counts,
        "amounts": {
            state: {asset: Asset.parse(asset).format(total) for asset, total in sorted(by_asset.items())}
            for state, by_asset in amounts.items()
        },
        "succeeded": doc["succeeded"],
        "failed": doc["failed"],
        "created_at": doc["created_at"],
        "updated_at": doc["updated_at"],
        "position": doc["position"],
    }
    return view, list(accounts)


def rows_page(db: Database[Any], run_id: str, state: str | None, limit: int, cursor: str | None) -> dict[str, Any]:
    query: dict[str, Any] = {"run": run_id, "n": {"$gt": decode_cursor(cursor) if cursor is not None else 0}}
    if state is not None:
        query["state"] = state
    docs = list(db[RUN_ROWS].find(query).sort("n", 1).limit(limit + 1))
    page = docs[:limit]
    return {
        "rows": [
            {
                "row": doc["row"],
                "n": doc["n"],
                "state": doc["state"],
                "account": doc["account"],
                "amount": Asset.parse(doc["asset"]).format(int(doc["amount"])),
                "asset": doc["asset"],
                "destination": doc["destination"],
                "memo": doc["memo"],
                "attempt": doc["attempt"],
                "payout": doc["payout"],
                "reason": doc["reason"],
            }
            for doc in page
        ],
        "next_cursor": encode_cursor(page[-1]["n"]) if len(docs) > limit else None,
    }


class PayoutRun:
    scope = scopes.READ
    query_params = frozenset({parameters.MIN_POSITION})

    def __init__(self, source: Source) -> None:
        self.source = source

    def on_get(self, req: falcon.Request, resp: falcon.Response, run_id: str) -> None:
        view, accounts = run_view(self.source(), run_id)
        require_accounts(req, debited=tuple(accounts))
        web.json_response(resp, view)


class PayoutRunRows:
    scope = scopes.READ
    query_params = frozenset({parameters.MIN_POSITION, "state", "limit", "cursor"})

    def __init__(self, source: Source) -> None:
        self.source = source

    def on_get(self, req: falcon.Request, resp: falcon.Response, run_id: str) -> None:
        db = self.source()
        if db[PAYOUT_RUNS].find_one({"_id": run_id}, {"_id": 1}) is None:
            raise RunNotFound(f"payout run {run_id!r} does not exist")
        if request_key(req).limited:  # only such a key needs the run's accounts: a pass over all its rows
            rows = db[RUN_ROWS].find({"run": run_id}, {"account": 1})
            require_accounts(req, debited=tuple(dict.fromkeys(r["account"] for r in rows if "account" in r)))
        state = parameters.choice(req, "state", ROW_STATES)
        web.json_response(resp, rows_page(db, run_id, state, parameters.limit(req), req.get_param("cursor")))

"""The query API's transfer and payout reads: the transfers list, one transfer and one
payout. Kept apart from ``queries.http``, which wires them into the app."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import falcon
from pymongo.database import Database

from auth import keys as scopes
from auth.http import forbidden, request_key, require_accounts
from ledger.transfers import EXPIRED, PENDING, POSTED, VOIDED
from queries import lists, parameters, readmodel
from runtime import web

Source = Callable[[], Database[Any]]
TRANSFER_STATUSES = (PENDING, POSTED, VOIDED, EXPIRED)


class Transfers:
    """Transfers, newest first; a key limited to accounts must name one of its own."""

    scope = scopes.READ
    query_params = frozenset(
        {
            parameters.MIN_POSITION,
            "limit",
            "cursor",
            "account",
            "status",
            "asset",
            "from",
            "to",
            "min_amount",
            "max_amount",
        }
    )

    def __init__(self, source: Source) -> None:
        self.source = source

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        account = req.get_param("account")
        if account is None and request_key(req).limited:
            raise forbidden(f"key {request_key(req).key_id} is limited to some accounts: name one (account=)")
        if account is not None:
            require_accounts(req, debited=(account,))
        since, until = parameters.period(req)
        wanted = lists.TransferFilter(
            account=account,
            status=parameters.choice(req, "status", TRANSFER_STATUSES),
            asset=parameters.asset(req),
            since=since,
            until=until,
            min_amount=parameters.amount(req, "min_amount"),
            max_amount=parameters.amount(req, "max_amount"),
        )
        web.json_response(resp, lists.transfers(self.source(), wanted, parameters.limit(req), req.get_param("cursor")))


class Transfer:
    scope = scopes.READ
    query_params = frozenset({parameters.MIN_POSITION})

    def __init__(self, source: Source) -> None:
        self.source = source

    def on_get(self, req: falcon.Request, resp: falcon.Response, transfer_id: str) -> None:
        transfer = readmodel.transfer(self.source(), transfer_id)
        key = request_key(req)
        if not (key.covers(transfer["debit_account"]) or key.covers(transfer["credit_account"])):
            raise forbidden(f"key {key.key_id} may not read transfer {transfer_id!r}")
        web.json_response(resp, transfer)


class Payout:
    scope = scopes.READ
    query_params = frozenset({parameters.MIN_POSITION})

    def __init__(self, source: Source) -> None:
        self.source = source

    def on_get(self, req: falcon.Request, resp: falcon.Response, payout_id: str) -> None:
        payout = readmodel.payout(self.source(), payout_id)
        require_accounts(req, debited=(payout["account"],))
        web.json_response(resp, payout)

"""The query API's account reads: one account, its statement, the accounts list and
balance totals over an id prefix. Kept apart from ``queries.http``, which wires them into the app."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import falcon
from pymongo.database import Database

from auth import keys as scopes
from auth.http import forbidden, request_key, require_accounts
from ledger.accounts import CLOSED, FROZEN, OPEN
from ledger.errors import InvalidRequest
from queries import lists, parameters, readmodel
from runtime import web

Source = Callable[[], Database[Any]]
METADATA_PREFIX = "metadata."
PREFIX_PARAM = re.compile(r"\$?[A-Za-z0-9._:-]{0,127}")  # the start of a client id, or of a system one
ACCOUNT_STATUSES = (OPEN, FROZEN, CLOSED)


class Account:
    scope = scopes.READ
    query_params = frozenset({parameters.MIN_POSITION, "at_position", "at"})

    def __init__(self, source: Source) -> None:
        self.source = source

    def on_get(self, req: falcon.Request, resp: falcon.Response, account_id: str) -> None:
        require_accounts(req, debited=(account_id,))
        at_position = parameters.int_param(req, "at_position", None, 0)
        at_time = parameters.time_param(req, "at")
        if at_position is not None and at_time is not None:
            raise InvalidRequest("ask for at_position or at, not both")
        web.json_response(resp, readmodel.account(self.source(), account_id, at_position=at_position, at_time=at_time))


class Entries:
    """An account's statement: its entries in ``[from, to)``, newest first, with the
    balances before and at the end of the period."""

    scope = scopes.READ
    query_params = frozenset({parameters.MIN_POSITION, "limit", "cursor", "from", "to"})

    def __init__(self, source: Source) -> None:
        self.source = source

    def on_get(self, req: falcon.Request, resp: falcon.Response, account_id: str) -> None:
        require_accounts(req, debited=(account_id,))
        since, until = parameters.period(req)
        statement = readmodel.entries(
            self.source(), account_id, parameters.limit(req), req.get_param("cursor"), since, until
        )
        web.json_response(resp, statement)


class Accounts:
    """Accounts, newest opened first, by asset, status and ``metadata.KEY=VALUE`` (each
    top-level metadata value, as text); a limited key sees only the accounts it covers."""

    scope = scopes.READ
    query_params = frozenset({parameters.MIN_POSITION, "limit", "cursor", "asset", "status"})
    query_param_prefixes = (METADATA_PREFIX,)

    def __init__(self, source: Source) -> None:
        self.source = source

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        metadata = tuple(
            (name.removeprefix(METADATA_PREFIX), value)
            for name, value in sorted(req.params.items())
            if name.startswith(METADATA_PREFIX)
        )
        wanted = lists.AccountFilter(
            asset=parameters.asset(req),
            status=parameters.choice(req, "status", ACCOUNT_STATUSES),
            metadata=metadata,
            patterns=request_key(req).accounts,
        )
        web.json_response(resp, lists.accounts(self.source(), wanted, parameters.limit(req), req.get_param("cursor")))


class Balances:
    """Totals over the accounts whose ids start with ``prefix`` (``shop-42:``), by asset,
    now or at ``at_position``; a limited key must cover every id the prefix can start."""

    scope = scopes.READ
    query_params = frozenset({parameters.MIN_POSITION, "prefix", "asset", "at_position"})

    def __init__(self, source: Source) -> None:
        self.source = source

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        prefix = req.get_param("prefix") or ""
        if PREFIX_PARAM.fullmatch(prefix) is None:
            raise InvalidRequest("prefix must be at most 128 characters from [A-Za-z0-9._:-], or '$' and those")
        key = request_key(req)
        if not key.covers(prefix + "*"):  # every id starting with the prefix, whatever follows
            raise forbidden(f"key {key.key_id} does not cover every account starting with {prefix!r}")
        at_position = parameters.int_param(req, "at_position", None, 0)
        web.json_response(resp, lists.balances(self.source(), prefix, parameters.asset(req), at_position))

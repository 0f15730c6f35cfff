"""The query HTTP API (falcon, served by gunicorn). It reads MongoDB only (and the API
keys, in PostgreSQL). Every route needs a key with the ``read`` scope; a key limited to
some accounts reads only those accounts, their transfers and their payouts."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import falcon
import pymongo
from pymongo.database import Database

from auth import keys as scopes
from auth.http import Authenticate, forbidden, request_key, require_accounts
from auth.store import KeyStore
from ledger.errors import InvalidRequest
from queries import readmodel
from queries.generations import Generations
from runtime import logs, web
from runtime.settings import Settings

MAX_PAGE = 500
DEFAULT_PAGE = 50


def _int_param(req: falcon.Request, name: str, default: int | None, low: int, high: int | None = None) -> int | None:
    raw = req.get_param(name)
    if raw is None:
        return default
    if (
        not (raw.isascii() and raw.isdigit())
        or len(raw) > 20
        or (high is not None and int(raw) > high)
        or int(raw) < low
    ):
        bounds = f"{low}..{high}" if high is not None else f">= {low}"
        raise InvalidRequest(f"{name} must be an integer {bounds}")
    return int(raw)


def _time_param(req: falcon.Request, name: str) -> datetime | None:
    raw = req.get_param(name)
    if raw is None:
        return None
    if "T" in raw and " " in raw:
        raw = raw.replace(" ", "+")  # an unencoded "+" offset arrives as a space
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise InvalidRequest(f"{name} must be an RFC 3339 time like 2026-01-31T23:59:59Z") from None
    if moment.tzinfo is None:
        raise InvalidRequest(f"{name} must say its time zone (Z or an offset)")
    return moment.astimezone(UTC)


Source = Callable[[], Database[Any]]  # the active read-model database, resolved per request


class ReadYourWrites:
    """``?min_position=N`` waits (bounded) until the read models have applied position N."""

    def __init__(self, source: Source, wait_seconds: float) -> None:
        self.source = source
        self.wait_seconds = wait_seconds

    def process_resource(
        self, req: falcon.Request, resp: falcon.Response, resource: object, params: dict[str, Any]
    ) -> None:
        if resource is None:
            return
        position = _int_param(req, "min_position", None, 0)
        if position is None:
            return
        db = self.source()
        if not readmodel.wait_for_position(db, position, self.wait_seconds):
            raise web.Problem(
                503,
                "not_yet_visible",
                f"the read model has not yet applied position {position} "
                f"(it is at {readmodel.watermark(db)}); retry shortly",
                headers={"Retry-After": "1"},
            )


class Account:
    scope = scopes.READ

    def __init__(self, source: Source) -> None:
        self.source = source

    def on_get(self, req: falcon.Request, resp: falcon.Response, account_id: str) -> None:
        require_accounts(req, debited=(account_id,))
        at_position = _int_param(req, "at_position", None, 0)
        at_time = _time_param(req, "at")
        if at_position is not None and at_time is not None:
            raise InvalidRequest("ask for at_position or at, not both")
        web.json_response(resp, readmodel.account(self.source(), account_id, at_position=at_position, at_time=at_time))


class Entries:
    scope = scopes.READ

    def __init__(self, source: Source) -> None:
        self.source = source

    def on_get(self, req: falcon.Request, resp: falcon.Response, account_id: str) -> None:
        require_accounts(req, debited=(account_id,))
        limit = _int_param(req, "limit", DEFAULT_PAGE, 1, MAX_PAGE)
        assert limit is not None
        web.json_response(resp, readmodel.entries(self.source(), account_id, limit, req.get_param("cursor")))


class Transfer:
    scope = scopes.READ

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

    def __init__(self, source: Source) -> None:
        self.source = source

    def on_get(self, req: falcon.Request, resp: falcon.Response, payout_id: str) -> None:
        payout = readmodel.payout(self.source(), payout_id)
        require_accounts(req, debited=(payout["account"],))
        web.json_response(resp, payout)


class Status:
    """The pipeline's positions: about the whole ledger, so not for a key limited to accounts."""

    scope = scopes.READ

    def __init__(self, source: Source) -> None:
        self.source = source

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        key = request_key(req)
        if key.limited:
            raise forbidden(f"key {key.key_id} is limited to some accounts; the status is about all of them")
        web.json_response(resp, readmodel.status(self.source()))


def create_app(read_models: Database[Any] | Generations, wait_seconds: float, keys: KeyStore) -> falcon.App:
    """Serve one database, or whichever generation is active at each request."""
    source: Source = read_models.active_database if isinstance(read_models, Generations) else (lambda: read_models)
    app = web.create_base_app(Authenticate(keys))
    app.add_middleware(ReadYourWrites(source, wait_seconds))
    app.add_route("/v1/accounts/{account_id}", Account(source))
    app.add_route("/v1/accounts/{account_id}/entries", Entries(source))
    app.add_route("/v1/transfers/{transfer_id}", Transfer(source))
    app.add_route("/v1/payouts/{payout_id}", Payout(source))
    app.add_route("/v1/status", Status(source))
    return app


def get_app() -> falcon.App:
    settings = Settings.from_env()
    logs.configure(settings.log_level, settings.log_format)
    client: pymongo.MongoClient[Any] = pymongo.MongoClient(settings.require("mongo_url"))
    keys = KeyStore(settings.require("database_url"), pool_size=settings.web_threads)
    return create_app(Generations(client, settings.mongo_db), settings.read_wait_seconds, keys)

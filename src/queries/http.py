"""The query HTTP API (falcon, served by gunicorn). It reads MongoDB only (and the API
keys, in PostgreSQL). Every route needs a key with the ``read`` scope; a key limited to
some accounts reads only those accounts, their transfers and their payouts."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

import falcon
import pymongo
from psycopg_pool import ConnectionPool
from pymongo.database import Database

from auth import keys as scopes
from auth.http import SECURITY_SCHEMES, Authenticate, forbidden, request_key
from auth.store import KeyStore
from contracts import readmodel as schema
from contracts.generations import Generations
from ledger.errors import InvalidRequest
from ledger.payout_runs import ROW_STATES
from queries import parameters, responses, runs
from queries.accounts import ACCOUNT_STATUSES, PREFIX_PARAM, Account, Accounts, Balances, Entries
from queries.transfers import TRANSFER_STATUSES, Payout, Transfer, Transfers
from runtime import logs, metrics, openapi, web
from runtime.settings import Settings

DEFAULT_MAX_WAITERS = Settings().read_waiters
DESCRIPTION = (
    "Balances, entries, transfers and payouts from the read models, which trail the event store by the "
    "pipeline's lag: pass a write's `position` as `min_position` to read your own writes. "
    "Errors are RFC 9457 problem documents with a stable `code`."
)

Source = Callable[[], Database[Any]]


def event_store_head(pool: ConnectionPool) -> Callable[[], int]:
    """The event store's last position, read through the key store's connections (the
    same database, rows as dicts); asked only when a ``min_position`` is not yet in the
    read model."""

    def head() -> int:
        with pool.connection() as conn:
            row = conn.execute("SELECT coalesce(max(notification_id), 0) AS head FROM ledger_events").fetchone()
        return int(row["head"]) if row else 0

    return head  # the active read-model database, resolved per request


class ReadYourWrites:
    """``?min_position=N`` waits (bounded) until the read models have applied position N.

    A waiting request holds a gunicorn thread, so at most ``max_waiters`` requests per
    process wait at once (keep it below the thread count: waits must never take every
    thread); one more that would have to wait is answered 503 ``busy`` at once. A request
    whose position is already applied never waits and needs no slot."""

    def __init__(self, source: Source, wait_seconds: float, max_waiters: int, head: Callable[[], int]) -> None:
        self.source = source
        self.head = head
        self.wait_seconds = wait_seconds
        self.max_waiters = max_waiters
        self._waiters = threading.BoundedSemaphore(max_waiters) if max_waiters > 0 else None

    def process_resource(
        self, req: falcon.Request, resp: falcon.Response, resource: object, params: dict[str, Any]
    ) -> None:
        if parameters.MIN_POSITION not in getattr(resource, "query_params", ()):
            return
        position = parameters.int_param(req, parameters.MIN_POSITION, None, 0)
        if position is None:
            return
        db = self.source()
        if schema.watermark(db) >= position:
            return
        head = self.head()
        if position > head:  # no write has it: waiting could only end in a 503
            raise InvalidRequest(
                f"{parameters.MIN_POSITION} {position} is beyond the event store's last position ({head}); "
                "use the position a write answered"
            )
        if self._waiters is None or not self._waiters.acquire(blocking=False):
            raise web.Problem(
                503,
                "busy",
                f"position {position} is not yet applied and as many requests as may wait for one "
                f"({self.max_waiters}) are waiting already; retry shortly",
                headers={"Retry-After": "1"},
            )
        try:
            visible = schema.wait_for_position(db, position, self.wait_seconds)
        finally:
            self._waiters.release()
        if not visible:
            raise web.Problem(
                503,
                "not_yet_visible",
                f"the read model has not yet applied position {position} "
                f"(it is at {schema.watermark(db)}); retry shortly",
                headers={"Retry-After": "1"},
            )


class Status:
    """The pipeline's positions: about the whole ledger, so not for a key limited to accounts."""

    scope = scopes.READ
    query_params = frozenset({parameters.MIN_POSITION})

    def __init__(self, source: Source) -> None:
        self.source = source

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        key = request_key(req)
        if key.limited:
            raise forbidden(f"key {key.key_id} is limited to some accounts; the status is about all of them")
        web.json_response(resp, schema.status(self.source()))


def create_app(
    read_models: Database[Any] | Generations,
    wait_seconds: float,
    keys: KeyStore,
    max_waiters: int = DEFAULT_MAX_WAITERS,
    head: Callable[[], int] | None = None,
    readiness: Mapping[str, metrics.Check] | None = None,
) -> falcon.App:
    """Serve one database, or whichever generation is active at each request.

    ``max_waiters``: how many ``min_position`` waits this process holds at once; ``head``:
    the event store's last position (read from the keys' database unless given)."""
    source: Source = read_models.active_database if isinstance(read_models, Generations) else (lambda: read_models)
    app = web.create_base_app(Authenticate(keys), api="query")
    app.add_middleware(parameters.QueryParameters())  # before any wait: a bad request answers at once
    app.add_middleware(ReadYourWrites(source, wait_seconds, max_waiters, head or event_store_head(keys.pool)))
    api = openapi.Routes(app, "ledger query API", DESCRIPTION, SECURITY_SCHEMES)
    read = scopes.READ
    api.add(
        "/v1/accounts/{account_id}",
        Account(source),
        get=openapi.Operation(
            "An account and its balance, now or as it was",
            read,
            responses.AccountView,
            params=(parameters.WAIT, parameters.AT_POSITION, parameters.AT),
            problems=(404, 503),
        ),
    )
    api.add(
        "/v1/accounts/{account_id}/entries",
        Entries(source),
        get=openapi.Operation(
            "An account's statement: its entries in [from, to), newest first, with the opening and closing balances",
            read,
            responses.EntryPage,
            params=(parameters.WAIT, parameters.LIMIT, parameters.CURSOR, parameters.FROM, parameters.TO),
            problems=(404, 503),
        ),
    )
    api.add(
        "/v1/transfers",
        Transfers(source),
        get=openapi.Operation(
            "Transfers made in [from, to), newest first, by account, status, asset and amount",
            read,
            responses.TransferPage,
            params=(
                parameters.WAIT,
                parameters.LIMIT,
                parameters.CURSOR,
                openapi.Param("account", {"type": "string"}, "Transfers that debit or credit this account"),
                openapi.Param("status", {"enum": list(TRANSFER_STATUSES)}, "Only transfers in this state"),
                parameters.ASSET,
                parameters.FROM,
                parameters.TO,
                openapi.Param("min_amount", parameters.AMOUNT_SCHEMA, "At least this amount (needs asset or account)"),
                openapi.Param("max_amount", parameters.AMOUNT_SCHEMA, "At most this amount (needs asset or account)"),
            ),
            problems=(403, 503),
            description="A key limited to accounts must name one of its accounts.",
        ),
    )
    api.add(
        "/v1/accounts",
        Accounts(source),
        get=openapi.Operation(
            "Accounts, newest opened first, by asset, status and metadata",
            read,
            responses.AccountPage,
            params=(
                parameters.WAIT,
                parameters.LIMIT,
                parameters.CURSOR,
                parameters.ASSET,
                openapi.Param("status", {"enum": list(ACCOUNT_STATUSES)}, "Only accounts in this state"),
            ),
            problems=(503,),
            description=(
                "`metadata.KEY=VALUE` (repeatable, for different keys) keeps accounts whose metadata has that "
                "top-level value (a number or boolean as its JSON text). A key limited to accounts sees only those."
            ),
        ),
    )
    api.add(
        "/v1/balances",
        Balances(source),
        get=openapi.Operation(
            "Totals over the accounts whose ids start with a prefix, by asset, now or at a position",
            read,
            responses.BalanceTotals,
            params=(
                parameters.WAIT,
                openapi.Param(
                    "prefix",
                    {"type": "string", "pattern": f"^{PREFIX_PARAM.pattern}$"},
                    "An account-id prefix (`shop-42:`); empty: all",
                ),
                parameters.ASSET,
                parameters.AT_POSITION,
            ),
            problems=(403, 422, 503),
            description="System accounts ($...) count only when the prefix starts with `$`.",
        ),
    )
    api.add(
        "/v1/transfers/{transfer_id}",
        Transfer(source),
        get=openapi.Operation(
            "A transfer and its legs", read, responses.TransferView, params=(parameters.WAIT,), problems=(404, 503)
        ),
    )
    api.add(
        "/v1/payouts/{payout_id}",
        Payout(source),
        get=openapi.Operation(
            "A payout on its way to the chain",
            read,
            responses.PayoutView,
            params=(parameters.WAIT,),
            problems=(404, 503),
        ),
    )
    api.add(
        "/v1/payout-runs/{run_id}",
        runs.PayoutRun(source),
        get=openapi.Operation(
            "A payout run: its state, and its rows counted by state with their amounts",
            read,
            responses.PayoutRunView,
            params=(parameters.WAIT,),
            problems=(404, 503),
        ),
    )
    api.add(
        "/v1/payout-runs/{run_id}/rows",
        runs.PayoutRunRows(source),
        get=openapi.Operation(
            "A payout run's rows in file order, by state",
            read,
            responses.PayoutRunRowPage,
            params=(
                parameters.WAIT,
                parameters.LIMIT,
                parameters.CURSOR,
                openapi.Param("state", {"enum": list(ROW_STATES)}, "Only rows in this state"),
            ),
            problems=(404, 503),
        ),
    )
    api.add(
        "/v1/status",
        Status(source),
        get=openapi.Operation(
            "How far the pipeline has got (not for a key limited to accounts)",
            read,
            responses.StatusView,
            params=(parameters.WAIT,),
            problems=(503,),
        ),
    )
    api.publish(
        readiness
        or {"postgres": metrics.postgres_check(keys.pool.conninfo), "mongodb": lambda: source().command("ping")}
    )
    return app


def get_app() -> falcon.App:
    settings = Settings.from_env()
    logs.configure(settings.log_level, settings.log_format)
    mongo_url, database_url = settings.require("mongo_url"), settings.require("database_url")
    client: pymongo.MongoClient[Any] = pymongo.MongoClient(mongo_url)
    keys = KeyStore(database_url, pool_size=settings.web_threads)
    readiness = {"postgres": metrics.postgres_check(database_url), "mongodb": metrics.mongodb_check(mongo_url)}
    return create_app(
        Generations(client, settings.mongo_db),
        settings.read_wait_seconds,
        keys,
        settings.read_waiters,
        readiness=readiness,
    )

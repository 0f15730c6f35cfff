"""The command HTTP API (falcon, served by gunicorn): thin resources over ``Books``.

Every route needs a key (``auth``): the resource names the scope it needs, and a key
limited to some accounts is checked against the accounts the command acts on.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import falcon

from auth import keys as scopes
from auth.http import (
    SECURITY_SCHEMES,
    Authenticate,
    KeyList,
    KeyRevocation,
    Keys,
    KeyView,
    NewKey,
    NewKeyBody,
    forbidden,
    request_key,
    require_accounts,
)
from auth.store import KeyStore
from commands import access, request_bodies, requests, responses, run_files
from commands.answers import Replayed
from commands.application import Books
from commands.event_store import event_store_env
from commands.routes import WRITES
from ledger.errors import InvalidRequest, LedgerError
from ledger.ids import CLIENT_ID
from runtime import logs, metrics, openapi, web
from runtime.settings import Settings


def read_body(req: falcon.Request, *, optional: bool = False) -> Any:
    """The request's JSON body (``None`` when ``optional`` and there is none).

    A body must be labelled ``application/json`` (parameters such as charset allowed); a
    missing or empty Content-Type is a 415 too: a web page can send such a POST to another
    site without a CORS preflight, but not one labelled as JSON."""
    raw = web.request_body(req, request_bodies.MAX_BODY_BYTES)
    if not raw:
        if optional:
            return None
        raise InvalidRequest("body is empty; send a JSON object")
    media_type = (req.content_type or "").split(";")[0].strip().lower()
    if media_type != "application/json":
        raise web.Problem(415, "unsupported_media_type", "send the body as application/json (Content-Type header)")
    body = web.parse_json(raw)
    if body is None:  # a JSON null is not "no body"
        raise InvalidRequest("body must be a JSON object")
    return body


def answer(resp: falcon.Response, result: dict[str, Any], status: int) -> None:
    """The command's answer; a retry answered from the first run says so, as payment APIs
    do, so a client can tell "done now" from "done before"."""
    if isinstance(result, Replayed):
        resp.set_header("Idempotent-Replayed", "true")
    web.json_response(resp, result, status=status)


def perform(handle: Callable[[Any], Any], command: Any) -> Any:
    """Run a command, counting it by type and outcome (``ledger_commands_total``)."""
    name = getattr(handle, "__name__", "command")
    try:
        result = handle(command)
    except LedgerError as exc:
        metrics.COMMANDS.labels(name, exc.code).inc()
        raise
    metrics.COMMANDS.labels(name, "replayed" if isinstance(result, Replayed) else "ok").inc()
    return result


class Authorized:
    """Checks a parsed command against the request's key: admin-only variants, and the
    accounts of a key limited to some."""

    scope: str
    books: Books

    def authorize(self, req: falcon.Request, command: Any) -> None:
        key = request_key(req)
        reason = access.admin_reason(command)
        if reason and not key.allows(scopes.ADMIN):
            raise forbidden(f"{reason}: key {key.key_id} needs the admin scope")
        if key.limited and not key.allows(scopes.ADMIN):
            covered, credited = access.sides(command, self.books)
            require_accounts(req, debited=covered, credited=credited)


class CreateResource(Authorized):
    """POST of one kind of command: parse the body, check the key, run the handler, answer 201."""

    def __init__(
        self,
        books: Books,
        scope: str,
        parse: Callable[[Any], Any],
        handle: Callable[[Any], dict[str, Any]],
        *,
        status: int = 201,
    ) -> None:
        self.books = books
        self.scope = scope
        self.parse = parse
        self.handle = handle
        self.status = status

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        command = self.parse(read_body(req))
        self.authorize(req, command)
        answer(resp, perform(self.handle, command), self.status)


class ActionResource(Authorized):
    """POST to a sub-resource of an account or transfer (post, void, freeze, ...)."""

    def __init__(
        self,
        books: Books,
        scope: str,
        parse: Callable[[str, Any], Any],
        handle: Callable[[Any], dict[str, Any]],
        *,
        body: bool = False,
        status: int = 200,
    ) -> None:
        self.books = books
        self.scope = scope
        self.parse = parse
        self.handle = handle
        self.body_required = body
        self.status = status

    def on_post(self, req: falcon.Request, resp: falcon.Response, **path: str) -> None:
        (subject,) = path.values()  # the route's one field: the transfer's or the account's id
        command = self.parse(subject, read_body(req, optional=not self.body_required))
        self.authorize(req, command)
        answer(resp, perform(self.handle, command), self.status)


class TransferBatchResource(Authorized):
    """POST of independent transfers: 200 with one result per transfer, in order, each the
    status and body that POST /v1/transfers would have answered for it (and
    ``"replayed": true`` where that answer would have carried ``Idempotent-Replayed``)."""

    scope = scopes.TRANSFERS

    def __init__(self, books: Books) -> None:
        self.books = books

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        batch = requests.transfer_batch(read_body(req))
        self.authorize(req, batch)
        results = [
            {"status": web.status_for(r), "body": web.error_problem(r)}
            if isinstance(r, LedgerError)
            else {"status": 201, "body": r, "replayed": True}
            if isinstance(r, Replayed)
            else {"status": 201, "body": r}
            for r in perform(self.books.transfer_batch, batch)
        ]
        for result in results:
            outcome = (
                "replayed" if result.get("replayed") else "ok" if result["status"] == 201 else result["body"]["code"]
            )
            metrics.COMMANDS.labels("transfer", outcome).inc()
        web.json_response(resp, {"results": results})


class PayoutRunUpload(Authorized):
    """POST of a payout run's file: CSV (``?id=RUN_ID``) or JSON, checked whole."""

    scope = scopes.PAYOUTS
    max_body_bytes = run_files.MAX_FILE_BYTES

    def __init__(self, books: Books) -> None:
        self.books = books

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        raw = web.request_body(req, run_files.MAX_FILE_BYTES)
        media_type = (req.content_type or "").split(";")[0].strip().lower()
        if media_type == "text/csv":
            command = run_files.from_csv(req.get_param("id"), raw)
        elif media_type == "application/json":
            if req.get_param("id") is not None:
                raise InvalidRequest("a JSON file names its run in its id field, not in the query string")
            command = run_files.from_json(web.parse_json(raw))
        else:
            raise web.Problem(
                415, "unsupported_media_type", "send the file as text/csv (with ?id=RUN_ID) or application/json"
            )
        self.authorize(req, command)
        answer(resp, perform(self.books.upload_payout_run, command), 201)


def create_app(books: Books, keys: KeyStore) -> falcon.App:
    app = web.create_base_app(Authenticate(keys, max_body_bytes=request_bodies.MAX_BODY_BYTES), api="command")
    api = openapi.Routes(app, "ledger command API", DESCRIPTION, SECURITY_SCHEMES)
    for write in WRITES:
        handle = getattr(books, write.handler)
        resource: CreateResource | ActionResource = (
            ActionResource(books, write.scope, write.parse, handle, body=write.body_required, status=write.status)
            if write.action
            else CreateResource(books, write.scope, write.parse, handle, status=write.status)
        )
        ids = tuple(
            openapi.Param(
                name, PATH_SCHEMAS.get(name, CLIENT_ID_SCHEMA), f"The {name.removesuffix('_id')}'s id", where="path"
            )
            for name in re.findall(r"{(\w+)}", write.path)
        )
        operation = openapi.Operation(
            write.summary,
            write.scope,
            write.answer,
            status=write.status,
            body=write.body,
            body_required=write.body_required,
            params=ids,
            problems=WRITE_PROBLEMS,
            example=write.example,
        )
        api.add(write.path, resource, post=operation)
    api.add(
        "/v1/transfer-batches",
        TransferBatchResource(books),
        post=openapi.Operation(
            "Up to 100 independent transfers: each stands or fails alone",
            scopes.TRANSFERS,
            responses.BatchAnswer,
            body=request_bodies.TransferBatchBody,
            problems=(413, 415, 503),
        ),
    )
    api.add(
        "/v1/payout-runs",
        PayoutRunUpload(books),
        post=openapi.Operation(
            "Upload a payout run's file: every row checked, the whole file refused with a per-row report, or the run "
            "stored ready to start",
            scopes.PAYOUTS,
            responses.PayoutRunAnswer,
            status=201,
            body=request_bodies.PayoutRunBody,
            problems=(409, 413, 415, 422, 503),
            csv="A header id,account,amount,destination[,memo] then one row per payment; the run's id in ?id=",
            example={"id": "run-2026-11", "rows": [EXAMPLE_ROW]},
            params=(openapi.Param("id", RUN_ID_SCHEMA, "The run's id, for a text/csv body"),),
        ),
    )
    api.add(
        "/v1/keys",
        Keys(keys, request_bodies.MAX_BODY_BYTES),
        get=openapi.Operation("List the API keys (never their secrets)", scopes.ADMIN, KeyList),
        post=openapi.Operation(
            "Make an API key: its secret is in this answer only",
            scopes.ADMIN,
            NewKey,
            status=201,
            body=NewKeyBody,
            problems=(413, 415),
            example={"name": "shop-42 backend", "scopes": ["transfers", "read"], "accounts": ["shop-42:*"]},
        ),
    )
    api.add(
        "/v1/keys/{key_id}/revoke",
        KeyRevocation(keys),
        post=openapi.Operation(
            "Revoke a key: every API process refuses it within seconds", scopes.ADMIN, KeyView, problems=(404,)
        ),
    )
    api.publish({"postgres": metrics.postgres_check(keys.pool.conninfo)})
    return app


DESCRIPTION = (
    "Commands that move money: every write is idempotent by its id (a retry with the same body gets the first "
    "answer, marked `Idempotent-Replayed: true`; another body under a used id is 409 `id_conflict`). "
    "Amounts are decimal strings in major units. Errors are RFC 9457 problem documents with a stable `code`."
)
WRITE_PROBLEMS = (404, 409, 413, 415, 422, 503)
CLIENT_ID_SCHEMA = {"type": "string", "pattern": CLIENT_ID.pattern}
RUN_ID_SCHEMA = {"type": "string", "pattern": CLIENT_ID.pattern, "maxLength": 64}
_ID = CLIENT_ID.pattern.strip("^$")
# A payout is a client's (its id) or a run's row's (RUN$ROW$ATTEMPT).
PATH_SCHEMAS = {"payout_id": {"type": "string", "pattern": f"^{_ID}(\\${_ID}\\$[0-9]{{1,9}})?$"}}
EXAMPLE_ROW = {
    "id": "1",
    "account": "acct-alice",
    "amount": "12.50",
    "destination": "GA5WUJ54Z23KILLCUOUNAKTPBVZWKMQVO4O6EQ5GHLAERIMLLHNCSKYH",
    "memo": "nov",
}


def get_app() -> falcon.App:
    settings = Settings.from_env()
    logs.configure(settings.log_level, settings.log_format)
    database_url = settings.require("database_url")
    books = Books(
        event_store_env(settings), write_attempts=settings.write_attempts, payout_assets=settings.payout_assets
    )
    return create_app(books, KeyStore(database_url, pool_size=settings.web_threads))

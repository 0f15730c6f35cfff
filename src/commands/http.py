"""The command HTTP API (falcon, served by gunicorn): thin resources over ``Ledger``.

Every route needs a key (``auth``): the resource names the scope it needs, and a key
limited to some accounts is checked against the accounts the command acts on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import falcon

from auth import keys as scopes
from auth.http import Authenticate, KeyRevocation, Keys, forbidden, request_key, require_accounts
from auth.store import KeyStore
from commands import access, requests
from commands.answers import Replayed
from commands.application import Ledger, event_store_env
from ledger.errors import InvalidRequest, LedgerError
from runtime import logs, web
from runtime.settings import Settings


def read_body(req: falcon.Request, *, optional: bool = False) -> Any:
    """The request's JSON body (``None`` when ``optional`` and there is none).

    A body must be labelled ``application/json`` (parameters such as charset allowed); a
    missing or empty Content-Type is a 415 too: a web page can send such a POST to another
    site without a CORS preflight, but not one labelled as JSON."""
    raw = web.request_body(req, requests.MAX_BODY_BYTES)
    if not raw:
        if optional:
            return None
        raise InvalidRequest("body is empty; send a JSON object")
    media_type = (req.content_type or "").split(";")[0].strip().lower()
    if media_type != "application/json":
        raise web.Problem(415, "unsupported_media_type", "send the body as application/json (Content-Type header)")
    return web.parse_json(raw)


def answer(resp: falcon.Response, result: dict[str, Any], status: int) -> None:
    """The command's answer; a retry answered from the first run says so, as payment APIs
    do, so a client can tell "done now" from "done before"."""
    if isinstance(result, Replayed):
        resp.set_header("Idempotent-Replayed", "true")
    web.json_response(resp, result, status=status)


class Authorized:
    """Checks a parsed command against the request's key: admin-only variants, and the
    accounts of a key limited to some."""

    scope: str
    ledger: Ledger

    def authorize(self, req: falcon.Request, command: Any) -> None:
        key = request_key(req)
        reason = access.admin_reason(command)
        if reason and not key.allows(scopes.ADMIN):
            raise forbidden(f"{reason}: key {key.key_id} needs the admin scope")
        if key.limited and not key.allows(scopes.ADMIN):
            covered, credited = access.sides(command, self.ledger)
            require_accounts(req, debited=covered, credited=credited)


class CreateResource(Authorized):
    """POST of one kind of command: parse the body, check the key, run the handler, answer 201."""

    def __init__(
        self,
        ledger: Ledger,
        scope: str,
        parse: Callable[[Any], Any],
        handle: Callable[[Any], dict[str, Any]],
        *,
        status: int = 201,
    ) -> None:
        self.ledger = ledger
        self.scope = scope
        self.parse = parse
        self.handle = handle
        self.status = status

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        command = self.parse(read_body(req))
        self.authorize(req, command)
        answer(resp, self.handle(command), self.status)


class ActionResource(Authorized):
    """POST to a sub-resource of an account or transfer (post, void, freeze, ...)."""

    def __init__(
        self,
        ledger: Ledger,
        scope: str,
        parse: Callable[[str, Any], Any],
        handle: Callable[[Any], dict[str, Any]],
        *,
        body: bool = False,
        status: int = 200,
    ) -> None:
        self.ledger = ledger
        self.scope = scope
        self.parse = parse
        self.handle = handle
        self.body_required = body
        self.status = status

    def on_post(self, req: falcon.Request, resp: falcon.Response, subject: str) -> None:
        command = self.parse(subject, read_body(req, optional=not self.body_required))
        self.authorize(req, command)
        answer(resp, self.handle(command), self.status)


class TransferBatchResource(Authorized):
    """POST of independent transfers: 200 with one result per transfer, in order, each the
    status and body that POST /v1/transfers would have answered for it (and
    ``"replayed": true`` where that answer would have carried ``Idempotent-Replayed``)."""

    scope = scopes.TRANSFERS

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        batch = requests.transfer_batch(read_body(req))
        self.authorize(req, batch)
        results = [
            {"status": web.status_for(r), "body": web.error_problem(r)}
            if isinstance(r, LedgerError)
            else {"status": 201, "body": r, "replayed": True}
            if isinstance(r, Replayed)
            else {"status": 201, "body": r}
            for r in self.ledger.transfer_batch(batch)
        ]
        web.json_response(resp, {"results": results})


def create_app(ledger: Ledger, keys: KeyStore) -> falcon.App:
    app = web.create_base_app(Authenticate(keys, max_body_bytes=requests.MAX_BODY_BYTES))

    def create(scope: str, parse: Callable[[Any], Any], handle: Callable[[Any], Any], **kw: Any) -> CreateResource:
        return CreateResource(ledger, scope, parse, handle, **kw)

    def action(scope: str, parse: Callable[[str, Any], Any], handle: Callable[[Any], Any], **kw: Any) -> ActionResource:
        return ActionResource(ledger, scope, parse, handle, **kw)

    app.add_route("/v1/accounts", create(scopes.ACCOUNTS, requests.open_account, ledger.open_account))
    app.add_route("/v1/deposits", create(scopes.DEPOSITS, requests.deposit, ledger.deposit))
    app.add_route("/v1/transfers", create(scopes.TRANSFERS, requests.transfer, ledger.transfer))
    app.add_route("/v1/transfer-batches", TransferBatchResource(ledger))
    app.add_route("/v1/transactions", create(scopes.TRANSFERS, requests.transaction, ledger.transaction))
    app.add_route("/v1/payouts", create(scopes.PAYOUTS, requests.payout, ledger.request_payout))
    app.add_route("/v1/fee-rules", create(scopes.ADMIN, requests.fee_rule, ledger.set_fee_rule, status=200))
    app.add_route(
        "/v1/transfers/{subject}/post", action(scopes.TRANSFERS, requests.post_transfer, ledger.post_transfer)
    )
    app.add_route(
        "/v1/transfers/{subject}/void", action(scopes.TRANSFERS, requests.void_transfer, ledger.void_transfer)
    )
    app.add_route(
        "/v1/transfers/{subject}/reverse",
        action(scopes.TRANSFERS, requests.reverse_transfer, ledger.reverse_transfer, body=True, status=201),
    )
    app.add_route(
        "/v1/accounts/{subject}/policy",
        action(scopes.ADMIN, requests.change_policy, ledger.change_policy, body=True),
    )
    for name in ("freeze", "unfreeze", "close"):
        app.add_route(
            f"/v1/accounts/{{subject}}/{name}",
            action(scopes.ADMIN, requests.account_action(name), ledger.account_action),
        )
    app.add_route("/v1/keys", Keys(keys, requests.MAX_BODY_BYTES))
    app.add_route("/v1/keys/{key_id}/revoke", KeyRevocation(keys))
    return app


def get_app() -> falcon.App:
    settings = Settings.from_env()
    logs.configure(settings.log_level, settings.log_format)
    database_url = settings.require("database_url")
    ledger = Ledger(
        event_store_env(settings), write_attempts=settings.write_attempts, payout_assets=settings.payout_assets
    )
    return create_app(ledger, KeyStore(database_url, pool_size=settings.web_threads))

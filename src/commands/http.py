"""The command HTTP API (falcon, served by gunicorn): thin resources over ``Ledger``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import falcon

from commands import requests
from commands.application import Ledger, event_store_env
from ledger.errors import InvalidRequest, LedgerError
from runtime import logs, web
from runtime.settings import Settings


def read_body(req: falcon.Request, *, optional: bool = False) -> Any:
    """The request's JSON body (``None`` when ``optional`` and there is none).

    A body must be labelled ``application/json`` (parameters such as charset allowed); a
    missing or empty Content-Type is a 415 too: a web page can send such a POST to another
    site without a CORS preflight, but not one labelled as JSON."""
    if req.content_length is not None and req.content_length > requests.MAX_BODY_BYTES:
        raise requests.BodyTooLarge(f"body is {req.content_length} bytes; the limit is {requests.MAX_BODY_BYTES}")
    raw = req.bounded_stream.read(requests.MAX_BODY_BYTES + 1)
    if raw and (req.content_type or "").split(";")[0].strip().lower() != "application/json":
        raise web.Problem(415, "unsupported_media_type", "send the body with Content-Type: application/json")
    if len(raw) > requests.MAX_BODY_BYTES:
        raise requests.BodyTooLarge(f"body is over the limit of {requests.MAX_BODY_BYTES} bytes")
    if not raw:
        if optional:
            return None
        raise InvalidRequest("body is empty; send a JSON object")
    return requests.parse_json(raw)


class CreateResource:
    """POST of one kind of command: parse the body, run the handler, answer 201."""

    def __init__(
        self, parse: Callable[[Any], Any], handle: Callable[[Any], dict[str, Any]], *, status: int = 201
    ) -> None:
        self.parse = parse
        self.handle = handle
        self.status = status

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        command = self.parse(read_body(req))
        web.json_response(resp, self.handle(command), status=self.status)


class ActionResource:
    """POST to a sub-resource of an account or transfer (post, void, freeze, ...)."""

    def __init__(
        self,
        parse: Callable[[str, Any], Any],
        handle: Callable[[Any], dict[str, Any]],
        *,
        body: bool = False,
        status: int = 200,
    ) -> None:
        self.parse = parse
        self.handle = handle
        self.body_required = body
        self.status = status

    def on_post(self, req: falcon.Request, resp: falcon.Response, subject: str) -> None:
        command = self.parse(subject, read_body(req, optional=not self.body_required))
        web.json_response(resp, self.handle(command), status=self.status)


class TransferBatchResource:
    """POST of independent transfers: 200 with one result per transfer, in order, each the
    status and body that POST /v1/transfers would have answered for it."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        batch = requests.transfer_batch(read_body(req))
        results = [
            {"status": web.status_for(r), "body": web.error_problem(r)}
            if isinstance(r, LedgerError)
            else {"status": 201, "body": r}
            for r in self.ledger.transfer_batch(batch)
        ]
        web.json_response(resp, {"results": results})


def create_app(ledger: Ledger) -> falcon.App:
    app = web.create_base_app()
    app.add_route("/v1/accounts", CreateResource(requests.open_account, ledger.open_account))
    app.add_route("/v1/deposits", CreateResource(requests.deposit, ledger.deposit))
    app.add_route("/v1/transfers", CreateResource(requests.transfer, ledger.transfer))
    app.add_route("/v1/transfer-batches", TransferBatchResource(ledger))
    app.add_route("/v1/transactions", CreateResource(requests.transaction, ledger.transaction))
    app.add_route("/v1/payouts", CreateResource(requests.payout, ledger.request_payout))
    app.add_route("/v1/fee-rules", CreateResource(requests.fee_rule, ledger.set_fee_rule, status=200))
    app.add_route("/v1/transfers/{subject}/post", ActionResource(requests.post_transfer, ledger.post_transfer))
    app.add_route("/v1/transfers/{subject}/void", ActionResource(requests.void_transfer, ledger.void_transfer))
    app.add_route(
        "/v1/transfers/{subject}/reverse",
        ActionResource(requests.reverse_transfer, ledger.reverse_transfer, body=True, status=201),
    )
    app.add_route(
        "/v1/accounts/{subject}/policy", ActionResource(requests.change_policy, ledger.change_policy, body=True)
    )
    for action in ("freeze", "unfreeze", "close"):
        resource = ActionResource(requests.account_action(action), ledger.account_action)
        app.add_route(f"/v1/accounts/{{subject}}/{action}", resource)
    return app


def get_app() -> falcon.App:
    settings = Settings.from_env()
    logs.configure(settings.log_level, settings.log_format)
    ledger = Ledger(
        event_store_env(settings), write_attempts=settings.write_attempts, payout_assets=settings.payout_assets
    )
    return create_app(ledger)

"""Authentication for both HTTP apps: a falcon middleware, and the errors it answers.

Every resource says which scope it needs (``scope``, admin when it says nothing);
``public = True`` exempts one (``/healthz``). The key a request was authenticated with
is on ``req.context.key`` for the resource's own account checks, and in
``auth.keys.acting_key`` for the events its command writes.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable
from typing import Annotated, Any

import falcon
import msgspec

from auth import signing
from auth.keys import ADMIN, NAME_MAX, SCOPES, ApiKey, KeyDefinitionError, acting_key
from auth.store import KeyStore
from runtime import bodies, web

CHALLENGE = f"Bearer, {signing.SCHEME}"
_REJECTED = "the key id or secret is wrong, or the key was revoked"

# How a request shows its key, as the OpenAPI document describes it.
SECURITY_SCHEMES = {
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "`Authorization: Bearer <key_id>.<secret>`, the token `POST /v1/keys` answers once.",
    },
    "signed": {
        "type": "apiKey",
        "in": "header",
        "name": "Authorization",
        "description": (
            f"`Authorization: {signing.SCHEME} key=<key_id>, ts=<unix seconds>, nonce=<random>, sig=<hex>`: "
            "HMAC-SHA256, keyed by SHA-256 of the secret, over the scheme, ts, nonce, method, path with query "
            f"and SHA-256 of the body, joined by newlines; ts within {signing.WINDOW_SECONDS} s, each nonce once "
            "(README: signed requests)."
        ),
    },
}


def unauthenticated(detail: str) -> web.Problem:
    return web.Problem(401, "unauthenticated", detail, headers={"WWW-Authenticate": CHALLENGE})


def forbidden(detail: str) -> web.Problem:
    return web.Problem(403, "forbidden", detail)


def request_key(req: falcon.Request) -> ApiKey:
    """The key the request was authenticated with (every non-public route has one)."""
    key = req.context.get("key")
    if key is None:
        raise unauthenticated("this route needs a key")
    return key  # type: ignore[no-any-return]


def require_accounts(req: falcon.Request, *, debited: tuple[str, ...] = (), credited: tuple[str, ...] = ()) -> None:
    """403 unless the request's key may debit (or read) ``debited`` and credit ``credited``."""
    key = request_key(req)
    outside = [a for a in debited if not key.covers(a)] + [a for a in credited if not key.may_credit(a)]
    if outside:
        raise forbidden(f"key {key.key_id} may not act on account {outside[0]!r}")


def request_target(req: falcon.Request) -> str:
    """The path and query as the client sent them (percent-escapes kept), which is what it
    signed: gunicorn's ``RAW_URI``; falcon's test client leaves the query out of it."""
    raw = req.env.get("RAW_URI") or req.path
    query = req.env.get("QUERY_STRING", "")
    return f"{raw}?{query}" if query and "?" not in raw else str(raw)


class Authenticate:
    def __init__(
        self, keys: KeyStore, *, max_body_bytes: int = 64 * 1024, clock: Callable[[], float] = time.time
    ) -> None:
        self.keys = keys
        self.max_body_bytes = max_body_bytes
        self.clock = clock

    def process_resource(self, req: falcon.Request, resp: falcon.Response, resource: Any, params: Any) -> None:
        if resource is None or getattr(resource, "public", False):
            return
        header = req.get_header("Authorization")
        if not header:
            raise unauthenticated(f"send 'Authorization: Bearer <key_id>.<secret>' or a {signing.SCHEME} signature")
        try:
            credentials = signing.parse(header)
        except signing.BadCredentials as exc:
            raise unauthenticated(str(exc)) from None
        key = self.keys.get(credentials.key_id)
        if key is None or key.revoked:
            raise unauthenticated(_REJECTED)
        if isinstance(credentials, signing.Bearer):
            if not key.secret_matches(credentials.secret):
                raise unauthenticated(_REJECTED)
            if key.signed_only:
                raise unauthenticated(f"key {key.key_id} accepts {signing.SCHEME} signed requests only")
        else:
            req.context.body_limit = getattr(resource, "max_body_bytes", self.max_body_bytes)  # a run's file is larger
            self._check_signature(req, key, credentials)
        req.context.key = key
        req.context.acting = acting_key.set(key.key_id)
        scope = getattr(resource, "scope", ADMIN)
        if not key.allows(scope):
            raise forbidden(f"key {key.key_id} does not have the {scope!r} scope this route needs")

    def process_response(self, req: falcon.Request, resp: falcon.Response, resource: Any, succeeded: bool) -> None:
        token = req.context.get("acting")
        if token is not None:
            acting_key.reset(token)

    def _check_signature(self, req: falcon.Request, key: ApiKey, signed: signing.Signed) -> None:
        drift = abs(self.clock() - signed.timestamp)
        if drift > signing.WINDOW_SECONDS:
            raise unauthenticated(
                f"ts is {int(drift)} s away from the server's clock; at most {signing.WINDOW_SECONDS} s is accepted"
            )
        body = web.request_body(req, getattr(req.context, "body_limit", self.max_body_bytes))
        target = request_target(req)
        expected = signing.signature(key.secret_sha256, signed.timestamp, signed.nonce, req.method, target, body)
        if not hmac.compare_digest(expected, signed.signature):
            raise unauthenticated("the signature does not match the request (see README: signed requests)")
        if not self.keys.first_use_of_nonce(key.key_id, signed.nonce, signed.timestamp + signing.WINDOW_SECONDS):
            raise unauthenticated("this nonce was already used; every signed request needs a new one")


class NewKeyBody(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=NAME_MAX, examples=["shop-42 backend"])]
    scopes: Annotated[list[str], msgspec.Meta(description=f"At least one of {', '.join(SCOPES)}")]
    accounts: Annotated[
        list[str], msgspec.Meta(description="Account-id patterns the key is limited to ('*': any run of characters)")
    ] = []
    credits_within_accounts: Annotated[
        bool, msgspec.Meta(description="A limited key may credit only the accounts it covers, too")
    ] = False
    signed_only: Annotated[bool, msgspec.Meta(description="Refuse the bearer token; accept signed requests only")] = (
        False
    )


class KeyView(msgspec.Struct):
    """A key as an operator sees it: never its secret."""

    key_id: str
    name: str
    scopes: list[str]
    accounts: list[str]
    credits_within_accounts: bool
    signed_only: bool
    created_at: str | None
    revoked_at: str | None


class NewKey(KeyView):
    """The secret and the bearer token appear in this answer only."""

    secret: str
    token: str


class KeyList(msgspec.Struct):
    keys: list[KeyView]


class Keys:
    """``POST /v1/keys`` makes a key (its secret is in this answer only); ``GET`` lists them."""

    scope = ADMIN

    def __init__(self, keys: KeyStore, max_body_bytes: int = 64 * 1024) -> None:
        self.keys = keys
        self.max_body_bytes = max_body_bytes

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        web.json_response(resp, {"keys": [key.describe() for key in self.keys.list()]})

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = bodies.convert(NewKeyBody, web.json_body(req, self.max_body_bytes))
        try:
            key, secret = self.keys.create(
                body.name,
                body.scopes,
                body.accounts,
                credits_within_accounts=body.credits_within_accounts,
                signed_only=body.signed_only,
            )
        except KeyDefinitionError as exc:
            raise web.Problem(400, "invalid_request", str(exc)) from None
        web.json_response(resp, key.describe() | {"secret": secret, "token": f"{key.key_id}.{secret}"}, status=201)


class KeyRevocation:
    """``POST /v1/keys/{key_id}/revoke``: every API process refuses the key within seconds."""

    scope = ADMIN

    def __init__(self, keys: KeyStore) -> None:
        self.keys = keys

    def on_post(self, req: falcon.Request, resp: falcon.Response, key_id: str) -> None:
        key = self.keys.revoke(key_id)
        if key is None:
            raise web.Problem(404, "key_not_found", f"key {key_id!r} does not exist")
        web.json_response(resp, key.describe())

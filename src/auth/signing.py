"""The two ways a request presents a key, for servers and clients alike.

- ``Authorization: Bearer <key_id>.<secret>``;
- ``Authorization: LEDGER-HMAC-SHA256 key=<key_id>, ts=<unix seconds>, nonce=<16-64
  url-safe characters>, sig=<hex>``, where ``sig`` is HMAC-SHA256 with the secret as key
  over ``string_to_sign``: the scheme, the timestamp, the nonce, the method, the path with
  its query string as sent, and the hex SHA-256 of the body, one per line. A signed
  request cannot be replayed (the nonce), delayed past the window (the timestamp), or
  changed in transit (every part of it is signed).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

from auth.keys import KEY_ID

SCHEME = "LEDGER-HMAC-SHA256"
WINDOW_SECONDS = 300  # a timestamp further off than this is refused
NONCE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
SIGNATURE = re.compile(r"^[0-9a-fA-F]{64}$")
MAX_HEADER = 512
_PARAM = re.compile(r"^\s*([a-z]+)=([^,\s]*)\s*$")


class BadCredentials(ValueError):
    """An Authorization header that cannot be read; the message says why (no secret in it)."""


@dataclass(frozen=True)
class Bearer:
    key_id: str
    secret: str


@dataclass(frozen=True)
class Signed:
    key_id: str
    timestamp: int
    nonce: str
    signature: str


def string_to_sign(timestamp: int, nonce: str, method: str, path_with_query: str, body: bytes) -> bytes:
    return "\n".join(
        [SCHEME, str(timestamp), nonce, method.upper(), path_with_query, hashlib.sha256(body).hexdigest()]
    ).encode()


def signature(key: bytes | str, timestamp: int, nonce: str, method: str, path_with_query: str, body: bytes) -> str:
    """``key`` is the secret, or its SHA-256 (the same HMAC key, see ``auth.keys.secret_hash``)."""
    raw_key = key.encode() if isinstance(key, str) else key
    message = string_to_sign(timestamp, nonce, method, path_with_query, body)
    return hmac.new(raw_key, message, hashlib.sha256).hexdigest()


def signed_header(
    key_id: str, secret: str, method: str, path_with_query: str, body: bytes = b"", *, now: float | None = None
) -> str:
    """The Authorization header of a signed request (a fresh nonce each time)."""
    timestamp = int(time.time() if now is None else now)
    nonce = secrets.token_urlsafe(24)
    sig = signature(secret, timestamp, nonce, method, path_with_query, body)
    return f"{SCHEME} key={key_id}, ts={timestamp}, nonce={nonce}, sig={sig}"


def parse(header: str) -> Bearer | Signed:
    """Read an Authorization header; raises BadCredentials saying what is wrong."""
    if len(header) > MAX_HEADER:
        raise BadCredentials("the Authorization header is too long")
    scheme, _, rest = header.strip().partition(" ")
    if scheme.lower() == "bearer":
        key_id, dot, secret = rest.strip().partition(".")
        if not dot or not KEY_ID.fullmatch(key_id) or not secret:
            raise BadCredentials("a bearer token is <key_id>.<secret>")
        return Bearer(key_id, secret)
    if scheme.upper() == SCHEME:
        return _parse_signed(rest)
    raise BadCredentials(f"use 'Bearer <key_id>.<secret>' or a {SCHEME} signature")


def _parse_signed(rest: str) -> Signed:
    params: dict[str, str] = {}
    for part in rest.split(","):
        match = _PARAM.match(part)
        if match is None or match.group(1) in params:
            raise BadCredentials(f"a {SCHEME} header is 'key=<key_id>, ts=<unix seconds>, nonce=<nonce>, sig=<hex>'")
        params[match.group(1)] = match.group(2)
    if set(params) != {"key", "ts", "nonce", "sig"}:
        raise BadCredentials(f"a {SCHEME} header has exactly key, ts, nonce and sig")
    if not KEY_ID.fullmatch(params["key"]):
        raise BadCredentials("key is not a key id")
    if not (params["ts"].isascii() and params["ts"].isdigit() and len(params["ts"]) <= 12):
        raise BadCredentials("ts must be a unix time in whole seconds")
    if not NONCE.fullmatch(params["nonce"]):
        raise BadCredentials("nonce must be 16-64 characters from [A-Za-z0-9_-]")
    if not SIGNATURE.fullmatch(params["sig"]):
        raise BadCredentials("sig must be 64 hex digits")
    return Signed(params["key"], int(params["ts"]), params["nonce"], params["sig"].lower())


class SignedAuth:
    """Signs each request made with the ``requests`` library: ``auth=SignedAuth(key_id, secret)``."""

    def __init__(self, key_id: str, secret: str) -> None:
        self.key_id = key_id
        self.secret = secret

    def __call__(self, request: Any) -> Any:
        body = request.body or b""
        if isinstance(body, str):
            body = body.encode()
        request.headers["Authorization"] = signed_header(
            self.key_id, self.secret, request.method, request.path_url, body
        )
        return request


class BearerAuth:
    """``auth=BearerAuth(token)`` for the ``requests`` library."""

    def __init__(self, token: str) -> None:
        self.token = token

    def __call__(self, request: Any) -> Any:
        request.headers["Authorization"] = f"Bearer {self.token}"
        return request

"""What both HTTP apps share: problem+json errors, request ids, the access log, health.

Errors are mapped once, here: a ``LedgerError`` becomes an RFC 9457 problem with the
error's stable ``code``; Falcon's own errors (unknown route, wrong method) get a code
derived from their status.
"""

from __future__ import annotations

import itertools
import json
import logging
import secrets
import time
from contextvars import ContextVar
from typing import Any

import falcon

from ledger import errors
from runtime import metrics

log = logging.getLogger(__name__)
access_log = logging.getLogger("access")

request_id: ContextVar[str] = ContextVar("request_id", default="-")

_STATUS_BY_ERROR: list[tuple[type[errors.LedgerError], int]] = [
    (errors.InvalidRequest, 400),
    (errors.NotFound, 404),
    (errors.Conflict, 409),
    (errors.RuleViolation, 422),
    (errors.Busy, 503),
]

_CODE_BY_STATUS = {
    400: "invalid_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
    500: "internal_error",
    503: "unavailable",
}


class Problem(falcon.HTTPError):
    def __init__(self, status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(falcon.code_to_http_status(status), description=detail, headers=headers)
        self.problem_code = code


def status_for(error: errors.LedgerError) -> int:
    for kind, status in _STATUS_BY_ERROR:
        if isinstance(error, kind):
            return status
    return 500


def _ledger_error(req: falcon.Request, resp: falcon.Response, error: errors.LedgerError, params: Any) -> None:
    status = status_for(error)
    refusal = Problem(status, error.code, error.detail, headers={"Retry-After": "1"} if status == 503 else None)
    refusal.extra = error.extra
    raise refusal


def _unexpected(req: falcon.Request, resp: falcon.Response, error: Exception, params: Any) -> None:
    if isinstance(error, falcon.HTTPError):
        raise error
    log.exception("unhandled error", extra={"request_id": request_id.get(), "path": req.path})
    raise Problem(500, "internal_error", "the server failed to handle this request; it was logged")


def problem(status: int, code: str, detail: str) -> dict[str, Any]:
    """An RFC 9457 problem document."""
    return {
        "type": "about:blank",
        "title": falcon.code_to_http_status(status)[4:],
        "status": status,
        "code": code,
        "detail": detail,
        "request_id": request_id.get(),
    }


def error_problem(error: errors.LedgerError) -> dict[str, Any]:
    return problem(status_for(error), error.code, error.detail)


def _serialize(req: falcon.Request, resp: falcon.Response, error: falcon.HTTPError) -> None:
    status = int(error.status_code)
    code = getattr(error, "problem_code", None) or _CODE_BY_STATUS.get(status, f"http_{status}")
    resp.content_type = "application/problem+json"
    resp.data = json.dumps(
        problem(status, code, error.description or error.title) | getattr(error, "extra", {})
    ).encode()


class RequestIdMiddleware:
    """A request id is a random prefix for this process and a counter: unique, and no
    random bytes to ask the kernel for on every request."""

    def __init__(self) -> None:
        self._prefix = secrets.token_hex(8)
        self._numbers = itertools.count(1)

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        incoming = req.get_header("X-Request-Id")
        rid = incoming if incoming and len(incoming) <= 128 else f"{self._prefix}{next(self._numbers):016x}"
        request_id.set(rid)
        resp.set_header("X-Request-Id", rid)


class AccessLog:
    """One JSON line per request: who (the key id, never a secret), what, the answer, how long."""

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.started = time.perf_counter()

    def process_response(self, req: falcon.Request, resp: falcon.Response, resource: object, succeeded: bool) -> None:
        key = req.context.get("key")
        access_log.info(
            "request",
            extra={
                "method": req.method,
                "path": req.path,
                "status": int(resp.status_code),
                "key_id": key.key_id if key is not None else None,
                "duration_ms": round((time.perf_counter() - req.context.get("started", time.perf_counter())) * 1000, 2),
                "request_id": request_id.get(),
            },
        )


def request_body(req: falcon.Request, limit: int) -> bytes:
    """The raw body, read once (authentication hashes it, the resource parses it), at most ``limit`` bytes."""
    cached = req.context.get("raw_body")
    if cached is not None:
        return bytes(cached)
    if req.content_length is not None and req.content_length > limit:
        raise Problem(413, "body_too_large", f"body is {req.content_length} bytes; the limit is {limit}")
    raw = req.bounded_stream.read(limit + 1)
    if len(raw) > limit:
        raise Problem(413, "body_too_large", f"body is over the limit of {limit} bytes")
    req.context.raw_body = raw
    return bytes(raw)


def parse_json(raw: bytes) -> Any:
    """Strict JSON: no NaN or Infinity, no repeated keys, UTF-8 only; each refusal says why."""

    def no_constants(name: str) -> None:
        raise errors.InvalidRequest(f"{name} is not valid JSON")

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, value in pairs:
            if key in result:
                raise errors.InvalidRequest(f"field {key!r} appears more than once")
            result[key] = value
        return result

    try:
        text = raw.decode("utf-8")
        return json.loads(text, parse_constant=no_constants, object_pairs_hook=no_duplicates)
    except UnicodeDecodeError:
        raise errors.InvalidRequest("body is not UTF-8") from None
    except json.JSONDecodeError as exc:
        where = f"at line {exc.lineno} column {exc.colno}"
        raise errors.InvalidRequest(f"body is not valid JSON: {exc.msg} {where}") from None
    except RecursionError:
        raise errors.InvalidRequest("body is nested too deeply") from None
    except ValueError as exc:  # e.g. an integer literal longer than Python converts
        raise errors.InvalidRequest(f"body has a value that cannot be read: {exc}") from None


def json_body(req: falcon.Request, limit: int) -> Any:
    return parse_json(request_body(req, limit))


class Health:
    """Liveness only, and open: no key is needed to ask whether the process answers."""

    public = True

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"status": "ok"}


def create_base_app(*middleware: object, api: str = "http") -> falcon.App:
    """The app with request ids, the access log, request metrics (labelled ``api``) and
    then ``middleware`` (authentication first)."""
    app = falcon.App(middleware=[RequestIdMiddleware(), AccessLog(), metrics.RequestMetrics(api), *middleware])
    app.add_error_handler(Exception, _unexpected)
    app.add_error_handler(errors.LedgerError, _ledger_error)
    app.set_error_serializer(_serialize)
    app.add_route("/healthz", Health())
    return app


def json_response(resp: falcon.Response, body: dict[str, Any], status: int = 200) -> None:
    resp.status = falcon.code_to_http_status(status)
    resp.content_type = falcon.MEDIA_JSON
    resp.data = json.dumps(body).encode()

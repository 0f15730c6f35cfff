"""The query API's query parameters: each read strictly (a value out of range, a
parameter a route does not take or one given twice is a 400 naming it) and described
for the OpenAPI document, once."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import falcon

from ledger.errors import InvalidRequest
from ledger.money import AMOUNT_PATTERN, ASSET_PATTERN, Asset, split_amount
from queries import readmodel
from runtime import openapi

MAX_PAGE = 500
DEFAULT_PAGE = 50
MAX_POSITION = 2**63 - 1  # positions are stored as MongoDB int64
MIN_POSITION = "min_position"

# RFC 3339 (section 5.6), ASCII digits only; a space may stand for "T" (section 5.6, NOTE),
# and an unencoded "+" in a query string arrives as a space.
_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,9})?(?:[Zz]|[+ -][0-9]{2}:[0-9]{2})"
)


def int_param(req: falcon.Request, name: str, default: int | None, low: int, high: int = MAX_POSITION) -> int | None:
    raw = req.get_param(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 19 or not low <= int(raw) <= high:
        raise InvalidRequest(f"{name} must be an integer {low}..{high}")
    return int(raw)


def time_param(req: falcon.Request, name: str) -> datetime | None:
    """An RFC 3339 time with its offset, as UTC; years 0001 to 9999 once in UTC, as Python holds them."""
    raw = req.get_param(name)
    if raw is None:
        return None
    example = "2026-01-31T23:59:59Z"
    if _RFC3339.fullmatch(raw) is None:
        if _RFC3339.fullmatch(raw + "Z") is not None:
            raise InvalidRequest(f"{name} must say its time zone (Z or an offset), like {example}")
        raise InvalidRequest(f"{name} must be an RFC 3339 time like {example}")
    text = raw[:-6] + "+" + raw[-5:] if raw[-6] == " " else raw  # an unencoded "+" offset
    try:
        return datetime.fromisoformat(f"{text[:10]}T{text[11:].upper()}").astimezone(UTC)
    except ValueError as exc:  # e.g. month 13, second 60, offset 24:00
        raise InvalidRequest(f"{name} is not a valid time: {exc}") from None
    except OverflowError:
        raise InvalidRequest(f"{name} must fall between 0001-01-01 and 9999-12-31 in UTC") from None


def integer(low: int, high: int) -> dict[str, Any]:
    return {"type": "integer", "minimum": low, "maximum": high}


WAIT = openapi.Param(
    MIN_POSITION,
    integer(0, MAX_POSITION),
    "Wait (bounded) until the read models have applied this position, from a write's answer: read your writes",
)
AT_POSITION = openapi.Param("at_position", integer(0, MAX_POSITION), "The balance as it was at this position")
TIME_SCHEMA = {"type": "string", "pattern": f"^{_RFC3339.pattern}$"}
AT = openapi.Param("at", TIME_SCHEMA, "The balance as it was at this time (RFC 3339)")
FROM = openapi.Param("from", TIME_SCHEMA, "The period's start (RFC 3339, inclusive)")
TO = openapi.Param("to", TIME_SCHEMA, "The period's end (RFC 3339, exclusive)")
ASSET = openapi.Param("asset", {"type": "string", "pattern": ASSET_PATTERN}, "Only this asset (CODE/SCALE)")
AMOUNT_SCHEMA = {"type": "string", "pattern": AMOUNT_PATTERN}
LIMIT = openapi.Param("limit", integer(1, MAX_PAGE), f"Page size (default {DEFAULT_PAGE})")
CURSOR = openapi.Param(
    "cursor", {"type": "string", "maxLength": readmodel.MAX_CURSOR_CHARS}, "From the previous page's next_cursor"
)


class QueryParameters:
    """Each resource names the query parameters it takes (``query_params``); any other
    parameter, or one given twice, is a 400 naming it: a misspelt parameter must not
    be silently ignored (the same rule as unknown body fields on the command API)."""

    def process_resource(
        self, req: falcon.Request, resp: falcon.Response, resource: object, params: dict[str, Any]
    ) -> None:
        allowed: frozenset[str] | None = getattr(resource, "query_params", None)
        if allowed is None:
            return
        prefixes: tuple[str, ...] = getattr(resource, "query_param_prefixes", ())
        for name, value in req.params.items():
            if name not in allowed and not any(name.startswith(p) and len(name) > len(p) for p in prefixes):
                shown = name if len(name) <= 40 else name[:40] + "..."
                takes = ", ".join(sorted(allowed))
                raise InvalidRequest(f"unknown query parameter {shown!r}; this route takes {takes}")
            if isinstance(value, list):
                raise InvalidRequest(f"{name} is given more than once")


def limit(req: falcon.Request) -> int:
    return int_param(req, "limit", DEFAULT_PAGE, 1, MAX_PAGE) or DEFAULT_PAGE


def period(req: falcon.Request) -> tuple[datetime | None, datetime | None]:
    since, until = time_param(req, "from"), time_param(req, "to")
    if since is not None and until is not None and until < since:
        raise InvalidRequest("to must not be before from")
    return since, until


def choice(req: falcon.Request, name: str, choices: tuple[str, ...]) -> str | None:
    value = req.get_param(name)
    if value is not None and value not in choices:
        raise InvalidRequest(f"{name} must be one of {', '.join(choices)}")
    return value


def asset(req: falcon.Request) -> str | None:
    value = req.get_param("asset")
    return None if value is None else str(Asset.parse(value))


def amount(req: falcon.Request, name: str) -> str | None:
    value = req.get_param(name)
    if value is not None:
        split_amount(value)
    return value

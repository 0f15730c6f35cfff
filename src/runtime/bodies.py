"""JSON bodies checked against msgspec structs, with refusals that name the field.

msgspec stops at the first problem and words it for programmers ("Expected `str`, got
`int` - at `$.transfers[0].id`"); a client gets instead every unknown or missing field
of the object at fault, and, where the caller can say more about a field (its own
domain check), the caller's error, code and all.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cache
from typing import Annotated, Any, TypeVar, get_args, get_origin

import msgspec

from ledger.errors import InvalidRequest

T = TypeVar("T")
# Raises the caller's own error for a field of ``kind`` that the schema refused, if it has one.
Explain = Callable[[type, str, Any], None]

_STEP = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[([0-9]+)\]")


def convert(kind: type[T], body: Any, explain: Explain | None = None) -> T:
    """``body`` (already parsed, strict JSON) as a ``kind``; InvalidRequest otherwise."""
    try:
        return msgspec.convert(body, kind)
    except msgspec.ValidationError as exc:
        try:
            refusal = _refusal(kind, body, str(exc), explain)
        except (LookupError, TypeError, ValueError):  # a message we could not follow back to the body
            refusal = InvalidRequest(f"body does not fit the schema: {str(exc)[:300]}")
        raise refusal from None


def _refusal(kind: type, body: Any, error: str, explain: Explain | None) -> InvalidRequest:
    # The path comes last; what comes before may quote the client's own field names.
    head, found, where = error.rpartition(" - at `")
    message = head if found else error
    steps: list[str | int] = [name or int(index) for name, index in _STEP.findall(where.rstrip("`"))]
    about_object = message.startswith("Object ")  # unknown or missing fields: the path is the object's
    container = steps if about_object else steps[:-1]
    value, struct = body, kind
    for step in container:
        value, struct = value[step], _member(struct, step)
    at = _render(container)
    lead = f"{at}: " if at else ""
    if message.startswith("Object contains unknown field"):
        return InvalidRequest(f"{lead}unknown field(s): {', '.join(sorted(set(value) - set(_fields(struct))))}")
    if message.startswith("Object missing required field"):
        missing = sorted(f.name for f in msgspec.structs.fields(struct) if f.required and f.name not in value)
        return InvalidRequest(f"{lead}missing field(s): {', '.join(missing)}")
    if message.startswith("Expected `object`"):
        return InvalidRequest(f"{_render(steps) or 'body'} must be a JSON object")
    if not steps or isinstance(steps[-1], int):
        return InvalidRequest(f"{_render(steps) or 'body'}: {_lower(message)}")
    field = steps[-1]
    if explain is not None:
        try:
            explain(kind, field, value[field])
        except InvalidRequest as exc:
            return type(exc)(f"{lead}{exc.detail}")
    return InvalidRequest(f"{lead}{field}: {_lower(message)}")


def _lower(message: str) -> str:
    return message[:1].lower() + message[1:]


def _render(steps: list[str | int]) -> str:
    return "".join(f"[{s}]" if isinstance(s, int) else f".{s}" for s in steps).removeprefix(".")


def _member(struct: Any, step: str | int) -> Any:
    """The type one step into ``struct``: a field's type, or a list's item type."""
    return get_args(struct)[0] if isinstance(step, int) else _fields(struct)[step]


@cache
def _fields(struct: type) -> dict[str, Any]:
    return {f.name: _unannotated(f.type) for f in msgspec.structs.fields(struct)}


def _unannotated(annotation: Any) -> Any:
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    return annotation

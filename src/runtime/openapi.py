"""The published contract of an HTTP app: OpenAPI 3.1 at ``/openapi.json`` and a docs page
at ``/docs``, both built from the same msgspec structs that check requests.

Routes are added through ``Routes``, which refuses a resource method that has no
``Operation``: the document covers every route by construction, not by discipline.
"""

from __future__ import annotations

import html
import inspect
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

import falcon
import msgspec
import orjson

from ledger import errors
from runtime import metrics, web

REF = "#/components/schemas/{name}"
PUBLIC: None = None  # an Operation's scope when no key is needed


@dataclass(frozen=True)
class Param:
    name: str
    schema: dict[str, Any]
    description: str
    where: str = "query"


@dataclass(frozen=True)
class Operation:
    summary: str
    scope: str | None
    answer: Any = None  # the success body's type (msgspec); None for none described
    status: int = 200
    body: Any = None  # the request body's type (msgspec)
    body_required: bool = True
    params: tuple[Param, ...] = ()
    problems: tuple[int, ...] = ()  # statuses beyond 400, 401 and 403 that it may answer
    description: str = ""
    media_type: str = "application/json"  # of the success answer
    example: dict[str, Any] | None = None
    csv: str | None = None  # the body may also be text/csv, as this says


class Problem(msgspec.Struct):
    """An RFC 9457 problem document; ``code`` is stable, ``detail`` is for people."""

    type: str
    title: str
    status: int
    code: str
    detail: str
    # absent where the HTTP server refused the request before the app saw it (runtime.web_worker)
    request_id: str | msgspec.UnsetType = msgspec.UNSET
    # invalid_rows: each bad row of a payout run's file, {"row", "field", "code", "detail"}
    rows: list[dict[str, Any]] | msgspec.UnsetType = msgspec.UNSET


# Codes that HTTP plumbing answers, beside the ledger's own errors (web, auth).
_PLUMBING_CODES = {
    400: ("invalid_request",),
    401: ("unauthenticated",),
    403: ("forbidden",),
    404: ("not_found", "key_not_found"),
    405: ("method_not_allowed",),
    408: ("request_timeout",),  # these four, and 414, 417, 431: runtime.web_worker
    411: ("length_required",),
    413: ("body_too_large",),
    414: ("uri_too_long",),
    415: ("unsupported_media_type",),
    417: ("expectation_failed",),
    431: ("headers_too_large",),
    500: ("internal_error",),
    501: ("not_implemented",),
    503: ("busy", "not_ready", "not_yet_visible", "unavailable"),
}


@cache
def problem_codes() -> dict[int, list[str]]:
    """Every problem code either API can answer, by status."""
    codes: dict[int, set[str]] = {status: set(names) for status, names in _PLUMBING_CODES.items()}
    for kind in _subclasses(errors.LedgerError):
        codes.setdefault(web.status_for(kind("")), set()).add(kind.code)
    return {status: sorted(names) for status, names in sorted(codes.items())}


def _subclasses(kind: type[errors.LedgerError]) -> Iterator[type[errors.LedgerError]]:
    for sub in kind.__subclasses__():
        yield sub
        yield from _subclasses(sub)


class Routes:
    """Adds routes to a falcon app and remembers what each method of each one does."""

    def __init__(self, app: falcon.App, title: str, description: str, security_schemes: dict[str, Any]) -> None:
        self.app = app
        self.title = title
        self.description = description
        self.security_schemes = security_schemes
        self.operations: dict[str, dict[str, Operation]] = {}

    def add(self, path: str, resource: object, **operations: Operation) -> None:
        served = {name[3:] for name, _ in inspect.getmembers(resource, callable) if name.startswith("on_")}
        if served != set(operations):
            raise ValueError(f"{path}: methods {sorted(served)} but operations for {sorted(operations)}")
        self.app.add_route(path, resource)
        self.operations[path] = operations

    def publish(self, readiness: Mapping[str, metrics.Check]) -> None:
        """Serve what operators and tools read: metrics, readiness (``readiness``: each
        dependency's check), this document and its docs page (and describe ``/healthz``)."""
        self.operations["/healthz"] = {"get": Operation("Liveness: the process answers", PUBLIC, answer=dict[str, str])}
        self.add(
            "/metrics",
            metrics.MetricsResource(),
            get=Operation(
                "Prometheus metrics (text exposition format; docs/metrics.md)",
                metrics.MetricsResource.scope,
                media_type="text/plain",
            ),
        )
        self.add(
            "/readyz",
            metrics.Readiness(readiness),
            get=Operation(
                "Readiness: every dependency answers (503 problem naming the ones that do not)",
                PUBLIC,
                answer=metrics.ReadinessView,
                problems=(503,),
            ),
        )
        self.add("/openapi.json", _Document(self), get=Operation("This document", PUBLIC, answer=dict[str, Any]))
        self.add("/docs", _DocsPage(self), get=Operation("This API's docs page", PUBLIC, media_type="text/html"))

    def document(self) -> dict[str, Any]:
        types = [t for ops in self.operations.values() for op in ops.values() for t in (op.body, op.answer) if t]
        refs, components = msgspec.json.schema_components([Problem, *types], ref_template=REF)
        schema_of = dict(zip([Problem, *types], refs, strict=True))
        paths = {
            path: {method: self._operation(path, method, op, schema_of) for method, op in ops.items()}
            for path, ops in self.operations.items()
        }
        used = sorted(
            {int(s) for ops in paths.values() for op in ops.values() for s in op["responses"] if s[0] in "45"}
        )
        problems = {f"problem_{status}": _problem_response(status, schema_of[Problem]) for status in used}
        return {
            "openapi": "3.1.0",
            "info": {"title": self.title, "version": "1", "description": self.description},
            "paths": paths,
            "components": {"schemas": components, "responses": problems, "securitySchemes": self.security_schemes},
        }

    def _operation(self, path: str, method: str, op: Operation, schema_of: dict[Any, Any]) -> dict[str, Any]:
        answer: dict[str, Any] = {"description": op.summary}
        if op.media_type == "application/json":
            answer["content"] = {op.media_type: {"schema": schema_of[op.answer] if op.answer else {}}}
        else:
            answer["content"] = {op.media_type: {"schema": {"type": "string"}}}
        responses: dict[str, Any] = {str(op.status): answer}
        public = op.scope is PUBLIC
        for status in sorted({400, *op.problems} | (set() if public else {401, 403})):
            responses[str(status)] = {"$ref": f"#/components/responses/problem_{status}"}
        others = [code for status, codes in problem_codes().items() if str(status) not in responses for code in codes]
        responses["default"] = {
            "description": "Any other problem: " + ", ".join(f"`{code}`" for code in others),
            "content": {"application/problem+json": {"schema": schema_of[Problem]}},
        }
        described: dict[str, Any] = {
            "operationId": _operation_id(method, path),
            "summary": op.summary,
            "description": (op.description + "\n\n" if op.description else "")
            + (
                "No key needed."
                if public
                else f"Needs a key with the `{op.scope}` scope" + (" (or `admin`)." if op.scope != "admin" else ".")
            ),
            "parameters": [_parameter(p) for p in (*_path_params(path, op), *op.params)],
            "responses": responses,
            "security": [] if public else [{name: []} for name in self.security_schemes],
        }
        if not public:
            described["x-scope"] = op.scope
        if op.body is not None:
            content: dict[str, Any] = {"schema": schema_of[op.body]}
            if op.example is not None:
                content["example"] = op.example
            described["requestBody"] = {"required": op.body_required, "content": {"application/json": content}}
            if op.csv is not None:
                described["requestBody"]["content"]["text/csv"] = {"schema": {"type": "string", "description": op.csv}}
        return described


def _path_params(path: str, op: Operation) -> list[Param]:
    given = {p.name for p in op.params}
    return [
        Param(name, {"type": "string", "minLength": 1}, f"The {name.replace('_', ' ')}", where="path")
        for name in re.findall(r"{(\w+)}", path)
        if name not in given
    ]


def _parameter(param: Param) -> dict[str, Any]:
    return {
        "name": param.name,
        "in": param.where,
        "required": param.where == "path",
        "description": param.description,
        "schema": param.schema,
    }


def _operation_id(method: str, path: str) -> str:
    words = re.sub(r"[^A-Za-z0-9]+", "_", path.replace("{", "by_").replace("}", "")).strip("_")
    return f"{method}_{words}"


def _problem_response(status: int, schema: dict[str, Any]) -> dict[str, Any]:
    codes = problem_codes().get(status, [])
    examples = {
        code: {"value": {**web.problem(status, code, f"what went wrong ({code})"), "request_id": "5f0c..."}}
        for code in codes
    }
    return {
        "description": "Problem codes: " + ", ".join(f"`{c}`" for c in codes),
        "content": {"application/problem+json": {"schema": schema, "examples": examples}},
    }


class _Document:
    public = True

    def __init__(self, routes: Routes) -> None:
        self.routes = routes
        self._body: bytes | None = None

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        if self._body is None:
            self._body = orjson.dumps(self.routes.document())
        resp.content_type = falcon.MEDIA_JSON
        resp.data = self._body


class _DocsPage:
    """A page made on the server from the document: no script, nothing fetched elsewhere."""

    public = True

    def __init__(self, routes: Routes) -> None:
        self.routes = routes
        self._page: bytes | None = None

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        if self._page is None:
            self._page = render_docs(self.routes.document()).encode()
        resp.content_type = falcon.MEDIA_HTML
        resp.data = self._page


_STYLE = (
    "body{font:15px/1.45 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}"
    "code{background:#f4f4f4;padding:0 .2em}h3{margin-top:2rem;border-top:1px solid #ddd;padding-top:1rem}"
    "table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:.2em .5em;text-align:left;"
    "vertical-align:top}.m{font-weight:bold;color:#036}"
)


def render_docs(document: dict[str, Any]) -> str:
    e = html.escape
    schemas = document["components"]["schemas"]
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        f"<title>{e(document['info']['title'])}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>{e(document['info']['title'])}</h1><p>{e(document['info']['description'])}</p>",
        '<p>The machine-readable contract: <a href="openapi.json"><code>openapi.json</code></a> (OpenAPI 3.1).</p>',
    ]
    for path, methods in document["paths"].items():
        for method, op in methods.items():
            parts.append(
                f'<h3 id="{e(op["operationId"])}"><span class=m>{method.upper()}</span> <code>{e(path)}</code></h3>'
            )
            parts.append(f"<p>{e(op['summary'])}. {e(op['description'])}</p>")
            if op["parameters"]:
                parts.append("<table><tr><th>parameter</th><th>in</th><th>schema</th><th>meaning</th></tr>")
                for p in op["parameters"]:
                    parts.append(
                        f"<tr><td><code>{e(p['name'])}</code></td><td>{p['in']}</td>"
                        f"<td><code>{e(_brief(p['schema'], schemas))}</code></td><td>{e(p['description'])}</td></tr>"
                    )
                parts.append("</table>")
            body = op.get("requestBody")
            if body:
                parts.append(
                    "<p>Body (JSON):</p>" + _fields_table(body["content"]["application/json"]["schema"], schemas)
                )
            for status, answer in op["responses"].items():
                answer = _resolve(answer, document["components"]["responses"])
                parts.append(f"<p><b>{e(status)}</b>: {e(answer['description'])}</p>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _resolve(schema: dict[str, Any], schemas: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    return schemas[ref.rsplit("/", 1)[1]] if ref else schema


def _brief(schema: dict[str, Any], schemas: dict[str, Any]) -> str:
    if "$ref" in schema:
        return schema["$ref"].rsplit("/", 1)[1]
    if "anyOf" in schema:
        return " | ".join(_brief(s, schemas) for s in schema["anyOf"])
    if "enum" in schema:
        return " | ".join(map(repr, schema["enum"]))
    if schema.get("type") == "array":
        return f"list of {_brief(schema.get('items', {}), schemas)}"
    shown = str(schema.get("type", "any"))
    limits = [f"{k} {schema[k]}" for k in ("pattern", "minimum", "maximum", "maxLength", "format") if k in schema]
    return shown + (f" ({', '.join(limits)})" if limits else "")


def _fields_table(schema: dict[str, Any], schemas: dict[str, Any]) -> str:
    e = html.escape
    resolved = _resolve(schema, schemas)
    required = set(resolved.get("required", ()))
    rows = [
        f"<tr><td><code>{e(name)}</code>{' (required)' if name in required else ''}</td>"
        f"<td><code>{e(_brief(prop, schemas))}</code></td><td>{e(prop.get('description', ''))}</td></tr>"
        for name, prop in resolved.get("properties", {}).items()
    ]
    return "<table><tr><th>field</th><th>schema</th><th>meaning</th></tr>" + "".join(rows) + "</table>"

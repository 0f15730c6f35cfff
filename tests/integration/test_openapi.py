"""Each API publishes its contract: OpenAPI 3.1 at /openapi.json, a docs page at /docs.

The documents are built from the structs that check request bodies, so these tests ask
what a client generator or an API fuzzer needs: a valid document, every route in it,
every route behind a key, examples the API itself accepts.
"""

from __future__ import annotations

import html
from collections.abc import Iterator
from typing import Any

import falcon
import falcon.testing
import pytest
from openapi_spec_validator import OpenAPIV31SpecValidator

from auth.store import KeyStore
from commands import http as command_http
from commands import requests
from commands.application import Books
from ledger.errors import InvalidAmount, InvalidRequest
from ledger.money import AMOUNT_PATTERN
from queries import http as query_http
from runtime import openapi
from runtime.openapi import Operation, Routes


@pytest.fixture(scope="module")
def apps(books: Books, keys: KeyStore, mongo_db: Any) -> dict[str, falcon.App]:
    return {
        "command": command_http.create_app(books, keys),
        "query": query_http.create_app(mongo_db, 1.0, keys),
    }


@pytest.fixture(scope="module")
def mongo_db(servers: Any) -> Iterator[Any]:  # the shared fixture is per test; one database serves here
    import pymongo

    client: pymongo.MongoClient[Any] = pymongo.MongoClient(servers.mongo_url)
    yield client["openapi_test"]
    client.close()


def document(app: falcon.App) -> dict[str, Any]:
    result = falcon.testing.TestClient(app).simulate_get("/openapi.json")
    assert result.status_code == 200 and result.headers["content-type"].startswith("application/json")
    return dict(result.json)


def routed_templates(app: falcon.App) -> set[str]:
    """Every URI template the app routes (falcon's compiled router keeps them in a tree)."""
    found: set[str] = set()

    def walk(nodes: list[Any]) -> None:
        for node in nodes:
            if node.resource is not None:
                found.add(node.uri_template)
            walk(node.children)

    walk(app._router._roots)
    return found


@pytest.mark.parametrize("name", ["command", "query"])
def test_each_document_is_valid_openapi_3_1_and_covers_every_route(apps: dict[str, falcon.App], name: str) -> None:
    doc = document(apps[name])
    OpenAPIV31SpecValidator(doc).validate()
    assert doc["openapi"] == "3.1.0"
    assert set(doc["paths"]) == routed_templates(apps[name])
    for path, methods in doc["paths"].items():
        for method in methods:
            answered = falcon.testing.TestClient(apps[name]).simulate_request(method.upper(), path)
            assert answered.status_code != 405, (method, path)  # the document names only what is served


@pytest.mark.parametrize("name", ["command", "query"])
def test_every_route_but_the_public_ones_needs_a_key_and_says_which_scope(
    apps: dict[str, falcon.App], name: str
) -> None:
    doc = document(apps[name])
    assert set(doc["components"]["securitySchemes"]) == {"bearer", "signed"}
    public = {"/healthz", "/readyz", "/openapi.json", "/docs"}
    for path, methods in doc["paths"].items():
        for op in methods.values():
            if path in public:
                assert op["security"] == []
            else:
                assert op["security"] == [{"bearer": []}, {"signed": []}] and op["x-scope"]
                assert {"401", "403"} <= set(op["responses"])
                unauthenticated = falcon.testing.TestClient(apps[name]).simulate_get(
                    path.replace("{", "x").replace("}", "")
                )
                assert unauthenticated.status_code in (401, 405), path


def test_every_problem_code_is_documented(apps: dict[str, falcon.App]) -> None:
    doc = document(apps["command"])
    shared = [r["description"] for r in doc["components"]["responses"].values()]
    documented = " ".join(
        shared + [op["responses"]["default"]["description"] for op in doc["paths"]["/v1/transfers"].values()]
    )
    for codes in openapi.problem_codes().values():
        for code in codes:
            assert f"`{code}`" in documented
    for code in ("insufficient_funds", "id_conflict", "transfer_expired", "unauthenticated", "body_too_large"):
        assert f"`{code}`" in documented


def test_request_examples_are_ones_the_api_accepts(apps: dict[str, falcon.App]) -> None:
    doc = document(apps["command"])
    examples = [
        (path, op["requestBody"]["content"]["application/json"]["example"])
        for path, methods in doc["paths"].items()
        for op in methods.values()
        if "example" in op.get("requestBody", {}).get("content", {}).get("application/json", {})
    ]
    assert {path for path, _ in examples} >= {"/v1/transfers", "/v1/keys"}
    transfer = dict(examples)["/v1/transfers"]
    assert requests.transfer(transfer).amount == transfer["amount"]


def test_the_docs_page_shows_every_route_and_fetches_nothing(apps: dict[str, falcon.App]) -> None:
    for app in apps.values():
        page = falcon.testing.TestClient(app).simulate_get("/docs")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        for path, methods in document(app)["paths"].items():
            for method in methods:
                assert f"<span class=m>{method.upper()}</span> <code>{html.escape(path)}</code>" in page.text
        assert "<script" not in page.text and "http://" not in page.text and "https://" not in page.text


def test_a_route_whose_methods_are_not_all_described_is_refused() -> None:
    class Both:
        def on_get(self, req: falcon.Request, resp: falcon.Response) -> None: ...

        def on_post(self, req: falcon.Request, resp: falcon.Response) -> None: ...

    routes = Routes(falcon.App(), "t", "t", {})
    with pytest.raises(ValueError, match="operations for"):
        routes.add("/x", Both(), get=Operation("read", "read"))


def test_a_refused_body_names_the_field_in_the_domains_words(apps: dict[str, falcon.App]) -> None:
    """The schema does the checking; where it refuses a field, the message and code are the domain's."""
    with pytest.raises(InvalidRequest, match=r"unknown field\(s\): colour, size"):
        requests.open_account({"id": "a", "asset": "USD/2", "colour": "red", "size": 1})
    bad = {"id": "x", "transfers": [{"id": "t", "debit_account": "a", "credit_account": "b", "amount": 5}]}
    with pytest.raises(InvalidAmount, match=r"transfers\[0\]: amount must be a decimal string"):
        requests.transaction(bad)
    with pytest.raises(InvalidRequest, match=r"transfers\[1\] must be a JSON object"):
        requests.transfer_batch({"transfers": [bad["transfers"][0] | {"amount": "1"}, "t2"]})
    schemas = document(apps["command"])["components"]["schemas"]
    assert schemas["TransferBody"]["additionalProperties"] is False
    assert schemas["TransferBody"]["properties"]["amount"]["pattern"] == AMOUNT_PATTERN

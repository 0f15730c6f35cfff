"""Every route of both APIs behind keys.

Each route refuses a request without a key, with a wrong secret, with a stale or a
replayed signature (401), from a key without the route's scope or from a tenant's key
acting outside its accounts (403); the allowed requests pass, bearer and signed alike.
In-process (falcon's test client) over the real event store, key store, broker and
MongoDB-protocol server: the query side reads read models the real relay and projector
built from the same ledger.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import falcon
import falcon.testing
import pymongo
import pytest
from confluent_kafka import TopicPartition

from audit.stream import events
from auth import signing
from auth.store import KeyStore
from commands import http as command_http
from commands.application import Books
from commands.event_store import event_store_env
from commands.messages import Deposit, OpenAccount, TransferFunds
from contracts.events import KEY_ID_HEADER
from contracts.validation import decode_headers
from projectors.projector import Projector
from queries import http as query_http
from runtime import kafka
from tests.conftest import Urls, unique
from tests.integration.test_pipeline import drain_relay, make_relay, project_until

NON_ADMIN = ["read", "accounts", "transfers", "deposits", "payouts"]


@dataclass(frozen=True)
class Key:
    key_id: str
    secret: str

    @property
    def bearer(self) -> str:
        return f"Bearer {self.key_id}.{self.secret}"


@dataclass
class Call:
    method: str
    path: str
    body: dict[str, Any] | None = None
    query: str = ""
    expected: int = 200

    @property
    def raw(self) -> bytes:
        return b"" if self.body is None else json.dumps(self.body).encode()

    @property
    def target(self) -> str:
        return f"{self.path}?{self.query}" if self.query else self.path


@dataclass
class World:
    """Accounts of one tenant (``<tenant>:...``) and of others, and things to act on."""

    books: Books
    tenant: str
    keys: dict[str, Key] = field(default_factory=dict)
    query_ids: dict[str, str] = field(default_factory=dict)

    def account(self, inside: bool, asset: str = "USD/2", funded: str | None = "100.00") -> str:
        account_id = f"{self.tenant}:{uuid.uuid4().hex[:8]}" if inside else unique("other")
        self.books.open_account(OpenAccount(account_id, asset))
        if funded:
            self.books.deposit(Deposit(unique("d"), account_id, funded))
        return account_id

    def transfer(self, debit: str, credit: str, *, pending: bool = False) -> str:
        transfer_id = unique("t")
        self.books.transfer(TransferFunds(transfer_id, debit, credit, "1.00", pending=pending))
        return transfer_id


def _transfer_body(world: World, inside: bool) -> dict[str, Any]:
    # A tenant's key may credit any account; what it debits decides.
    debit, credit = world.account(inside), world.account(not inside, funded=None)
    return {"id": unique("t"), "debit_account": debit, "credit_account": credit, "amount": "1.00"}


def _held(world: World, inside: bool) -> str:
    return world.transfer(world.account(inside), world.account(not inside, funded=None), pending=True)


def _paid_to(world: World, inside: bool) -> str:
    """A transfer crediting the tenant's account (inside) or another one: a reversal debits it."""
    return world.transfer(world.account(not inside), world.account(inside, funded=None))


COMMAND_ROUTES: dict[str, tuple[str, Callable[[World, bool], Call]]] = {
    "open account": (
        "accounts",
        lambda w, inside: Call(
            "POST",
            "/v1/accounts",
            {"id": f"{w.tenant}:{uuid.uuid4().hex[:8]}" if inside else unique("other"), "asset": "USD/2"},
            expected=201,
        ),
    ),
    "deposit": (
        "deposits",
        lambda w, inside: Call(
            "POST",
            "/v1/deposits",
            {"id": unique("d"), "account": w.account(inside, funded=None), "amount": "5.00"},
            expected=201,
        ),
    ),
    "transfer": ("transfers", lambda w, inside: Call("POST", "/v1/transfers", _transfer_body(w, inside), expected=201)),
    "transfer batch": (
        "transfers",
        lambda w, inside: Call("POST", "/v1/transfer-batches", {"transfers": [_transfer_body(w, inside)]}),
    ),
    "transaction": (
        "transfers",
        lambda w, inside: Call(
            "POST", "/v1/transactions", {"id": unique("x"), "transfers": [_transfer_body(w, inside)]}, expected=201
        ),
    ),
    "post": ("transfers", lambda w, inside: Call("POST", f"/v1/transfers/{_held(w, inside)}/post")),
    "void": ("transfers", lambda w, inside: Call("POST", f"/v1/transfers/{_held(w, inside)}/void")),
    "reverse": (
        "transfers",
        lambda w, inside: Call(
            "POST", f"/v1/transfers/{_paid_to(w, inside)}/reverse", {"id": unique("r")}, expected=201
        ),
    ),
    "payout": (
        "payouts",
        lambda w, inside: Call(
            "POST",
            "/v1/payouts",
            {
                "id": unique("p"),
                "account": w.account(inside, asset="XLM/7", funded="10"),
                "amount": "1",
                "destination": "GAAZI4TCR3TY5OJHCTJC2A4QSY6CJWJH5IAJTGKIN2ER7LBNVKOCCWN7",
            },
            expected=201,
        ),
    ),
    "fee rule": (
        "admin",
        lambda w, inside: Call(
            "POST", "/v1/fee-rules", {"asset": "AUTH/2", "operation": "transfer", "payer": "sender"}
        ),
    ),
    "policy": (
        "admin",
        lambda w, inside: Call("POST", f"/v1/accounts/{w.account(inside)}/policy", {"daily_limit": "50.00"}),
    ),
    "freeze": ("admin", lambda w, inside: Call("POST", f"/v1/accounts/{w.account(inside)}/freeze")),
    "unfreeze": ("admin", lambda w, inside: Call("POST", f"/v1/accounts/{w.account(inside)}/unfreeze")),
    "close": ("admin", lambda w, inside: Call("POST", f"/v1/accounts/{w.account(inside, funded=None)}/close")),
    "create key": (
        "admin",
        lambda w, inside: Call("POST", "/v1/keys", {"name": "x", "scopes": ["read"]}, expected=201),
    ),
    "list keys": ("admin", lambda w, inside: Call("GET", "/v1/keys")),
    "revoke key": ("admin", lambda w, inside: Call("POST", f"/v1/keys/{w.keys['spare'].key_id}/revoke")),
}

QUERY_ROUTES: dict[str, tuple[str, Callable[[World, bool], Call]]] = {
    "account": ("read", lambda w, inside: Call("GET", f"/v1/accounts/{w.query_ids[f'account:{inside}']}")),
    "account at": (
        "read",
        lambda w, inside: Call(
            "GET", f"/v1/accounts/{w.query_ids[f'account:{inside}']}", query="at_position=1000000000000"
        ),
    ),
    "entries": (
        "read",
        lambda w, inside: Call("GET", f"/v1/accounts/{w.query_ids[f'account:{inside}']}/entries", query="limit=2"),
    ),
    "transfer": ("read", lambda w, inside: Call("GET", f"/v1/transfers/{w.query_ids[f'transfer:{inside}']}")),
    "payout": ("read", lambda w, inside: Call("GET", f"/v1/payouts/{w.query_ids[f'payout:{inside}']}")),
    "status": ("read", lambda w, inside: Call("GET", "/v1/status")),
}
TENANT_REFUSED_ANYWAY = {"status"}  # about every account at once


def send(client: falcon.testing.TestClient, call: Call, authorization: str | None) -> Any:
    headers = {"Content-Type": "application/json"}
    if authorization:
        headers["Authorization"] = authorization
    return client.simulate_request(call.method, call.path, query_string=call.query, body=call.raw, headers=headers)


def signed(key: Key, call: Call, *, now: float | None = None) -> str:
    return signing.signed_header(key.key_id, key.secret, call.method, call.target, call.raw, now=now)


def assert_problem(result: Any, status: int, code: str) -> None:
    assert result.status_code == status, (status, result.status_code, result.text)
    assert result.headers["content-type"] == "application/problem+json"
    assert result.json["code"] == code
    if status == 401:
        assert "Bearer" in result.headers["www-authenticate"]


def make_key(keys: KeyStore, *scopes: str, **options: Any) -> Key:
    key, secret = keys.create(unique("key"), scopes, **options)
    return Key(key.key_id, secret)


@pytest.fixture(scope="module")
def world(servers: Urls, keys: KeyStore) -> Iterator[World]:
    books = Books(event_store_env(servers.settings()), payout_assets={"XLM/7": "native"})
    tenant = f"shop{uuid.uuid4().hex[:6]}"
    w = World(books, tenant)
    w.keys = {"admin": make_key(keys, "admin"), "tenant": make_key(keys, *NON_ADMIN, accounts=[f"{tenant}:*"])}
    w.keys |= {scope: make_key(keys, scope) for scope in NON_ADMIN}
    w.keys["all but admin"] = make_key(keys, *NON_ADMIN)
    w.keys["spare"] = make_key(keys, "read")
    yield w
    books.close()


def key_without(world: World, scope: str) -> Key:
    """A key with some scopes, but not this one."""
    return world.keys["all but admin"] if scope == "admin" else world.keys["transfers" if scope == "read" else "read"]


def allowed_key(world: World, scope: str) -> Key:
    return world.keys[scope]


@pytest.fixture(scope="module")
def command_client(world: World, keys: KeyStore) -> falcon.testing.TestClient:
    return falcon.testing.TestClient(command_http.create_app(world.books, keys))


@pytest.fixture(scope="module")
def query_client(
    world: World, keys: KeyStore, servers: Urls, command_client: falcon.testing.TestClient
) -> Iterator[falcon.testing.TestClient]:
    """Read models of the world, built by the real relay and projector."""
    mongo: pymongo.MongoClient[Any] = pymongo.MongoClient(servers.mongo_url)
    mongo_db = mongo[unique("auth").replace("-", "_")]
    inside_account, outside_account = world.account(True), world.account(False)
    world.query_ids |= {
        "account:True": inside_account,
        "account:False": outside_account,
        # a transfer into the tenant's account is the tenant's to read too
        "transfer:True": world.transfer(outside_account, inside_account),
        "transfer:False": world.transfer(outside_account, world.account(False, funded=None)),
    }
    for inside in (True, False):
        payout = send(command_client, COMMAND_ROUTES["payout"][1](world, inside), world.keys["admin"].bearer)
        assert payout.status_code == 201, payout.text
        world.query_ids[f"payout:{inside}"] = payout.json["id"]
    topic = unique("auth-events")
    drain_relay(make_relay(world.books, servers, topic))
    projector = Projector(
        mongo_db, servers.consumer(), servers.topic_watch(topic, 3), store_head=world.books.head_position
    )
    projector.start()
    project_until(projector, mongo_db, world.books.head_position())
    projector.consumer.close()
    yield falcon.testing.TestClient(query_http.create_app(mongo_db, 1.0, keys))
    mongo.close()


def _check_route(
    client: falcon.testing.TestClient,
    world: World,
    scope: str,
    build: Callable[[World, bool], Call],
    *,
    tenant_refused: bool,
) -> None:
    key = allowed_key(world, scope)
    probe = build(world, True)
    assert_problem(send(client, probe, None), 401, "unauthenticated")
    assert_problem(send(client, probe, f"Bearer {key.key_id}.{'x' * 86}"), 401, "unauthenticated")
    assert_problem(send(client, probe, "Bearer lk_00000000000000000000.nope"), 401, "unauthenticated")
    assert_problem(send(client, probe, signed(key, probe, now=time.time() - 301)), 401, "unauthenticated")
    good = signed(key, probe)
    tampered = good[:-1] + ("0" if good[-1] != "0" else "1")
    assert_problem(send(client, probe, tampered), 401, "unauthenticated")
    assert_problem(send(client, probe, key_without(world, scope).bearer), 403, "forbidden")
    if scope != "admin":
        tenant = world.keys["tenant"]
        outside = build(world, False)
        assert_problem(send(client, outside, tenant.bearer), 403, "forbidden")
        assert_problem(send(client, outside, signed(tenant, outside)), 403, "forbidden")
        if not tenant_refused:
            inside = build(world, True)
            assert send(client, inside, tenant.bearer).status_code == inside.expected
    # allowed: bearer, then signed, then the same signed request again (a replay)
    bearer_call = build(world, True)
    result = send(client, bearer_call, key.bearer)
    assert result.status_code == bearer_call.expected, result.text
    signed_call = build(world, True)
    header = signed(key, signed_call)
    result = send(client, signed_call, header)
    assert result.status_code == signed_call.expected, result.text
    assert_problem(send(client, signed_call, header), 401, "unauthenticated")


@pytest.mark.parametrize("route", sorted(COMMAND_ROUTES))
def test_every_command_route_needs_the_right_key(
    route: str, command_client: falcon.testing.TestClient, world: World
) -> None:
    scope, build = COMMAND_ROUTES[route]
    _check_route(command_client, world, scope, build, tenant_refused=False)


@pytest.mark.parametrize("route", sorted(QUERY_ROUTES))
def test_every_query_route_needs_the_right_key(
    route: str, query_client: falcon.testing.TestClient, world: World
) -> None:
    scope, build = QUERY_ROUTES[route]
    _check_route(query_client, world, scope, build, tenant_refused=route in TENANT_REFUSED_ANYWAY)


def test_a_revoked_key_stops_working_within_five_seconds(
    servers: Urls, world: World, command_client: falcon.testing.TestClient
) -> None:
    other_process = KeyStore(servers.database_url)  # as `ledger keys revoke` would
    key = make_key(other_process, "admin")
    call = Call("GET", "/v1/keys")
    assert send(command_client, call, key.bearer).status_code == 200  # now in the API's cache
    try:
        other_process.revoke(key.key_id)
    finally:
        other_process.close()
    revoked_at = time.monotonic()
    while send(command_client, call, key.bearer).status_code == 200:
        assert time.monotonic() - revoked_at < 5, "the revoked key still works"
        time.sleep(0.1)
    assert_problem(send(command_client, call, key.bearer), 401, "unauthenticated")
    assert_problem(send(command_client, call, signed(key, call)), 401, "unauthenticated")


def test_a_signed_only_key_refuses_bearer_use(keys: KeyStore, command_client: falcon.testing.TestClient) -> None:
    key = make_key(keys, "admin", signed_only=True)
    call = Call("GET", "/v1/keys")
    result = send(command_client, call, key.bearer)
    assert_problem(result, 401, "unauthenticated")
    assert "signed requests only" in result.json["detail"]
    assert send(command_client, call, signed(key, call)).status_code == 200


@pytest.mark.parametrize(
    "header",
    [
        "Basic dXNlcjpwYXNz",
        "Bearer",
        "Bearer lk_0123",
        "Bearer not-a-key.secret",
        "LEDGER-HMAC-SHA256 key=lk_00000000000000000000",
        "LEDGER-HMAC-SHA256 key=lk_00000000000000000000, ts=1, nonce=short, sig=00",
        "LEDGER-HMAC-SHA256 key=lk_00000000000000000000, ts=x, nonce=aaaaaaaaaaaaaaaa, sig=" + "0" * 64,
        "LEDGER-HMAC-SHA256 key=lk_00000000000000000000, key=lk_00000000000000000000, ts=1, nonce=a, sig=b",
        "Bearer " + "x" * 2000,
        "Bearer lk_00000000000000000000.\u00e9",
    ],
)
def test_unreadable_credentials_answer_401_saying_why(command_client: falcon.testing.TestClient, header: str) -> None:
    result = send(command_client, Call("GET", "/v1/keys"), header)
    assert_problem(result, 401, "unauthenticated")
    assert result.json["detail"]
    assert header[7:] not in result.json["detail"] or len(header) < 20


def test_a_signature_covers_the_query_string_and_escapes_as_sent(
    world: World, query_client: falcon.testing.TestClient
) -> None:
    key = world.keys["read"]
    account = world.query_ids["account:True"]
    call = Call("GET", f"/v1/accounts/{account}/entries", query="limit=1&cursor=")
    result = send(query_client, call, signed(key, call))
    assert result.status_code == 400 and result.json["code"] == "invalid_request"  # authenticated, then judged
    other = Call("GET", f"/v1/accounts/{account}/entries", query="limit=2")
    assert_problem(send(query_client, other, signed(key, call)), 401, "unauthenticated")


def test_opening_an_account_with_credit_needs_admin(world: World, command_client: falcon.testing.TestClient) -> None:
    body = {"id": unique("od"), "asset": "USD/2", "overdraft_limit": "500.00"}
    result = send(command_client, Call("POST", "/v1/accounts", body), world.keys["accounts"].bearer)
    assert_problem(result, 403, "forbidden")
    assert "overdraft" in result.json["detail"]
    assert send(command_client, Call("POST", "/v1/accounts", body), world.keys["admin"].bearer).status_code == 201


def test_a_key_restricted_to_credit_its_own_accounts_too(
    world: World, keys: KeyStore, command_client: falcon.testing.TestClient
) -> None:
    key = make_key(keys, "transfers", accounts=[f"{world.tenant}:*"], credits_within_accounts=True)
    outward = Call("POST", "/v1/transfers", _transfer_body(world, True), expected=201)
    assert_problem(send(command_client, outward, key.bearer), 403, "forbidden")
    mine, also_mine = world.account(True), world.account(True, funded=None)
    within = {"id": unique("t"), "debit_account": mine, "credit_account": also_mine, "amount": "1.00"}
    assert send(command_client, Call("POST", "/v1/transfers", within), key.bearer).status_code == 201


def test_key_definitions_are_checked(keys: KeyStore, command_client: falcon.testing.TestClient, world: World) -> None:
    admin = world.keys["admin"].bearer
    for body, fragment in [
        ({"name": "x", "scopes": ["root"]}, "unknown scope"),
        ({"name": "x", "scopes": []}, "at least one scope"),
        ({"name": "x", "scopes": ["admin"], "accounts": ["a:*"]}, "cannot be limited"),
        ({"name": "x", "scopes": ["read"], "accounts": ["$issuance*"]}, "pattern"),
        ({"name": "", "scopes": ["read"]}, "name"),
        ({"name": "x", "scopes": ["read"], "secret": "mine"}, "unknown field"),
    ]:
        result = send(command_client, Call("POST", "/v1/keys", body), admin)
        assert_problem(result, 400, "invalid_request")
        assert fragment in result.json["detail"]
    created = send(command_client, Call("POST", "/v1/keys", {"name": "svc", "scopes": ["read"]}), admin).json
    listed = {k["key_id"]: k for k in send(command_client, Call("GET", "/v1/keys"), admin).json["keys"]}
    assert listed[created["key_id"]]["scopes"] == ["read"]
    assert all("secret" not in k and "secret_sha256" not in k for k in listed.values())
    stored = keys.get(created["key_id"])
    assert stored is not None and stored.secret_matches(created["secret"])
    assert created["secret"].encode() not in stored.secret_sha256  # only its hash is kept


def test_the_acting_key_is_on_its_events_on_kafka_and_in_the_export(
    world: World, keys: KeyStore, servers: Urls, command_client: falcon.testing.TestClient
) -> None:
    key = make_key(keys, "transfers")
    body = _transfer_body(world, True)
    position = send(command_client, Call("POST", "/v1/transfers", body), key.bearer).json["position"]
    exported = list(events(world.books, after_position=position - 20, to_position=position))
    write = next(e["ledgerwrite"] for e in exported if e["position"] == position)
    ours = [e for e in exported if e["ledgerwrite"] == write]
    assert len(ours) >= 3  # both accounts moved, and the transfer
    assert {e.get("ledgerkeyid") for e in ours} == {key.key_id}
    assert all(key.secret not in json.dumps(e) for e in ours)
    topic = unique("keyid-events")
    relay = make_relay(world.books, servers, topic)
    relay.position = write - 1
    drain_relay(relay)
    consumer = servers.consumer()
    consumer.assign([TopicPartition(topic, p, 0) for p in range(3)])
    seen: dict[str, str] = {}
    try:
        deadline = time.monotonic() + 20
        while len(seen) < len(ours) and time.monotonic() < deadline:
            for message in kafka.take_batch(consumer, 0.5, 500):
                headers = decode_headers(message)
                if headers.get("ce_id") in {e["id"] for e in ours}:
                    seen[headers["ce_id"]] = headers.get(KEY_ID_HEADER, "")
    finally:
        consumer.close()
    assert seen == {e["id"]: key.key_id for e in ours}


def test_services_record_their_own_name(world: World, servers: Urls) -> None:
    service = Books(event_store_env(servers.settings()), actor="service:test")
    try:
        position = service.open_account(OpenAccount(unique("svc"), "USD/2"))["position"]
        exported = list(events(service, after_position=position - 1, to_position=position))
    finally:
        service.close()
    assert exported and {e["ledgerkeyid"] for e in exported} == {"service:test"}


def test_the_access_log_names_the_key_and_never_a_secret(
    world: World, command_client: falcon.testing.TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    key = world.keys["admin"]
    with caplog.at_level("INFO", logger="access"):
        send(command_client, Call("GET", "/v1/keys"), key.bearer)
        send(command_client, Call("GET", "/v1/keys"), f"Bearer {key.key_id}.wrong-secret")
    lines = [r for r in caplog.records if r.name == "access"]
    assert [(r.method, r.path, r.status, r.key_id) for r in lines[-2:]] == [  # type: ignore[attr-defined]
        ("GET", "/v1/keys", 200, key.key_id),
        ("GET", "/v1/keys", 401, None),
    ]
    assert all(key.secret not in caplog.text and "wrong-secret" not in caplog.text for _ in lines)


def test_health_needs_no_key(
    command_client: falcon.testing.TestClient, query_client: falcon.testing.TestClient
) -> None:
    for client in (command_client, query_client):
        assert client.simulate_get("/healthz").json == {"status": "ok"}

"""The lists and totals of the query API, on the real MongoDB-protocol server, over read
models projected from events the real command side wrote: transfers by account, status,
time and amount; accounts by asset, status and metadata; statements; totals by prefix.
Each is paged with cursors, scoped to a limited key's accounts, and led by an index
(checked with the server's own explain of the very queries the API sent)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import falcon.testing
import pymongo
import pytest
from pymongo import monitoring

from auth.store import KeyStore
from commands.application import Books
from commands.messages import Deposit, OpenAccount, TransferFunds, VoidTransfer
from contracts.stored_events import StoredEventEncoder
from projectors.rebuild import replay
from projectors.views import ReadModelWriter
from queries.http import create_app
from tests.conftest import Urls, api_client, unique

EURO = f"E{uuid.uuid4().hex[:8].upper()}/2"  # a new asset per run


class Finds(monitoring.CommandListener):
    """Every find the query API sends, to ask the server how it would run each."""

    def __init__(self) -> None:
        self.commands: list[dict[str, Any]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name == "find":
            self.commands.append(dict(event.command))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


@dataclass
class Shop:
    client: falcon.testing.TestClient
    tenant: falcon.testing.TestClient
    db: Any
    finds: Finds
    prefix: str
    a: str
    b: str
    euro: str
    outsider: str
    hold: str
    positions: dict[str, int]

    def get(self, path: str, who: falcon.testing.TestClient | None = None, **params: str) -> falcon.testing.Result:
        return (who or self.client).simulate_get(path, params=params)

    def all_pages(self, path: str, items: str, **params: str) -> list[dict[str, Any]]:
        seen, cursor = [], None
        while True:
            page = self.get(path, **params, **({"cursor": cursor} if cursor else {}))
            assert page.status_code == 200, page.text
            seen += page.json[items]
            cursor = page.json["next_cursor"]
            if cursor is None:
                return seen


@pytest.fixture(scope="module")
def shop(servers: Urls, books: Books, keys: KeyStore, admin_token: str) -> Iterator[Shop]:
    after = books.head_position()
    prefix = unique("shop") + ":"
    a, b, euro, outsider = f"{prefix}a", f"{prefix}b", f"{prefix}e", unique("outsider")
    books.open_account(OpenAccount(a, "USD/2", metadata={"tier": "gold", "n": 3}))
    books.open_account(OpenAccount(b, "USD/2", metadata={"tier": "silver"}))
    books.open_account(OpenAccount(euro, EURO, metadata={"tier": "gold"}))
    # an asset of its own, so that its issuance account is opened within what is projected here
    books.deposit(Deposit(unique("d"), euro, "3.00"))
    books.open_account(OpenAccount(outsider, "USD/2"))
    books.deposit(Deposit(unique("d"), a, "100.00"))
    before_transfers = books.head_position()
    for amount in range(1, 8):
        books.transfer(TransferFunds(unique("t"), a, b, f"{amount}.00"))
    hold = unique("h")
    books.transfer(TransferFunds(hold, a, outsider, "2.50", pending=True, timeout_seconds=3600))
    voided = unique("h")
    books.transfer(TransferFunds(voided, a, outsider, "1.50", pending=True))
    books.void_transfer(VoidTransfer(voided))
    finds = Finds()
    mongo: pymongo.MongoClient[Any] = pymongo.MongoClient(servers.mongo_url, event_listeners=[finds])
    db = mongo[unique("lists").replace("-", "_")]
    writer = ReadModelWriter(db)
    writer.create_indexes()
    replay(books, StoredEventEncoder(books), writer, after, lambda position, head: None)
    app = create_app(db, 1.0, keys)
    tenant_key, secret = keys.create("tests: shop tenant", ["read"], [f"{prefix}*"])
    yield Shop(
        api_client(app, admin_token),
        api_client(app, f"{tenant_key.key_id}.{secret}"),
        db,
        finds,
        prefix,
        a,
        b,
        euro,
        outsider,
        hold,
        {"before_transfers": before_transfers},
    )
    mongo.close()


def test_an_accounts_transfers_come_newest_first_a_page_at_a_time(shop: Shop) -> None:
    listed = shop.all_pages("/v1/transfers", "transfers", account=shop.a, limit="3")
    ids = [t["id"] for t in listed]
    assert len(ids) == len(set(ids)) == 1 + 7 + 2  # the deposit, seven transfers, two holds
    positions = [t["position"] for t in listed]
    assert all(shop.a in (t["debit_account"], t["credit_account"]) for t in listed)
    assert [t["amount"] for t in listed if t["status"] == "posted" and t["debit_account"] == shop.a] == [
        f"{n}.00" for n in range(7, 0, -1)
    ]
    assert len(positions) == 10
    everything = shop.all_pages("/v1/transfers", "transfers", limit="4")
    assert {t["id"] for t in listed} <= {t["id"] for t in everything}


def test_transfers_filter_by_status_amount_asset_and_period(shop: Shop) -> None:
    pending = shop.get("/v1/transfers", account=shop.a, status="pending").json["transfers"]
    assert [t["id"] for t in pending] == [shop.hold]
    voided = shop.get("/v1/transfers", account=shop.outsider, status="voided").json["transfers"]
    assert [t["amount"] for t in voided] == ["1.50"]
    middle = shop.get("/v1/transfers", account=shop.b, min_amount="3.00", max_amount="5")
    assert sorted(t["amount"] for t in middle.json["transfers"]) == ["3.00", "4.00", "5.00"]
    assert shop.get("/v1/transfers", asset=EURO, account=shop.a).json["transfers"] == []
    whole = shop.get("/v1/transfers", account=shop.b).json["transfers"]
    cut = sorted(whole, key=lambda t: t["time"])[3]["time"]  # the fourth transfer's time
    early = shop.get("/v1/transfers", account=shop.b, to=cut).json["transfers"]
    late = shop.get("/v1/transfers", account=shop.b, **{"from": cut}).json["transfers"]
    assert len(early) == 3 and len(late) == len(whole) - 3
    refused = shop.get("/v1/transfers", min_amount="1.00")
    assert refused.status_code == 400 and "asset" in refused.json["detail"]
    assert shop.get("/v1/transfers", status="lost").status_code == 400
    assert shop.get("/v1/transfers", min_amount="-1", asset="USD/2").json["code"] == "invalid_amount"


def test_accounts_by_asset_status_and_metadata(shop: Shop) -> None:
    gold = shop.all_pages("/v1/accounts", "accounts", **{"metadata.tier": "gold"}, limit="1")
    assert [a["id"] for a in gold] == [shop.euro, shop.a]  # newest opened first
    assert [a["id"] for a in shop.get("/v1/accounts", **{"metadata.n": "3"}).json["accounts"]] == [shop.a]
    both = shop.get("/v1/accounts", **{"metadata.tier": "gold", "metadata.n": "3", "asset": "USD/2"})
    assert [a["id"] for a in both.json["accounts"]] == [shop.a]
    assert shop.get("/v1/accounts", **{"metadata.tier": "bronze"}).json["accounts"] == []
    assert shop.get("/v1/accounts", status="frozen", **{"metadata.tier": "gold"}).json["accounts"] == []
    assert shop.get("/v1/accounts", colour="red").status_code == 400
    assert shop.get("/v1/accounts", **{"metadata.": "x"}).status_code == 400


def test_a_limited_key_lists_only_its_own_accounts(shop: Shop) -> None:
    own = shop.get("/v1/accounts", shop.tenant, asset="USD/2", limit="500").json["accounts"]
    assert {a["id"] for a in own} == {shop.a, shop.b}
    assert shop.get("/v1/transfers", shop.tenant).status_code == 403  # must name an account
    assert shop.get("/v1/transfers", shop.tenant, account=shop.outsider).status_code == 403
    mine = shop.get("/v1/transfers", shop.tenant, account=shop.a).json["transfers"]
    assert len(mine) == 10
    assert shop.get("/v1/balances", shop.tenant, prefix=shop.prefix).status_code == 200
    assert shop.get("/v1/balances", shop.tenant, prefix=shop.prefix[:-1]).status_code == 403
    assert shop.get("/v1/balances", shop.tenant).status_code == 403


def test_a_statement_gives_the_period_and_its_opening_and_closing_balances(shop: Shop) -> None:
    whole = shop.get("/v1/accounts/" + shop.b + "/entries").json
    times = sorted(e["time"] for e in whole["entries"])
    assert whole["opening_balance"]["posted_credits"] == "0.00"
    assert whole["closing_balance"]["posted_credits"] == "28.00"  # 1 + 2 + ... + 7
    period = shop.get("/v1/accounts/" + shop.b + "/entries", **{"from": times[2], "to": times[5]}).json
    assert [e["amount"] for e in period["entries"]] == ["5.00", "4.00", "3.00"]
    assert period["opening_balance"]["posted_credits"] == "3.00"
    assert period["closing_balance"]["posted_credits"] == "15.00"
    assert period["from"] is not None and period["to"] is not None
    backwards = shop.get("/v1/accounts/" + shop.b + "/entries", **{"from": times[5], "to": times[2]})
    assert backwards.status_code == 400


def test_totals_over_a_prefix_now_and_at_a_position(shop: Shop) -> None:
    now = shop.get("/v1/balances", prefix=shop.prefix).json
    assert now["accounts"] == 3
    usd = now["totals"]["USD/2"]
    # a: 100 in, 28 out, 2.50 held; b: 28 in (the deposit's other side is a system account's)
    assert (usd["posted_debits"], usd["posted_credits"], usd["pending_debits"]) == ("28.00", "128.00", "2.50")
    assert now["totals"][EURO]["available"] == "3.00"
    then = shop.get(
        "/v1/balances", prefix=shop.prefix, asset="USD/2", at_position=str(shop.positions["before_transfers"])
    )
    assert then.json["totals"]["USD/2"]["posted_credits"] == "100.00" and then.json["accounts"] == 2
    assert "$" not in "".join(shop.get("/v1/balances", prefix="").json["totals"])  # client accounts only
    code = EURO.split("/")[0]
    system = shop.get("/v1/balances", prefix=f"$issuance.{code}").json
    assert system["accounts"] == 1 and system["totals"][EURO]["posted_debits"] == "3.00"
    for odd in ("a\ud7ff", "a b", "x" * 200, "a$"):  # outside the id alphabet: refused, never sent to the store
        assert shop.get("/v1/balances", prefix=odd).status_code == 400


def test_each_list_is_led_by_an_index(shop: Shop) -> None:
    """The server's own plan for each find the API sent: a search using an index."""
    shop.finds.commands.clear()
    shop.get("/v1/transfers", account=shop.a, limit="2")
    shop.get("/v1/transfers", status="posted")
    shop.get("/v1/accounts", asset="USD/2")
    shop.get("/v1/accounts/" + shop.b + "/entries", **{"from": "2026-01-01T00:00:00Z"})
    shop.get("/v1/balances", prefix=shop.prefix, asset="USD/2")
    shop.get("/v1/balances")
    shop.get("/v1/accounts", **{"metadata.tier": "gold"})
    shop.get("/v1/accounts", shop.tenant, status="open")
    shop.get("/v1/transfers")
    lists = [c for c in shop.finds.commands if c["find"] in ("transfers", "accounts", "entries") and "filter" in c]
    assert len(lists) >= 6
    for command in lists:
        if set(command["filter"]) == {"_id"}:
            continue  # a look-up by id
        find = {k: v for k, v in command.items() if k in ("find", "filter", "sort", "limit", "projection")}
        plan = shop.db.command("explain", find, verbosity="queryPlanner")["queryPlanner"]["winningPlan"]
        details = " ".join(step.get("detail", "") for step in plan)
        assert "USING INDEX" in details, (find, details)

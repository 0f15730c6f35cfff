"""An operator's corrections, over the command API with an admin key: a stuck payout
cancelled once the chain shows it unpaid, a chain deposit moved out of suspense, a fee
account swept. Each is recorded with the key that asked.

The chain is the bundled Horizon simulator (no Stellar network is reachable here); the
event store, Kafka and the worker's tables are real.
"""

from __future__ import annotations

import json
import time
from typing import Any

import falcon.testing
import pytest
from stellar_sdk import Keypair

from auth.store import KeyStore
from chain.deposits import DepositFollower
from chain.stellar import horizon_client
from commands.application import Books
from commands.http import create_app
from commands.messages import Deposit, OpenAccount, SetFeeRule, TransferFunds
from ledger.fees import FeeTerms
from ledger.ids import account_uuid, chain_deposit_id, fee_account_id, payout_uuid, suspense_account_id
from tests.conftest import api_client, unique
from tests.integration.test_chain import Chain, chain, pay_in, payout

assert chain  # the fixture, imported for this module's tests


@pytest.fixture
def admin(chain: Chain, keys: KeyStore, admin_token: str) -> falcon.testing.TestClient:
    return api_client(create_app(chain.books, keys=keys), admin_token)


def key_of(token: str) -> str:
    return token.split(".")[0]


def recorded_key(books: Books, stream: Any, topic_end: str) -> str | None:
    """The acting key stored with a stream's event of the given type."""
    with books.recorder.datastore.transaction(commit=False) as curs:  # type: ignore[attr-defined]
        curs.execute("SELECT topic, state FROM ledger_events WHERE originator_id = %s", (stream,))
        rows = [r for r in curs.fetchall() if r["topic"].endswith(topic_end)]
    assert len(rows) == 1, rows
    return json.loads(bytes(rows[0]["state"]).decode()).get("key_id")


def test_a_stuck_payout_is_cancelled_only_once_the_chain_shows_it_unpaid(
    chain: Chain, admin: falcon.testing.TestClient, admin_token: str, keys: KeyStore
) -> None:
    account, destination = chain.funded_account(), chain.destination()
    chain.sim.network.inject("reset_before", count=1000)  # nothing ever reaches the chain
    payout_id = payout(chain, account, "3", destination)
    worker = chain.worker()
    deadline = time.monotonic() + 30
    while (record := chain.books.payout_record(payout_id)) is None or not record.stuck:
        assert time.monotonic() < deadline, chain.row(payout_id)
        chain.relay.publish_batch()
        chain.intake.poll(0.05)
        worker.work_once()

    key, secret = keys.create("tests: payouts only", ["payouts"])
    refused = api_client(create_app(chain.books, keys=keys), f"{key.key_id}.{secret}").simulate_post(
        f"/v1/payouts/{payout_id}/cancel"
    )
    assert (refused.status_code, refused.json["code"]) == (403, "forbidden")
    asked = admin.simulate_post(f"/v1/payouts/{payout_id}/cancel", json={"reason": "ticket 881"})
    assert asked.status_code == 202, asked.json
    assert (asked.json["state"], asked.json["cancel_requested"]) == ("submitted", "ticket 881")
    again = admin.simulate_post(f"/v1/payouts/{payout_id}/cancel", json={"reason": "ticket 881"})
    assert again.status_code == 202 and again.json["cancel_requested"] == "ticket 881"
    assert recorded_key(chain.books, payout_uuid(payout_id), "Payout.CancelRequested") == key_of(admin_token)

    submissions = chain.sim.network.submissions
    row = chain.pump(payout_id, worker)
    assert (row["state"], row["reason"]) == ("failed", "cancelled: ticket 881")
    assert chain.sim.network.submissions == submissions  # nothing was sent again
    assert chain.payments_to(destination) == []
    after = chain.books.account(account)
    assert (after.available, after.pending_debits, after.posted_debits) == (1_000_000_000, 0, 0)
    late = admin.simulate_post(f"/v1/payouts/{payout_id}/cancel")
    assert (late.status_code, late.json["code"]) == (409, "payout_resolved")
    assert admin.simulate_post(f"/v1/payouts/{unique('p')}/cancel").status_code == 404


def test_a_cancelled_payout_the_chain_paid_is_confirmed_not_failed(
    chain: Chain, admin: falcon.testing.TestClient
) -> None:
    account, destination = chain.funded_account(), chain.destination()
    chain.sim.network.inject("applied_then_504", count=1)  # paid, but the worker never heard
    chain.sim.network.inject("reset_before", count=1000)
    chain.sim.network.set_modes({"lookup_404": True})  # and Horizon's look-up lags
    payout_id = payout(chain, account, "2", destination)
    worker = chain.worker()
    chain.take_in(payout_id)
    while not chain.store.envelopes(payout_id):
        worker.work_once()
    assert admin.simulate_post(f"/v1/payouts/{payout_id}/cancel").status_code == 202
    row = chain.pump(payout_id, worker)  # the channel's history shows the transaction
    assert row["state"] == "confirmed" and len(chain.payments_to(destination)) == 1
    assert chain.books.account(account).posted_debits == 20_000_000


def test_a_deposit_in_suspense_is_reassigned_once(
    chain: Chain, admin: falcon.testing.TestClient, admin_token: str
) -> None:
    sender = Keypair.random()
    chain.sim.network.create_account(sender.public_key, "100")
    pay_in(chain, sender, "7.5", "nobody-" + unique("x"))
    pay_in(chain, sender, "1", account := chain.funded_account(amount="1"))
    follower = DepositFollower(chain.settings, chain.store, chain.books, horizon_client(chain.settings.horizon_url))
    while follower.poll():
        pass
    lost, credited = [p["id"] for p in chain.sim.network.payments if p["from"] == sender.public_key]
    suspense = suspense_account_id("XLM/7")
    held = chain.books.account(suspense).available
    owner = chain.funded_account(amount="1")

    body = {"deposit": chain_deposit_id(lost), "account": owner}
    moved = admin.simulate_post("/v1/suspense-reassignments", json=body)
    assert moved.status_code == 201, moved.json
    assert (moved.json["amount"], moved.json["debit_account"], moved.json["metadata"]) == (
        "7.5000000",
        suspense,
        {"deposit": chain_deposit_id(lost)},
    )
    assert chain.books.account(owner).available == 85_000_000
    assert chain.books.account(suspense).available == held - 75_000_000
    replay = admin.simulate_post("/v1/suspense-reassignments", json=body)
    assert (replay.status_code, replay.json, replay.headers.get("idempotent-replayed")) == (201, moved.json, "true")
    elsewhere = admin.simulate_post("/v1/suspense-reassignments", json={**body, "account": account})
    assert (elsewhere.status_code, elsewhere.json["code"]) == (409, "id_conflict")
    not_lost = admin.simulate_post("/v1/suspense-reassignments", json={**body, "deposit": chain_deposit_id(credited)})
    assert (not_lost.status_code, not_lost.json["code"]) == (409, "not_in_suspense")
    unknown = admin.simulate_post("/v1/suspense-reassignments", json={**body, "deposit": "$stellar.1"})
    assert (unknown.status_code, unknown.json["code"]) == (404, "transfer_not_found")
    assert admin.simulate_post("/v1/suspense-reassignments", json={**body, "deposit": "t-1"}).status_code == 400
    assert chain.books.account(owner).available == 85_000_000
    stream = account_uuid(suspense)
    with chain.books.recorder.datastore.transaction(commit=False) as curs:  # type: ignore[attr-defined]
        curs.execute(
            "SELECT state FROM ledger_events WHERE originator_id = %s ORDER BY originator_version DESC LIMIT 1",
            (stream,),
        )
        last = json.loads(bytes(curs.fetchone()["state"]).decode())
    assert last["key_id"] == key_of(admin_token)


def test_a_fee_account_is_swept_to_a_named_account(
    chain: Chain, admin: falcon.testing.TestClient, keys: KeyStore, event_count: Any
) -> None:
    books = chain.books
    asset = f"S{unique('x')[-8:].upper()}/2"  # its own asset: its fee account is this test's alone
    books.set_fee_rule(
        SetFeeRule(asset, "transfer", FeeTerms(basis_points=0, fixed=25, minimum=0, maximum=None, payer="sender"))
    )
    payer, payee, treasury, other = (unique(n) for n in ("payer", "payee", "treasury", "other"))
    for name in (payer, payee, treasury):
        books.open_account(OpenAccount(name, asset))
    books.open_account(OpenAccount(other, "XLM/7"))
    books.deposit(Deposit(unique("d"), payer, "100.00"))
    for _ in range(4):
        books.transfer(TransferFunds(unique("t"), payer, payee, "1.00"))
    books.transfer(TransferFunds(unique("t"), payer, payee, "1.00", pending=True))  # its fee is only held
    fees = fee_account_id(asset)
    assert books.account(fees).available == 100

    before = event_count()
    for bad, status, code in [
        ({"id": unique("s"), "asset": asset, "account": treasury, "amount": "1.01"}, 422, "insufficient_funds"),
        ({"id": unique("s"), "asset": asset, "account": other}, 422, "asset_mismatch"),
        ({"id": unique("s"), "asset": asset, "account": fees}, 400, "invalid_request"),
        ({"id": unique("s"), "asset": "NOPE/2", "account": treasury}, 422, "asset_mismatch"),
    ]:
        reply = admin.simulate_post("/v1/fee-sweeps", json=bad)
        assert (reply.status_code, reply.json["code"]) == (status, code), (bad, reply.json)
    assert event_count() == before

    part = admin.simulate_post(
        "/v1/fee-sweeps", json={"id": (first := unique("s")), "asset": asset, "account": treasury, "amount": "0.40"}
    )
    assert part.status_code == 201 and (part.json["debit_account"], part.json["amount"]) == (fees, "0.40"), part.json
    rest = admin.simulate_post("/v1/fee-sweeps", json={"id": unique("s"), "asset": asset, "account": treasury})
    assert rest.status_code == 201 and rest.json["amount"] == "0.60", rest.json
    assert (books.account(fees).available, books.account(treasury).available) == (0, 100)
    again = admin.simulate_post(
        "/v1/fee-sweeps", json={"id": first, "asset": asset, "account": treasury, "amount": "0.40"}
    )
    assert (again.status_code, again.headers.get("idempotent-replayed")) == (201, "true")
    empty = admin.simulate_post("/v1/fee-sweeps", json={"id": unique("s"), "asset": asset, "account": treasury})
    assert (empty.status_code, empty.json["code"]) == (422, "insufficient_funds")
    key, secret = keys.create("tests: transfers only", ["transfers"])
    client = api_client(create_app(books, keys=keys), f"{key.key_id}.{secret}")
    assert (
        client.simulate_post(
            "/v1/fee-sweeps", json={"id": unique("s"), "asset": asset, "account": treasury}
        ).status_code
        == 403
    )

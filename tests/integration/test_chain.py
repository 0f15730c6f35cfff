"""Payouts to Stellar: held in the ledger, paid on chain at most once, ended one way.

The chain is the bundled Horizon simulator (no Stellar network is reachable here); the
event store, Kafka and the worker's tables are real. The worker's parts are driven step
by step in this process, so each test decides exactly when a fault or a "crash"
(dropping the worker and starting a new one on the same tables) happens.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from prometheus_client import REGISTRY
from stellar_sdk import Account as StellarAccount
from stellar_sdk import Asset, Keypair, TransactionBuilder

from auth.store import KeyStore
from chain.channel import ChannelWorker, channel_horizon
from chain.config import ChainSettings
from chain.deposits import DepositFollower
from chain.intake import Intake
from chain.kill_switch import KillSwitch
from chain.stellar import Keys, horizon_client
from chain.store import ChainStore
from commands.application import Books
from commands.event_store import event_store_env
from commands.http import create_app
from commands.messages import AccountAction, Deposit, OpenAccount, RequestPayout, SetFeeRule, VoidTransfer
from contracts.events import PAYOUT_REQUESTED
from devstack.horizon_sim import Simulator
from ledger.errors import AccountNotOpen, AssetNotOnChain, PayoutHold
from ledger.fees import FeeTerms
from ledger.ids import account_uuid, clearing_account_id, fee_account_id, fee_transfer_id, suspense_account_id
from projectors.relay import Relay, RelayState
from tests.conftest import Urls, api_client, free_port, unique
from tests.integration.forged import Forged, event_headers, payout_requested, produce

PASSPHRASE = "Ledger test network"


@dataclass
class Chain:
    sim: Simulator
    keys: Keys
    issuer: Keypair
    books: Books
    store: ChainStore
    relay: Relay
    intake: Intake
    settings: ChainSettings

    def worker(self, channel: int = 0) -> ChannelWorker:
        return ChannelWorker(
            self.settings,
            self.store,
            self.books,
            channel_horizon(self.settings.horizon_url),
            self.keys.channels[channel],
            KillSwitch(None),
        )

    def pump(self, payout_id: str, worker: ChannelWorker | None = None, timeout: float = 30) -> dict[str, Any]:
        """Relay, take in and work until the payout has ended; returns the worker's row."""
        worker = worker or self.worker()
        deadline = time.monotonic() + timeout
        while True:
            while self.relay.publish_batch():
                pass
            self.intake.poll(0.1)
            worker.work_once()
            row = self.row(payout_id)
            if row and row["state"] in ("confirmed", "failed"):
                return row
            assert time.monotonic() < deadline, f"payout still {row}"

    def settle(self, timeout: float = 60) -> None:
        """Take in and see to the end whatever payouts other tests left pending in the
        shared store, so that from here on this test's worker has only this test's to do
        (how many there are, and when the intake sees them, depends on the tests before)."""
        while self.relay.publish_batch():
            pass
        deadline = time.monotonic() + timeout
        # Read to the topic's end, not just until one poll comes back empty: a poll that
        # waited on a fetch ended settling early once the store grew (CI, 504 tests).
        while self.intake.poll(0.3) or not self.intake_at_end():
            assert time.monotonic() < deadline, "the intake kept finding messages"
        worker = self.worker()
        while worker.work_once():
            assert time.monotonic() < deadline, "other tests' payouts kept the worker busy"

    def intake_at_end(self) -> bool:
        """Whether the intake has read every partition of its topic to the end."""
        consumer = self.intake.consumer
        for position in consumer.position(consumer.assignment()):
            _, high = consumer.get_watermark_offsets(position, timeout=10)
            if high > 0 and position.offset < high:  # a negative offset: nothing read there yet
                return False
        return True

    def take_in(self, payout_id: str) -> None:
        """Relay (all of it: the store may hold more than a batch) and take in until the
        worker's tables hold the payout."""
        while self.relay.publish_batch():
            pass
        deadline = time.monotonic() + 10
        while self.row(payout_id) is None:
            assert time.monotonic() < deadline
            self.intake.poll(0.1)

    def row(self, payout_id: str) -> dict[str, Any] | None:
        return self.store.conn().execute("SELECT * FROM chain_payouts WHERE payout_id = %s", (payout_id,)).fetchone()

    def payments_to(self, account_id: str) -> list[dict[str, Any]]:
        return [p for p in self.sim.network.payments if p["to"] == account_id]

    def balance(self, account_id: str) -> int:
        """An account's native balance on the simulated chain, in stroops."""
        return self.sim.network.accounts[account_id].balances["native"]

    def dead_letters(self) -> list[dict[str, Any]]:
        """What the intake set aside from this test's topic, in offset order per partition."""
        return (
            self.store.conn()
            .execute('SELECT * FROM dead_letters WHERE topic = %s ORDER BY partition, "offset"', (self.intake.topic,))
            .fetchall()
        )

    def destination(self, *, trust: bool = True) -> str:
        account = Keypair.random().public_key
        self.sim.network.create_account(account, "1")
        if trust:
            self.sim.network.trust(account, f"USDC:{self.issuer.public_key}")
        return account

    def funded_account(self, asset: str = "XLM/7", amount: str = "100") -> str:
        account = unique("payer")
        self.books.open_account(OpenAccount(account, asset))
        self.books.deposit(Deposit(unique("d"), account, amount))
        return account


@pytest.fixture
def chain(servers: Urls) -> Iterator[Chain]:
    with chain_on(servers) as made:
        yield made


@contextmanager
def chain_on(servers: Urls) -> Iterator[Chain]:
    """A simulator, keys, and the worker's parts on the event store ``servers`` names."""
    sim = Simulator("127.0.0.1", free_port(), PASSPHRASE, close_seconds=0.2).start()
    keys = Keys.generate(channels=2)
    issuer = Keypair.random()
    usdc = f"USDC:{issuer.public_key}"
    for key in (keys.distribution, *keys.channels, issuer):
        sim.network.create_account(key.public_key, "1000")
    sim.network.trust(keys.distribution.public_key, usdc)
    sim.network.fund(keys.distribution.public_key, usdc, "1000")
    books = Books(event_store_env(servers.settings()), payout_assets={"XLM/7": "native", "USDC/7": usdc})
    settings = ChainSettings(
        horizon_url=sim.url,
        passphrase=PASSPHRASE,
        assets={"XLM/7": Asset.native(), "USDC/7": Asset("USDC", issuer.public_key)},
        keys=keys,
        tx_timeout_seconds=2,
        ledger_window=5,
        stuck_after_attempts=4,
        backoff_seconds=0.02,
        max_backoff_seconds=0.1,
    )
    topic = unique("events")
    relay = Relay(
        books,
        RelayState(servers.database_url, topic),
        servers.database_url,
        servers.producer(),
        servers.topic_watch(topic, 2),
    )
    relay.start()
    store = ChainStore(servers.database_url)
    intake = Intake(store, books, servers.consumer(), servers.topic_watch(topic, 2), KillSwitch(None))
    intake.start()
    yield Chain(sim, keys, issuer, books, store, relay, intake, settings)
    intake.close()
    store.close()
    relay.state.close()
    books.close()
    sim.stop()


def payout(chain: Chain, account: str, amount: str, destination: str, memo: str | None = None) -> str:
    payout_id = unique("p")
    result = chain.books.request_payout(RequestPayout(payout_id, account, amount, destination, memo))
    assert result["state"] == "pending"
    return payout_id


def test_a_payout_is_held_then_paid_and_posted(chain: Chain) -> None:
    account, destination = chain.funded_account(), chain.destination()
    payout_id = payout(chain, account, "12.5", destination, memo="invoice 7")
    held = chain.books.account(account)
    assert (held.available, held.pending_debits) == (875_000_000, 125_000_000)

    row = chain.pump(payout_id)
    assert row["state"] == "confirmed"
    after = chain.books.account(account)
    assert (after.available, after.pending_debits, after.posted_debits) == (875_000_000, 0, 125_000_000)
    [paid] = chain.payments_to(destination)
    assert (paid["amount"], paid["asset_type"], paid["transaction_hash"]) == ("12.5000000", "native", row["tx_hash"])
    assert chain.sim.network.transactions[row["tx_hash"]]["memo"] == "invoice 7"
    record = chain.books.payout_record(payout_id)
    assert record is not None and (record.state, record.tx_hash, record.ledger) == (
        "confirmed",
        row["tx_hash"],
        row["ledger"],
    )
    # The pending transfer is the chain's to resolve, not a client's.
    with pytest.raises(PayoutHold):
        chain.books.void_transfer(VoidTransfer(record.hold_id))


def test_an_account_frozen_after_its_payout_was_submitted_still_settles_it(chain: Chain) -> None:
    """Freezing stops new payouts, not the settlement of one the chain may already have
    paid: confirm_payout used to fail for ever on a frozen account, and the channel stayed
    taken."""
    account, destination = chain.funded_account(), chain.destination()
    payout_id = payout(chain, account, "3", destination)
    chain.books.account_action(AccountAction(account, "freeze"))
    with pytest.raises(AccountNotOpen):  # no new payout from a frozen account
        chain.books.request_payout(RequestPayout(unique("p"), account, "1", destination))
    row = chain.pump(payout_id)
    assert row["state"] == "confirmed"
    settled = chain.books.account(account)
    assert (settled.status, settled.pending_debits, settled.posted_debits) == ("frozen", 0, 30_000_000)
    assert chain.books.payout_record(payout_id).state == "confirmed"  # type: ignore[union-attr]
    assert [p["amount"] for p in chain.payments_to(destination)] == ["3.0000000"]


def test_no_trustline_fails_the_payout_and_the_money_comes_back(chain: Chain) -> None:
    account, destination = chain.funded_account("USDC/7"), chain.destination(trust=False)
    payout_id = payout(chain, account, "40", destination)
    row = chain.pump(payout_id)
    assert (row["state"], row["reason"]) == ("failed", "op_no_trust")
    after = chain.books.account(account)
    assert (after.available, after.pending_debits, after.posted_debits) == (1_000_000_000, 0, 0)
    assert chain.payments_to(destination) == []
    record = chain.books.payout_record(payout_id)
    assert record is not None and (record.state, record.reason) == ("failed", "op_no_trust")


@pytest.mark.parametrize("fault", ["applied_then_504", "reset_after", "reset_before", "bad_seq"])
def test_an_unclear_answer_is_looked_up_and_paid_once(chain: Chain, fault: str) -> None:
    account, destination = chain.funded_account(), chain.destination()
    chain.sim.network.inject(fault, count=2)
    payout_id = payout(chain, account, "3", destination)
    row = chain.pump(payout_id)
    assert row["state"] == "confirmed"
    assert len(chain.payments_to(destination)) == 1
    assert chain.books.account(account).posted_debits == 30_000_000


def test_an_envelope_that_never_arrived_is_replaced_only_once_dead_with_the_same_sequence(chain: Chain) -> None:
    account, destination = chain.funded_account(), chain.destination()
    chain.sim.network.inject("reset_before", count=1000)
    payout_id = payout(chain, account, "1", destination)
    worker = chain.worker()
    deadline = time.monotonic() + 30
    while len(chain.store.envelopes(payout_id)) < 2:  # bounds of 2 s must pass first
        assert time.monotonic() < deadline
        chain.relay.publish_batch()
        chain.intake.poll(0.05)
        worker.work_once()
    chain.sim.network.faults.clear()
    row = chain.pump(payout_id, worker)
    versions = chain.store.envelopes(payout_id)
    assert row["state"] == "confirmed" and len(versions) >= 2
    assert len({v["sequence"] for v in versions}) == 1  # two versions can never both apply
    assert all(v["max_time"] < versions[-1]["max_time"] for v in versions[:-1])
    assert len(chain.payments_to(destination)) == 1
    assert row["attempts"] >= 4 and row["stuck"]  # it was reported on the way
    record = chain.books.payout_record(payout_id)
    assert record is not None and record.state == "confirmed" and record.stuck is None


def test_an_applied_transaction_whose_answer_was_lost_is_found_by_its_hash(chain: Chain) -> None:
    """Applied, then no answer until its bounds have passed: only the hash lookup can tell."""
    account, destination = chain.funded_account(), chain.destination()
    chain.sim.network.inject("applied_then_504", count=1)
    chain.sim.network.inject("reset_before", count=1000)
    payout_id = payout(chain, account, "1", destination)
    worker = chain.worker()
    deadline = time.monotonic() + 30
    while (row := chain.row(payout_id)) is None or row["state"] not in ("confirmed", "failed"):
        assert time.monotonic() < deadline, row
        chain.relay.publish_batch()
        chain.intake.poll(0.05)
        worker.work_once()
    assert row["state"] == "confirmed"
    assert len(chain.store.envelopes(payout_id)) == 1
    assert len(chain.payments_to(destination)) == 1


def work_until(chain: Chain, worker: ChannelWorker, done: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, [
            chain.row(p["payout_id"])
            for p in chain.store.conn().execute(
                "SELECT payout_id FROM chain_payouts WHERE channel = %s AND state NOT IN ('confirmed', 'failed')",
                (worker.channel.public_key,),
            )
        ]
        chain.relay.publish_batch()
        chain.intake.poll(0.05)
        worker.work_once()


def test_a_payout_whose_lookup_answers_404_though_it_applied_is_found_in_the_channel_history(chain: Chain) -> None:
    """A lagging Horizon node: the look-up by hash says 404 for a transaction that applied.
    The worker used to take that for absence and rebuild the payout on the channel's next
    sequence number, paying it twice."""
    account, destination = chain.funded_account(), chain.destination()
    payout_id = payout(chain, account, "1", destination)
    chain.take_in(payout_id)
    first = chain.worker()
    bound = chain.store.bind_next(first.channel.public_key)
    assert bound is not None
    first._new_envelope(bound, sequence=None)
    # The envelope applies, the worker dies before it hears, and Horizon's node lags.
    chain.sim.network.submit(chain.store.envelopes(payout_id)[0]["envelope_xdr"])
    chain.sim.network.set_modes({"lookup_404": True})
    row = chain.pump(payout_id, chain.worker())
    assert len(chain.payments_to(destination)) == 1, "paid twice"
    [envelope] = chain.store.envelopes(payout_id)
    assert row["state"] == "confirmed" and chain.payments_to(destination)[0]["transaction_hash"] == envelope["tx_hash"]
    assert chain.books.account(account).posted_debits == 10_000_000


def test_a_payout_the_chain_cannot_account_for_is_stuck_not_rebuilt(chain: Chain) -> None:
    """The look-up says 404 and the channel's history does not reach the sequence number
    it used (pruned): nothing proves the payout unpaid, so it is reported stuck and keeps
    its one envelope; once the history shows the transaction, it is confirmed."""
    account, destination = chain.funded_account(), chain.destination()
    chain.sim.network.set_modes({"lookup_404": True, "history_pruned": True})
    chain.sim.network.inject("applied_then_504", count=1)
    chain.sim.network.inject("reset_before", count=1000)
    payout_id = payout(chain, account, "1", destination)
    worker = chain.worker()

    def stuck() -> bool:
        record = chain.books.payout_record(payout_id)
        return record is not None and "its history does not show by what" in (record.stuck or "")

    work_until(chain, worker, stuck)
    record = chain.books.payout_record(payout_id)
    assert record is not None and record.state == "submitted"
    for _ in range(5):  # looked at again, never rebuilt
        worker.work_once()
        time.sleep(0.1)
    assert len(chain.store.envelopes(payout_id)) == 1 and len(chain.payments_to(destination)) == 1
    assert chain.books.account(account).pending_debits == 10_000_000
    chain.sim.network.set_modes({"history_pruned": False})
    work_until(chain, worker, lambda: (row := chain.row(payout_id)) is not None and row["state"] == "confirmed")
    assert len(chain.store.envelopes(payout_id)) == 1 and len(chain.payments_to(destination)) == 1
    assert chain.books.account(account).posted_debits == 10_000_000


def test_a_payout_too_large_for_the_chain_taken_in_before_requests_were_checked_fails_and_lets_go(
    chain: Chain, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Such a payout used to raise in the worker every second for ever, its pending transfer never
    released. Requests are refused now; one stored before that is failed, nothing signed."""
    account = unique("payer")
    chain.books.open_account(OpenAccount(account, "XLM/7"))
    chain.books.deposit(Deposit(unique("d"), account, "2000000000000"))  # 2^64 stroops and more
    monkeypatch.setattr("commands.handlers.payouts.MAX_CHAIN_AMOUNT", 2**70)
    payout_id = payout(chain, account, "1844674407370.9551616", chain.destination())  # 2^64 stroops
    monkeypatch.undo()
    row = chain.pump(payout_id)
    assert (row["state"], row["reason"]) == ("failed", "amount_exceeds_chain_limit")
    assert chain.store.envelopes(payout_id) == []
    after = chain.books.account(account)
    assert (after.pending_debits, after.posted_debits, after.available) == (0, 0, 20_000_000_000_000_000_000)
    record = chain.books.payout_record(payout_id)
    assert record is not None and (record.state, record.reason) == ("failed", "amount_exceeds_chain_limit")


def test_a_payout_in_an_asset_this_worker_does_not_map_fails_and_lets_go(
    chain: Chain, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The command API and the worker configured with different assets: the worker used to
    refuse such a payout without telling the ledger, its pending transfer pending for ever."""
    account = chain.funded_account("USDC/7", "10")
    payout_id = payout(chain, account, "4", chain.destination())
    monkeypatch.delitem(chain.settings.assets, "USDC/7")
    row = chain.pump(payout_id)
    assert row["state"] == "failed" and row["reason"].startswith("asset_not_on_chain")
    assert chain.store.envelopes(payout_id) == []
    after = chain.books.account(account)
    assert (after.pending_debits, after.available) == (0, 100_000_000)
    record = chain.books.payout_record(payout_id)
    assert record is not None and record.state == "failed"


@pytest.mark.parametrize("payer", ["sender", "recipient"])
def test_a_payout_fee_is_held_with_it_charged_on_confirmation_and_given_back_on_failure(
    chain: Chain, payer: str
) -> None:
    """Fee rules for payouts used to be accepted and never charged."""
    asset = f"F{unique('x')[-8:].upper()}/7"  # its own asset: the rule applies to this test only
    chain.books.payout_assets[asset] = "native"
    chain.settings.assets[asset] = Asset.native()
    try:
        terms = FeeTerms(basis_points=100, fixed=5_000_000, minimum=0, maximum=None, payer=payer)
        chain.books.set_fee_rule(SetFeeRule(asset, "payout", terms))
        account = chain.funded_account(asset, "100")
        fee, on_chain = 6_000_000, (100_000_000 if payer == "sender" else 94_000_000)  # 0.5 + 1% of 10
        payout_id = unique("p")
        answer = chain.books.request_payout(RequestPayout(payout_id, account, "10", chain.destination()))
        assert (answer["amount"], answer["fee"]) == (f"{on_chain / 10**7:.7f}", "0.6000000")
        assert chain.books.account(account).pending_debits == on_chain + fee
        row = chain.pump(payout_id)
        assert row["state"] == "confirmed" and int(row["stroops"]) == on_chain
        [paid] = [p for p in chain.sim.network.payments if p["transaction_hash"] == row["tx_hash"]]
        assert paid["amount"] == f"{on_chain / 10**7:.7f}"
        after = chain.books.account(account)
        assert (after.pending_debits, after.posted_debits) == (0, on_chain + fee)
        record = chain.books.payout_record(payout_id)
        assert record is not None
        fee_leg = chain.books.transfer_record(fee_transfer_id(record.hold_id))
        assert fee_leg is not None
        assert (fee_leg.status, fee_leg.amount, fee_leg.credit_account) == ("posted", fee, fee_account_id(asset))

        failing = unique("p")  # to an account that does not exist on chain
        chain.books.request_payout(RequestPayout(failing, account, "10", Keypair.random().public_key))
        assert chain.books.account(account).available == 1_000_000_000 - on_chain - fee - (on_chain + fee)
        row = chain.pump(failing)
        assert (row["state"], row["reason"]) == ("failed", "op_no_destination")
        assert chain.books.account(account).available == 1_000_000_000 - on_chain - fee
        record = chain.books.payout_record(failing)
        assert record is not None
        fee_leg = chain.books.transfer_record(fee_transfer_id(record.hold_id))
        assert fee_leg is not None and fee_leg.status == "voided"
    finally:
        del chain.books.payout_assets[asset], chain.settings.assets[asset]


def test_a_worker_restarted_after_storing_or_submitting_pays_once(chain: Chain) -> None:
    account, destination = chain.funded_account(), chain.destination()
    payout_id = payout(chain, account, "2", destination)
    chain.take_in(payout_id)
    first = chain.worker()
    bound = chain.store.bind_next(first.channel.public_key)
    assert bound is not None and bound["payout_id"] == payout_id
    stored = first._new_envelope(bound, sequence=None)
    # The envelope reaches the chain, but the worker dies before it records the answer.
    chain.sim.network.submit(chain.store.envelopes(payout_id)[0]["envelope_xdr"])
    row = chain.pump(payout_id, chain.worker())  # a new worker on the same channel and tables
    assert row["state"] == "confirmed" and row["tx_hash"] == stored["tx_hash"]
    assert len(chain.payments_to(destination)) == 1
    assert chain.books.account(account).posted_debits == 20_000_000


def test_a_sequence_number_used_elsewhere_is_replaced_once_our_envelopes_are_dead(chain: Chain) -> None:
    account, destination = chain.funded_account(), chain.destination()
    payout_id = payout(chain, account, "1", destination)
    worker = chain.worker()
    chain.take_in(payout_id)
    bound = chain.store.bind_next(worker.channel.public_key)
    assert bound is not None and bound["payout_id"] == payout_id
    first = worker._new_envelope(bound, sequence=None)
    # Someone else spends the channel's next sequence number first.
    send_payment(chain, worker.channel, chain.destination(), "0.1")
    row = chain.pump(payout_id, worker)
    versions = chain.store.envelopes(payout_id)
    assert row["state"] == "confirmed" and row["tx_hash"] != first["tx_hash"]
    assert versions[-1]["sequence"] > versions[0]["sequence"]
    assert len(chain.payments_to(destination)) == 1


def test_a_payout_that_cannot_move_is_reported_stuck_and_a_channel_has_one_driver(chain: Chain, servers: Urls) -> None:
    account, destination = chain.funded_account(), chain.destination()
    payout_id = payout(chain, account, "1", destination)
    chain.take_in(payout_id)
    # A channel that does not exist on chain: every step fails before any envelope.
    lost = ChannelWorker(
        chain.settings,
        chain.store,
        chain.books,
        channel_horizon(chain.settings.horizon_url),
        Keypair.random(),
        KillSwitch(None),
    )
    horizon_errors = REGISTRY.get_sample_value("ledger_horizon_errors_total", {"operation": "payout"}) or 0.0
    stuck = REGISTRY.get_sample_value("ledger_payouts_total", {"state": "stuck"}) or 0.0
    deadline = time.monotonic() + 30
    while (record := chain.books.payout_record(payout_id)) is None or not record.stuck:
        assert time.monotonic() < deadline, chain.row(payout_id)
        lost.work_once()
    row = chain.row(payout_id)
    assert row is not None and row["state"] == "bound" and row["stuck"] and row["attempts"] >= 4
    assert "NotFoundError" in (record.stuck or "")
    assert REGISTRY.get_sample_value("ledger_horizon_errors_total", {"operation": "payout"}) >= horizon_errors + 4
    assert REGISTRY.get_sample_value("ledger_payouts_total", {"state": "stuck"}) == stuck + 1
    # A second worker (its own database session) on the same channel waits its turn.
    other_store = ChainStore(servers.database_url)
    try:
        twin = ChannelWorker(
            chain.settings,
            other_store,
            chain.books,
            channel_horizon(chain.settings.horizon_url),
            lost.channel,
            KillSwitch(None),
        )
        assert twin.work_once() is False
    finally:
        other_store.close()


def test_payout_requests_are_checked(chain: Chain, event_count: Any, keys: KeyStore, admin_token: str) -> None:
    account, destination = chain.funded_account(), chain.destination()
    client = api_client(create_app(chain.books, keys=keys), admin_token)
    body = {"id": unique("p"), "account": account, "amount": "1", "destination": destination}
    before = event_count()
    for bad, detail in [
        ({**body, "destination": "GABC"}, "Stellar account id"),
        ({**body, "destination": destination[:-1] + ("A" if destination[-1] != "A" else "B")}, "Stellar account id"),
        ({**body, "memo": "x" * 29}, "28 bytes"),
        ({**body, "amount": "0.00000001"}, "7"),
    ]:
        reply = client.simulate_post("/v1/payouts", json=bad)
        assert reply.status_code == 400 and detail in reply.json["detail"], reply.json
    # One stroop over a signed 64-bit amount: the worker could never pay it nor release it.
    too_big = client.simulate_post("/v1/payouts", json={**body, "amount": "922337203685.4775808"})
    assert (too_big.status_code, too_big.json["code"]) == (422, "amount_exceeds_chain_limit"), too_big.json
    assert "922337203685.4775807" in too_big.json["detail"]
    assert event_count() == before
    created = client.simulate_post("/v1/payouts", json=body)
    assert created.status_code == 201 and created.json["state"] == "pending"
    assert "idempotent-replayed" not in created.headers
    again = client.simulate_post("/v1/payouts", json=body)
    assert (again.json, again.headers.get("idempotent-replayed")) == (created.json, "true")
    assert client.simulate_post("/v1/payouts", json={**body, "amount": "2"}).status_code == 409
    euro = unique("eur")
    chain.books.open_account(OpenAccount(euro, "EUR/2"))
    with pytest.raises(AssetNotOnChain):
        chain.books.request_payout(RequestPayout(unique("p"), euro, "1", destination))
    clearing = clearing_account_id("XLM/7")
    assert clearing.startswith("$chain.")


def pay_in(chain: Chain, sender: Keypair, amount: str, memo: str | None) -> None:
    """A wallet top-up: a payment from outside into the distribution account."""
    send_payment(chain, sender, chain.keys.distribution.public_key, amount, memo)


def send_payment(chain: Chain, sender: Keypair, destination: str, amount: str, memo: str | None = None) -> None:
    """A native payment signed by ``sender`` at its next sequence number, straight to the simulator."""
    record = chain.sim.network.account_record(sender.public_key)
    assert record is not None
    builder = TransactionBuilder(StellarAccount(sender.public_key, int(record["sequence"])), PASSPHRASE, 100)
    builder.append_payment_op(destination, Asset.native(), amount).set_timeout(60)
    if memo is not None:
        builder.add_text_memo(memo)
    envelope = builder.build()
    envelope.sign(sender)
    chain.sim.network.submit(envelope.to_xdr())


def test_deposits_from_chain_land_once_in_the_memo_account_or_in_suspense(chain: Chain) -> None:
    sender = Keypair.random()
    chain.sim.network.create_account(sender.public_key, "500")
    known = chain.funded_account(amount="1")
    frozen = chain.funded_account(amount="1")
    chain.books.account_action(AccountAction(frozen, "freeze"))
    suspense = suspense_account_id("XLM/7")
    before = _balance(chain.books, suspense)
    pay_in(chain, sender, "10", known)
    pay_in(chain, sender, "2.5", "nobody-" + unique("x"))
    pay_in(chain, sender, "1.25", None)
    pay_in(chain, sender, "4", frozen)  # a frozen account receives nothing; suspense keeps it
    follower = DepositFollower(chain.settings, chain.store, chain.books, horizon_client(chain.settings.horizon_url))
    assert follower.poll() == 4
    assert follower.poll() == 0
    assert chain.books.account(known).available == 110_000_000
    assert chain.books.account(frozen).available == 10_000_000
    assert _balance(chain.books, suspense) - before == 77_500_000
    # A restart that lost the cursor (a crash after crediting, before storing it) credits nothing twice.
    chain.store.set_cursor(follower.cursor_name, "0")
    restarted = DepositFollower(chain.settings, chain.store, chain.books, horizon_client(chain.settings.horizon_url))
    assert restarted.poll() == 4
    assert chain.books.account(known).available == 110_000_000
    assert _balance(chain.books, suspense) - before == 77_500_000
    # Our own payouts out of the distribution account are not deposits.
    payout_id = payout(chain, known, "3", chain.destination())
    chain.pump(payout_id)
    assert restarted.poll() == 1
    assert chain.books.account(known).available == 80_000_000


def _balance(books: Books, system_account: str) -> int:
    """A system account's balance, from its events (system accounts have no aggregate to load)."""
    total = 0
    with books.recorder.datastore.transaction(commit=False) as curs:  # type: ignore[attr-defined]
        curs.execute("SELECT topic, state FROM ledger_events WHERE originator_id = %s", (account_uuid(system_account),))
        rows = curs.fetchall()
    for row in rows:
        topic = row["topic"]
        amount = json.loads(bytes(row["state"]).decode()).get("amount", 0)
        if topic.endswith("Account.Credited"):
            total += int(amount)
        elif topic.endswith("Account.Debited"):
            total -= int(amount)
    return total


def test_a_forged_payout_request_pays_nothing_and_real_payouts_still_go_out(chain: Chain, servers: Urls) -> None:
    """A Kafka message is a hint to look, never an order: the intake reads the payout
    from the event store, and sets aside messages the store does not bear out."""
    account, destination, thief = chain.funded_account(), chain.destination(), chain.destination()
    chain.settle()
    real = payout(chain, account, "5", destination)  # in the store; not relayed yet
    thief_before, distribution_before = chain.balance(thief), chain.balance(chain.keys.distribution.public_key)
    head, ghost = chain.books.head_position(), unique("p")
    forged = [
        # A payout the store has never heard of (the bug: 100 XLM paid from the distribution account).
        Forged(event_headers(PAYOUT_REQUESTED, ghost, 1, head), payout_requested(ghost, account, "1000000000", thief)),
        # A real payout, redirected and enlarged, arriving before the relay's message.
        Forged(event_headers(PAYOUT_REQUESTED, real, 1, head), payout_requested(real, account, "90000000", thief), 1),
        Forged(event_headers(PAYOUT_REQUESTED, ghost, 1, head), b'{"payout": '),
        Forged([("ce_type", PAYOUT_REQUESTED)], payout_requested(ghost, account, "1", thief)),
        Forged(event_headers(PAYOUT_REQUESTED, ghost, 1, head), payout_requested(ghost, account, 100, thief), 1),
    ]
    produce(servers.kafka_bootstrap, chain.intake.topic, forged)
    deadline = time.monotonic() + 20
    while len(letters := chain.dead_letters()) < len(forged):
        assert time.monotonic() < deadline, letters
        chain.intake.poll(0.2)
    assert [(row["partition"], row["reason"]) for row in letters] == [
        (0, "not_in_store"),
        (0, "bad_json"),
        (0, "missing_header"),
        (1, "differs_from_store"),
        (1, "bad_data"),
    ]
    assert {row["consumer"] for row in letters} == {"chain-intake"}
    assert "amount, destination" in letters[3]["detail"] and "data.amount must be string" in letters[4]["detail"]
    assert bytes(letters[0]["value"]) == forged[0].value and ["ce_type", PAYOUT_REQUESTED] in letters[2]["headers"]
    # Nothing was taken in from them, so there is nothing to sign.
    assert chain.row(ghost) is None and chain.row(real) is None
    assert chain.worker().work_once() is False

    row = chain.pump(real)  # the relay's message: taken in from the store, paid as asked
    assert (row["state"], row["destination"], int(row["stroops"])) == ("confirmed", destination, 50_000_000)
    assert [p["amount"] for p in chain.payments_to(destination)] == ["5.0000000"]
    assert chain.payments_to(thief) == [] and chain.balance(thief) == thief_before
    assert distribution_before - chain.balance(chain.keys.distribution.public_key) == 50_000_000
    assert chain.books.payout_record(ghost) is None
    assert len(chain.dead_letters()) == len(forged)  # the genuine message was not set aside


def test_the_worker_signs_nothing_the_event_store_does_not_vouch_for(chain: Chain) -> None:
    """The last look before signing: rows the intake would no longer take in (from a
    forged message before this check existed, or a changed table) end refused, for good,
    without an envelope, a payment or a ledger write; real payouts still go out."""
    account, destination, thief = chain.funded_account(), chain.destination(), chain.destination()
    chain.settle()
    ghost, redirected, ended = (
        unique("p"),
        payout(chain, account, "1", destination),
        payout(chain, account, "2", destination),
    )
    chain.take_in(redirected)
    chain.take_in(ended)
    conn = chain.store.conn()
    conn.execute(
        "INSERT INTO chain_payouts (payout_id, account, asset, stroops, destination, memo) VALUES (%s, %s, %s, %s, %s, NULL)",
        (ghost, account, "XLM/7", 1_000_000_000, thief),
    )
    conn.execute("UPDATE chain_payouts SET destination = %s WHERE payout_id = %s", (thief, redirected))
    chain.books.fail_payout(ended, "cancelled before it was paid")
    events_before = chain.books.head_position()
    worker = chain.worker()
    deadline = time.monotonic() + 20
    while any((chain.row(p) or {}).get("state") != "refused" for p in (ghost, redirected, ended)):
        assert time.monotonic() < deadline, [chain.row(p) for p in (ghost, redirected, ended)]
        worker.work_once()
    reasons = {p: (chain.row(p) or {}).get("reason") for p in (ghost, redirected, ended)}
    assert reasons == {
        ghost: "not in the event store",
        redirected: "differs from the event store: destination",
        ended: "already failed in the event store",
    }
    assert all(chain.store.envelopes(p) == [] for p in (ghost, redirected, ended))
    assert chain.payments_to(thief) == [] and chain.payments_to(destination) == []
    assert chain.books.head_position() == events_before  # nothing failed or confirmed in the ledger
    assert chain.books.payout_record(ghost) is None
    assert worker.work_once() is False  # refused is the end: nothing is retried

    # A ghost that reached the chain before these checks ends too, instead of looping on PayoutNotFound.
    old_ghost = unique("p")
    conn.execute(
        "INSERT INTO chain_payouts (payout_id, account, asset, stroops, destination, state, channel, tx_hash, ledger) "
        "VALUES (%s, %s, 'XLM/7', 1, %s, 'applied', %s, %s, 7)",
        (old_ghost, account, thief, worker.channel.public_key, "ab" * 32),
    )
    assert worker.work_once() is True
    assert (chain.row(old_ghost) or {}).get("state") == "refused"

    paid = payout(chain, account, "3", destination)
    assert chain.pump(paid, worker)["state"] == "confirmed"
    assert [p["amount"] for p in chain.payments_to(destination)] == ["3.0000000"]

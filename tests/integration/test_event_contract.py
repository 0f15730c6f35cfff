"""The Kafka contract, checked on real produced messages: CloudEvents binary mode,
one JSON Schema per event type, per-subject order, deduplication by ce_id."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import jsonschema
import psycopg
from confluent_kafka import TopicPartition
from stellar_sdk import Keypair

from audit.sealer import Sealer
from commands import run_files
from commands.application import Books
from commands.event_store import event_store_env
from commands.messages import (
    AccountAction,
    CancelPayout,
    ChangePolicy,
    Deposit,
    ExecuteTransaction,
    OpenAccount,
    PayoutRunAction,
    PostTransfer,
    RemoveMonitor,
    RequestPayout,
    ReverseTransfer,
    RowRequest,
    SetFeeRule,
    SetMonitor,
    SweepFees,
    TransferFunds,
    UploadPayoutRun,
    VoidTransfer,
)
from contracts.events import MOVEMENT_TYPES
from ledger.fees import FeeTerms
from ledger.payout_runs import row_payout_id
from projectors.relay import Relay, RelayState
from tests.conftest import Clock, Urls, unique

SCHEMAS = Path(__file__).resolve().parents[2] / "src" / "contracts" / "schemas"


def every_kind_of_event(books: Books, clock: Clock, database_url: str) -> None:
    asset = f"K{unique('x')[-6:].upper()}/2"
    a, b, c = (unique(n) for n in "ABC")
    for account in (a, b, c):
        books.open_account(OpenAccount(account, asset))
    books.deposit(Deposit(unique("d"), a, "100.00"))
    books.set_fee_rule(SetFeeRule(asset, "transfer", FeeTerms(100, 0, 0, None, "sender")))
    paid = unique("t")
    books.transfer(TransferFunds(paid, a, b, "10.00"))
    books.reverse_transfer(ReverseTransfer(unique("r"), paid, "1.00"))
    posted, voided, expiring = unique("h"), unique("h"), unique("h")
    for hold in (posted, voided):
        books.transfer(TransferFunds(hold, a, b, "2.00", pending=True))
    books.transfer(TransferFunds(expiring, a, b, "2.00", pending=True, timeout_seconds=5))
    books.post_transfer(PostTransfer(posted, "1.00"))
    books.void_transfer(VoidTransfer(voided))
    clock.now += timedelta(seconds=6)
    assert books.expire_transfer(expiring)
    books.transaction(ExecuteTransaction(unique("tx"), (TransferFunds(unique("l"), a, c, "1.00"),)))
    books.change_policy(ChangePolicy(c, {"overdraft_limit": "1.00", "daily_limit": "50.00", "monthly_limit": None}))
    for action in ("freeze", "unfreeze"):
        books.account_action(AccountAction(c, action))
    books.transfer(TransferFunds(unique("t"), c, b, "0.99"))  # and 0.01 fee: c is empty
    books.account_action(AccountAction(c, "close"))
    watched = unique("m")
    books.open_account(OpenAccount(watched, asset))
    books.deposit(Deposit(unique("d"), watched, "10.00"))
    books.set_monitor(SetMonitor("low", watched, "available", "below", "5.00"))
    books.transfer(TransferFunds(unique("t"), watched, b, "6.00"))  # and its fee: triggered
    books.deposit(Deposit(unique("d"), watched, "10.00"))  # cleared
    books.remove_monitor(RemoveMonitor("low", watched))
    # Payouts, as the chain worker reports them (no chain needed for the events).
    lumens = unique("x")
    books.open_account(OpenAccount(lumens, "XLM/7"))
    books.deposit(Deposit(unique("d"), lumens, "10"))
    paid, refused = unique("p"), unique("p")
    for payout in (paid, refused):
        books.request_payout(RequestPayout(payout, lumens, "1", Keypair.random().public_key))
    books.note_payout_attempt(paid, 1, "ab" * 32, None)
    books.report_payout_stuck(paid, "no answer yet")
    books.confirm_payout(paid, "ab" * 32, 7)
    books.cancel_payout(CancelPayout(refused, "ticket 9"))
    books.fail_payout(refused, "op_no_trust")
    books.sweep_fees(SweepFees(unique("s"), asset, b))
    distribution = Keypair.random().public_key
    for held in (5, 20, 5):  # low, recovered, low
        assert books.judge_distribution_balance("XLM/7", distribution, held, 10, 0)
    # A payout run through all its states, as a client and the chain worker move it.
    poor = unique("x")
    books.open_account(OpenAccount(poor, "XLM/7"))
    run_id = unique("run")
    rows = (RowRequest("1", lumens, "1", Keypair.random().public_key, number=1),)
    rows += (RowRequest("2", poor, "1", Keypair.random().public_key, "memo", number=2),)
    books.upload_payout_run(UploadPayoutRun(run_id, rows, run_files.fingerprint(list(rows))))
    for action in ("start", "pause", "resume"):
        books.payout_run_action(PayoutRunAction(run_id, action))
    run = books.run_record(run_id)
    chunk = books.run_chunk(run_id, 0)
    assert run is not None and chunk is not None
    assert books.request_run_rows(run_id, 1, chunk.parsed()) == {"requested": 1, "refused": 1}
    books.confirm_payout(row_payout_id(run_id, "1", 1), "cd" * 32, 8)
    assert books.complete_payout_run(run_id, 1, 1)
    books.payout_run_action(PayoutRunAction(run_id, "retry"))
    cancelled = unique("run")
    books.upload_payout_run(UploadPayoutRun(cancelled, rows[:1], run_files.fingerprint(list(rows[:1]))))
    books.payout_run_action(PayoutRunAction(cancelled, "cancel"))
    assert Sealer(books, database_url).seal() is not None


def test_every_message_follows_the_contract(servers: Urls) -> None:
    clock = Clock()
    books = Books(event_store_env(servers.settings()), clock=clock, payout_assets={"XLM/7": "native"})
    topic = unique("contract")
    try:
        start = books.head_position()
        every_kind_of_event(books, clock, servers.database_url)
        relay = Relay(
            books,
            RelayState(servers.database_url, topic),
            servers.database_url,
            servers.producer(),
            servers.topic_watch(topic, 4),
        )
        relay.start()
        while relay.publish_batch():
            pass
        head = books.head_position()
        with psycopg.connect(servers.database_url) as conn:
            row = conn.execute(
                "SELECT count(*) FROM ledger_events WHERE notification_id > %s AND notification_id <= %s", (start, head)
            ).fetchone()
        # Not head - start: a rolled-back insert leaves a gap in the positions.
        recorded = int(row[0]) if row else 0
    finally:
        books.close()

    consumer = servers.consumer()
    consumer.assign([TopicPartition(topic, p, 0) for p in range(4)])
    messages: list[Any] = []
    checkpoints: dict[int, int] = {}
    deadline = time.monotonic() + 30
    while len(checkpoints) < 4 or min(checkpoints.values()) < head:
        assert time.monotonic() < deadline
        for message in consumer.consume(1000, 0.5):
            headers = {k: v.decode() for k, v in message.headers()}
            if headers["ce_type"] == "ledger.checkpoint.v1":
                checkpoints[message.partition()] = int(headers["ce_position"])
            messages.append((message, headers))
    consumer.close()

    schemas = {path.name.removesuffix(".json"): json.loads(path.read_text()) for path in SCHEMAS.glob("*.json")}
    seen: set[str] = set()
    last_sequence: dict[str, int] = {}
    ids: set[str] = set()
    balances_seen = 0
    for message, headers in messages:
        ce_type = headers["ce_type"]
        assert ce_type in schemas, f"no schema for {ce_type}"
        for name in ("ce_specversion", "ce_id", "ce_source", "ce_type", "ce_position"):
            assert headers[name], name
        assert headers["ce_specversion"] == "1.0"
        jsonschema.validate(json.loads(message.value()), schemas[ce_type])
        seen.add(ce_type)
        if ce_type == "ledger.checkpoint.v1":
            continue
        position = int(headers["ce_position"])
        if position <= start:
            continue  # other tests' events, relayed too
        assert message.key().decode() == headers["ce_subject"]
        assert len(headers["ce_sequence"]) == 20
        sequence = int(headers["ce_sequence"])
        subject = headers["ce_subject"]
        assert sequence == last_sequence.get(subject, sequence - 1) + 1, f"{subject} out of order"
        last_sequence[subject] = sequence
        ids.add(headers["ce_id"])
        data = json.loads(message.value())
        if ce_type in MOVEMENT_TYPES.values():  # a client account's movements say its balance
            after = data.get("balance_after")
            assert (after is None) == data["account"].startswith("$"), (ce_type, data)
            if after is not None:
                totals = {name: int(value) for name, value in after.items()}
                assert (
                    totals["available"] == totals["posted_credits"] - totals["posted_debits"] - totals["pending_debits"]
                )
                balances_seen += 1
    assert seen == set(schemas), f"never produced: {set(schemas) - seen}"
    assert len(ids) == recorded  # one message per event, each id once
    assert balances_seen > 10

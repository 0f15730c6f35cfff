"""Auditors' export and trial balance, recomputed from event payloads alone."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audit.stream import events, read_lines, write_lines
from audit.trial_balance import trial_balance
from commands.application import Books
from commands.messages import Deposit, OpenAccount, PostTransfer, TransferFunds, VoidTransfer
from ledger.errors import AccountNotFound, LedgerError
from ledger.money import Asset
from queries import readmodel
from tests.conftest import Urls, run_ledger, unique
from tests.integration.test_pipeline import project_everything

SCHEMAS = Path(__file__).resolve().parents[2] / "src" / "contracts" / "schemas"

operation = st.tuples(
    st.sampled_from(["deposit", "transfer", "hold", "post", "void"]),
    st.integers(0, 2),
    st.integers(0, 2),
    st.integers(1, 5000),
)


@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(operations=st.lists(operation, min_size=3, max_size=12), data=st.data())
def test_trial_balances_net_to_zero_and_match_the_query_api(
    books: Books, servers: Urls, mongo_db: Any, operations: list[tuple[str, int, int, int]], data: st.DataObject
) -> None:
    asset = f"T{unique('a')[-6:].upper()}/2"
    unit = Asset.parse(asset)
    accounts = [unique("au") for _ in range(3)]
    positions = []
    for account in accounts:
        positions.append(books.open_account(OpenAccount(account, asset))["position"])
    holds: list[str] = []
    for kind, a, b, amount in operations:
        try:
            if kind == "deposit":
                result = books.deposit(Deposit(unique("d"), accounts[a], unit.format(amount)))
            elif kind in ("transfer", "hold"):
                move = TransferFunds(unique("t"), accounts[a], accounts[b], unit.format(amount), pending=kind == "hold")
                result = books.transfer(move)
                if kind == "hold":
                    holds.append(move.id)
            elif holds:
                hold = holds.pop(a % len(holds))
                command = PostTransfer(hold) if kind == "post" else VoidTransfer(hold)
                result = books.post_transfer(command) if kind == "post" else books.void_transfer(command)
            else:
                continue
        except LedgerError:
            continue  # refused (insufficient funds, same account): nothing written
        positions.append(result["position"])
    project_everything(books, servers, mongo_db)

    for position in data.draw(st.lists(st.sampled_from(positions), min_size=1, max_size=3, unique=True)):
        result = trial_balance(events(books, to_position=position))
        assert all(total == (0, 0) for total in result.totals().values()), result.totals()
        for account in accounts:
            mine = result.accounts.get(account)
            try:
                shown = readmodel.account(mongo_db, account, at_position=position)["balance"]
            except AccountNotFound:
                assert mine is None, (account, position)  # not opened yet then, in either
                continue
            for name in ("posted_debits", "posted_credits", "pending_debits", "pending_credits"):
                assert shown[name] == unit.format(getattr(mine, name) if mine else 0), (account, position, name)


def test_an_export_is_the_kafka_payloads_and_replays_to_the_same_balances(
    books: Books, servers: Urls, tmp_path: Path
) -> None:
    a, b = unique("ex"), unique("ex")
    for account in (a, b):
        books.open_account(OpenAccount(account, "USD/2"))
    books.deposit(Deposit(unique("d"), a, "10.00"))
    books.transfer(TransferFunds(unique("t"), a, b, "2.50", pending=True))
    head = books.head_position()
    path = tmp_path / "export.jsonl"
    with path.open("w") as out:
        count = write_lines(events(books), out)
    exported = list(read_lines(path))
    assert len(exported) == count and exported[-1]["position"] == head
    assert [e["position"] for e in exported] == sorted(e["position"] for e in exported)
    for event in exported[-6:]:
        schema = json.loads((SCHEMAS / f"{event['type']}.json").read_text())
        jsonschema.validate(event["data"], schema)
    live, replayed = trial_balance(events(books)), trial_balance(read_lines(path))
    assert live.accounts == replayed.accounts and live.totals() == replayed.totals()
    assert replayed.accounts[b].pending_credits == 250

    # The same through the CLI: a slice of the export, and the trial balance from it.
    env = {"LEDGER_DATABASE_URL": servers.database_url}
    sliced = tmp_path / "slice.jsonl"
    done = run_ledger("audit", "export", "--after-position", str(head - 5), "--output", str(sliced), env=env)
    assert done.returncode == 0, done.stderr
    assert [e["position"] for e in read_lines(sliced)] == [e["position"] for e in exported if e["position"] > head - 5]
    csv = run_ledger("audit", "trial-balance", "--from-file", str(path), env=env)
    assert csv.returncode == 0, csv.stderr
    assert f"USD/2,{b},0.00,0.00,0.00,2.50" in csv.stdout
    as_json = run_ledger("audit", "trial-balance", "--format", "json", "--as-of-position", str(head), env=env)
    assert as_json.returncode == 0, as_json.stderr
    report = json.loads(as_json.stdout)
    assert report["as_of_position"] == head
    assert all(t == {"posted": "0.00", "pending": "0.00"} for a_, t in report["totals"].items() if a_ == "USD/2")

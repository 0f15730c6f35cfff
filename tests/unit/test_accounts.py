"""The Account aggregate's rules, in memory (no event store needed)."""

import pytest

from ledger.accounts import Account
from ledger.errors import InsufficientFunds


def open_account(limit: int = 0, system: bool = False) -> Account:
    return Account(account_id="A", asset="USD/2", overdraft_limit=limit, system=system, metadata={})


def test_an_account_cannot_go_below_its_overdraft_limit() -> None:
    account = open_account(limit=500)
    account.credit("t1", 1000)
    account.debit("t2", 1500)
    assert account.available == -500
    with pytest.raises(InsufficientFunds, match="cannot debit 0.01"):
        account.debit("t3", 1)
    assert account.posted_debits == 1500


def test_a_refused_debit_records_no_event() -> None:
    account = open_account()
    with pytest.raises(InsufficientFunds):
        account.debit("t1", 1)
    assert [type(e).__name__ for e in account.collect_events()] == ["Opened"]


def test_system_accounts_may_go_negative_without_limit() -> None:
    issuance = open_account(system=True)
    issuance.debit("d1", 10**30)
    assert issuance.available == -(10**30)


def test_replaying_the_events_rebuilds_the_same_balances() -> None:
    account = open_account()
    account.credit("d1", 10_000)
    account.debit("t1", 3_000)
    events = account.collect_events()
    rebuilt = None
    for event in events:
        rebuilt = event.mutate(rebuilt)
    assert rebuilt is not None
    assert (rebuilt.posted_credits, rebuilt.posted_debits, rebuilt.version) == (10_000, 3_000, 3)

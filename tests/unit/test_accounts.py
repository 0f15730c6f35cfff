"""The Account aggregate's rules, in memory (no event store needed)."""

import inspect

import pytest
from eventsourcing.utils import get_topic, resolve_topic

from ledger.accounts import BALANCE_FIELDS, MOVEMENTS, Account
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


def test_every_movement_records_the_balance_it_leaves() -> None:
    """What a subscriber reads from the latest movement is what a replay gives."""
    account = open_account(limit=500)
    account.credit("t1", 1000)
    account.add_pending_debit("h1", 300)
    account.add_pending_credit("h2", 50)
    account.post_pending_debit("h1", 300, 200)
    account.post_pending_credit("h2", 50, 50)
    account.add_pending_debit("h3", 100)
    account.void_pending_debit("h3", 100, "voided")
    account.add_pending_credit("h4", 70)
    account.void_pending_credit("h4", 70, "expired")
    account.debit("t2", 1200)  # into the overdraft
    replayed = None
    for event in account.collect_events():
        replayed = event.mutate(replayed)
        if not isinstance(event, Account.Opened):
            assert event.balance_after == replayed.balance, type(event).__name__
    assert account.balance == {"posted_debits": 1400, "posted_credits": 1050, "pending_debits": 0, "pending_credits": 0}
    assert account.available == -350


def test_system_accounts_record_no_balance() -> None:
    """Most of their movements are appended without reading them: none can say a balance."""
    account = open_account(system=True)
    account.debit("t1", 100)
    assert account.collect_events()[-1].balance_after is None
    appended = Account.system_event("$fees.USD", Account.Credited, transfer_id="t1", amount=100)
    assert appended.balance_after is None


def test_movements_stored_before_balance_after_existed_still_replay() -> None:
    """An upgraded ledger reads history written before the field: such an event has no
    ``balance_after`` (nor, older still, ``window``) and must replay as before."""
    account = open_account()
    account.credit("t1", 1000)
    account.debit("t2", 300, "2026-01-01")
    account.add_pending_debit("h1", 100, "2026-01-01")
    account.void_pending_debit("h1", 100, "voided")
    events = account.collect_events()
    for event in events[1:]:
        for name in ("balance_after", "window"):
            if name in vars(event):
                object.__delattr__(event, name)
    replayed = None
    for event in events:
        replayed = event.mutate(replayed)
    assert replayed is not None
    assert replayed.balance == account.balance
    assert replayed.available == 700


@pytest.mark.parametrize("movement", list(MOVEMENTS), ids=lambda kind: kind.__name__)
def test_every_movement_changes_the_balances_as_the_movements_table_says(movement: type) -> None:
    """``MOVEMENTS`` is what the projector and the trial balance apply; the aggregate's
    own event bodies must do exactly the same."""
    account = open_account()
    account.credit("d1", 10_000)
    account.add_pending_debit("h1", 700)
    account.add_pending_credit("h2", 300)
    before = account.balance
    amounts = {"amount": 123, "pending_amount": 456}
    takes = inspect.signature(movement).parameters
    fields: dict[str, object] = {"transfer_id": "t9", "amount": amounts["amount"]}
    if "pending_amount" in takes:
        fields["pending_amount"] = amounts["pending_amount"]
    if "reason" in takes:
        fields["reason"] = "test"
    account.trigger_event(movement, **fields)
    expected = dict(before)
    for field, sign, key in MOVEMENTS[movement]:
        expected[field] += sign * amounts[key]
    assert account.balance == expected
    assert set(expected) == set(BALANCE_FIELDS)


STORED_TOPICS = [
    "Opened",
    "Debited",
    "Credited",
    "DebitPending",
    "CreditPending",
    "PendingDebitPosted",
    "PendingCreditPosted",
    "PendingDebitVoided",
    "PendingCreditVoided",
    "OverdraftLimitChanged",
    "LimitsChanged",
    "Frozen",
    "Unfrozen",
    "Closed",
    "MonitorSet",
    "MonitorRemoved",
    "MonitorCrossed",
]


@pytest.mark.parametrize("name", STORED_TOPICS)
def test_every_account_event_keeps_the_topic_stored_events_are_read_back_by(name: str) -> None:
    """Stored events are read back by their topics: moving or renaming an event class would
    leave them unreadable (and change what the hash chains cover)."""
    topic = f"ledger.accounts:Account.{name}"
    assert get_topic(getattr(Account, name)) == topic
    assert resolve_topic(topic) is getattr(Account, name)


def test_an_account_records_its_events_under_the_stored_topics() -> None:
    """Also ``Opened``, its creation event, and every event is one of ``Account``'s."""
    account = open_account(limit=100)
    account.credit("d1", 1_000)
    account.add_pending_debit("h1", 50)
    account.void_pending_debit("h1", 50, "voided")
    account.freeze()
    events = account.collect_events()
    assert all(isinstance(event, Account.Event) for event in events)
    assert [get_topic(type(e)) for e in events] == [
        f"ledger.accounts:Account.{name}"
        for name in ("Opened", "Credited", "DebitPending", "PendingDebitVoided", "Frozen")
    ]

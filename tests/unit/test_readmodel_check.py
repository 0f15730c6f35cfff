"""The read-model comparison both `projections verify` and `audit verify` make, on plain
documents: each kind of difference it must name, and what it must let pass while the
store moves on."""

from __future__ import annotations

from typing import Any

from contracts.readmodel_check import (
    Expected,
    ExpectedAccount,
    compare_accounts,
    compare_entries,
    compare_transfers,
    unbalanced_assets,
)

ALICE = ExpectedAccount("USD/2", (100, 0, 0, 0), 3, "open", 0, (None, None), 2)
BOB = ExpectedAccount("USD/2", (0, 100, 0, 0), 2, "open", 0, (None, None), 1)


def doc(account_id: str, account: ExpectedAccount, **changes: Any) -> dict[str, Any]:
    """The projector's document for an account, as strings of minor units like the real one."""
    shown: dict[str, Any] = {
        "_id": account_id,
        "asset": account.asset,
        "version": account.version,
        "status": account.status,
        "overdraft_limit": str(account.overdraft_limit),
        "daily_limit": None,
        "monthly_limit": None,
        "opened_position": 1,
        "position": 5,  # of the account's last event, within the replay's 10
        "posted_debits": str(account.balances[0]),
        "posted_credits": str(account.balances[1]),
        "pending_debits": str(account.balances[2]),
        "pending_credits": str(account.balances[3]),
    }
    return shown | changes


def compare(docs: list[dict[str, Any]], *, store_moved: bool = False, position: int = 10) -> list[str]:
    expected = Expected({"alice": ALICE, "bob": BOB}, position)
    return [str(d) for d in compare_accounts(expected, docs, store_moved=store_moved).differences]


def test_a_faithful_read_model_has_no_differences() -> None:
    comparison = compare_accounts(
        Expected({"alice": ALICE, "bob": BOB}, 10), [doc("alice", ALICE), doc("bob", BOB)], store_moved=False
    )
    assert (comparison.differences, comparison.compared, comparison.moved_since) == ([], 2, 0)


def test_each_field_that_differs_is_named_with_the_replays_value() -> None:
    edited = doc("alice", ALICE, posted_debits="99", status="frozen", overdraft_limit="5", daily_limit="7")
    assert compare([edited, doc("bob", BOB)]) == [
        (
            "account alice: the read model shows posted_debits 99 (replay: 100), status frozen (replay: open), "
            "overdraft_limit 5 (replay: 0), limits (7, None) (replay: (None, None))"
        )
    ]


def test_a_field_missing_or_garbled_in_the_document_is_a_difference_not_a_crash() -> None:
    garbled = doc("alice", ALICE, posted_debits="ten")
    del garbled["overdraft_limit"]
    assert compare([garbled, doc("bob", BOB)]) == [
        "account alice: the read model shows posted_debits 'ten' (replay: 100), overdraft_limit None (replay: 0)"
    ]


def test_an_account_at_another_version_is_named_once() -> None:
    assert compare([doc("alice", ALICE, version=2, posted_debits="1"), doc("bob", BOB)]) == [
        "account alice: is at version 2 in the read model; the event store has 3"
    ]


def test_missing_and_unknown_accounts() -> None:
    ghost = doc("ghost", BOB)
    assert compare([doc("alice", ALICE), ghost]) == [
        "account ghost: is in the read model but not in the event store",
        "account bob: is missing from the read model",
    ]


def test_a_replay_that_knows_less_compares_less() -> None:
    """The auditor's replay has balances and versions only: statuses are not compared."""
    bare = ExpectedAccount("USD/2", (100, 0, 0, 0), 3)
    comparison = compare_accounts(Expected({"alice": bare}, 10), [doc("alice", ALICE, status="x")], store_moved=False)
    assert comparison.differences == []
    comparison = compare_accounts(
        Expected({"alice": bare}, 10), [doc("alice", ALICE, pending_debits="1")], store_moved=False
    )
    assert [str(d) for d in comparison.differences] == [
        "account alice: the read model shows pending_debits 1 (replay: 0)"
    ]


def test_while_the_store_moves_accounts_past_the_replay_are_counted_not_named() -> None:
    newer = doc("alice", ALICE, version=4, position=12, posted_debits="150")
    opened_later = doc("carol", BOB, opened_position=11, position=11)
    expected = Expected({"alice": ALICE, "bob": BOB}, 10)
    comparison = compare_accounts(expected, [newer, doc("bob", BOB), opened_later], store_moved=True)
    assert (comparison.differences, comparison.compared, comparison.moved_since) == ([], 1, 2)
    assert comparison.ahead == {"alice": 12, "carol": 11}  # for the watermark to vouch for


def test_a_version_raised_without_a_later_event_is_not_taken_for_a_store_that_moved() -> None:
    """Whoever edits a balance in MongoDB cannot hide it by raising the version too."""
    assert compare([doc("alice", ALICE, version=99, posted_debits="1"), doc("bob", BOB)], store_moved=True) == [
        (
            "account alice: is at version 99 in the read model, past the replay's 3, "
            "though it says it last moved at position 5, which the replay read"
        )
    ]


def test_when_the_store_stood_still_an_account_past_the_replay_is_a_difference() -> None:
    """Nothing could have moved it: the read model is ahead of its own store."""
    assert compare([doc("alice", ALICE, version=4), doc("bob", BOB), doc("carol", BOB, opened_position=11)]) == [
        "account alice: is at version 4 in the read model; the event store has 3",
        "account carol: is in the read model but not in the event store",
    ]


def test_a_read_model_behind_the_replay_is_named_even_while_the_store_moves() -> None:
    assert compare([doc("alice", ALICE, version=2), doc("bob", BOB)], store_moved=True) == [
        "account alice: is at version 2 in the read model; the event store has 3"
    ]


def test_entries_one_per_movement() -> None:
    assert [str(d) for d in compare_entries({"alice": ALICE, "bob": BOB}, {"alice": 2})] == [
        "account bob: has 0 entries (replay: 1)"
    ]


def test_transfer_states() -> None:
    found = compare_transfers(
        {"t1": "posted", "t2": "pending", "t3": "posted"}, {"t1": "posted", "t2": "voided", "t9": "posted"}
    )
    assert [str(d) for d in found] == [
        "transfer t2: the read model says voided (replay: pending)",
        "transfer t3: is missing from the read model",
        "transfer t9: is in the read model but not in the event store",
    ]


def test_each_asset_must_balance() -> None:
    docs = [doc("alice", ALICE), doc("bob", BOB), doc("erin", ExpectedAccount("EUR/2", (5, 0, 0, 3), 2))]
    assert [str(d) for d in unbalanced_assets(docs)] == [
        "asset EUR/2: posted debits 5 vs credits 0, pending debits 0 vs credits 3"
    ]

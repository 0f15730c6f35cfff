"""Transfer batches: independent transfers in one request and one write, each answered as
if it had been sent alone, in order.

On the in-memory event store (``commands.memory_store``); what needs PostgreSQL or HTTP
(batches over HTTP) is in ``tests/integration/test_transfer_batches.py``.
"""

from __future__ import annotations

from typing import Any

from commands.application import Books
from commands.messages import SetFeeRule, TransferBatch, TransferFunds
from ledger.errors import IdConflict, InsufficientFunds, LedgerError
from ledger.fees import FeeTerms
from tests.conftest import unique
from tests.scenarios import accounts


def move(debit: str, credit: str, amount: str, **extra: Any) -> TransferFunds:
    return TransferFunds(unique("t"), debit, credit, amount, **extra)


def test_each_transfer_stands_alone_and_later_ones_see_earlier_ones(books: Books, event_count: Any) -> None:
    a, b, c = accounts(books, 3)
    batch = TransferBatch(
        (
            move(a, b, "60.00"),
            move(a, c, "50.00"),  # only 40.00 left: refused, the rest goes on
            move(b, c, "60.00"),  # spends what the first one brought
            move(a, "ghost", "1.00"),
            move(a, c, "40.00", pending=True, timeout_seconds=60),
        )
    )
    before = event_count()
    results = books.transfer_batch(batch)
    assert [type(r).__name__ if isinstance(r, LedgerError) else r["status"] for r in results] == [
        "posted",
        "InsufficientFunds",
        "posted",
        "AccountNotFound",
        "pending",
    ]
    assert [books.account(x).available for x in (a, b, c)] == [0, 0, 6000]
    assert books.account(c).pending_credits == 4000
    assert event_count() - before == 3 * 3  # three transfers, three events each
    # Every answer's position covers all of the batch's events (read-your-writes).
    head = books.head_position()
    positions = [r["position"] for r in results if isinstance(r, dict)]
    assert positions == sorted(positions) and max(positions) == head
    assert min(positions) > before


def test_a_retried_batch_answers_as_the_first_time_and_writes_nothing(books: Books, event_count: Any) -> None:
    a, b = accounts(books, 2)
    batch = TransferBatch((move(a, b, "70.00"), move(a, b, "70.00"), move(a, b, "30.00")))
    first = books.transfer_batch(batch)
    assert isinstance(first[1], InsufficientFunds)
    before = event_count()
    again = books.transfer_batch(batch)
    # The refused one is tried again (it was never recorded), and still refused.
    assert [r if isinstance(r, dict) else type(r) for r in again] == [first[0], InsufficientFunds, first[2]]
    assert event_count() == before
    # A transfer sent alone after being in a batch answers the same too.
    assert books.transfer(batch.transfers[0]) == first[0]


def test_a_reused_id_with_another_body_is_refused_alone(books: Books) -> None:
    a, b = accounts(books, 2)
    changed, repeated = move(a, b, "1.00"), move(a, b, "0.50")
    books.transfer(changed)
    first = books.transfer(repeated)
    results = books.transfer_batch(
        TransferBatch((TransferFunds(changed.id, a, b, "2.00"), move(a, b, "3.00"), repeated))
    )
    assert isinstance(results[0], IdConflict)
    assert isinstance(results[1], dict) and results[1]["amount"] == "3.00"
    assert results[2] == first
    assert books.account(b).available == 450


def test_fees_apply_to_each_transfer_of_a_batch(books: Books) -> None:
    asset = f"B{unique('x')[-6:].upper().replace('-', '')}/2"
    payer, payee = accounts(books, 2, fund="10.00", asset=asset)
    books.set_fee_rule(
        SetFeeRule(asset, "transfer", FeeTerms(basis_points=0, fixed=100, minimum=0, maximum=None, payer="sender"))
    )
    # The second transfer's fee is refused after its amount fits: it must leave no trace.
    results = books.transfer_batch(TransferBatch((move(payer, payee, "4.00"), move(payer, payee, "4.50"))))
    assert isinstance(results[0], dict) and results[0]["fee"]["amount"] == "1.00"
    assert isinstance(results[1], InsufficientFunds)
    assert (books.account(payer).available, books.account(payee).available) == (500, 400)

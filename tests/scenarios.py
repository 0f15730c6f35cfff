"""Ledger scenarios the handler tests set up through the application (accounts opened
and funded, pending transfers made, fee rules set): shared by the unit tests on the in-memory store
(``tests/unit/handlers``) and their PostgreSQL and HTTP counterparts (``tests/integration``).
"""

from __future__ import annotations

from typing import Any

from commands.application import Books
from commands.messages import ChangePolicy, Deposit, OpenAccount, SetFeeRule, TransferFunds
from ledger.fees import FeeTerms
from tests.conftest import unique


def open_pair(books: Books, asset: str = "USD/2", fund: str | None = None) -> tuple[str, str]:
    """Two accounts in ``asset``; the first funded with ``fund`` when given."""
    a, b = unique("A"), unique("B")
    books.open_account(OpenAccount(a, asset))
    books.open_account(OpenAccount(b, asset))
    if fund:
        books.deposit(Deposit(unique("d"), a, fund))
    return a, b


def funded_pair(books: Books, fund: str | None = "10.00") -> tuple[str, str]:
    return open_pair(books, "USD/2", fund)


def fee_pair(books: Books, asset: str, fund: str = "100.00") -> tuple[str, str]:
    return open_pair(books, asset, fund)


def set_rule(books: Books, asset: str, payer: str, **terms: Any) -> dict[str, Any]:
    base = {"basis_points": 100, "fixed": 25, "minimum": 0, "maximum": None} | terms
    return books.set_fee_rule(SetFeeRule(asset, "transfer", FeeTerms(payer=payer, **base)))


def limited(books: Books, daily: str | None, monthly: str | None) -> tuple[str, str]:
    a, b = unique("A"), unique("B")
    books.open_account(OpenAccount(a, "USD/2"))
    books.open_account(OpenAccount(b, "USD/2"))
    books.deposit(Deposit(unique("d"), a, "1000.00"))
    books.change_policy(ChangePolicy(a, {"daily_limit": daily, "monthly_limit": monthly}))
    return a, b


def paid(books: Books, amount: str = "30.00") -> tuple[str, str, str]:
    a, b = unique("A"), unique("B")
    books.open_account(OpenAccount(a, "USD/2"))
    books.open_account(OpenAccount(b, "USD/2"))
    books.deposit(Deposit(unique("d"), a, "100.00"))
    transfer_id = unique("t")
    books.transfer(TransferFunds(transfer_id, a, b, amount))
    return a, b, transfer_id


def accounts(books: Books, n: int, fund: str = "100.00", asset: str = "USD/2") -> list[str]:
    """``n`` accounts in ``asset``, the first funded."""
    ids = [unique("X") for _ in range(n)]
    for account in ids:
        books.open_account(OpenAccount(account, asset))
    books.deposit(Deposit(unique("d"), ids[0], fund))
    return ids


def balances(books: Books, account_id: str) -> tuple[int, int, int, int, int]:
    a = books.account(account_id)
    return (a.posted_debits, a.posted_credits, a.pending_debits, a.pending_credits, a.available)


def make_pending(books: Books, a: str, b: str, amount: str = "30.00", timeout: int | None = None) -> str:
    """A pending transfer of ``amount`` from ``a`` to ``b``; returns its id."""
    transfer_id = unique("h")
    result = books.transfer(TransferFunds(transfer_id, a, b, amount, pending=True, timeout_seconds=timeout))
    assert result["status"] == "pending"
    return transfer_id

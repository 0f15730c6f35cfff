"""Ledger scenarios the handler tests set up through the application (accounts opened
and funded, pending transfers made, fee rules set): shared by the unit tests on the in-memory store
(``tests/unit/handlers``) and their PostgreSQL and HTTP counterparts (``tests/integration``).
"""

from __future__ import annotations

from typing import Any

from commands.application import Ledger
from commands.messages import ChangePolicy, Deposit, OpenAccount, SetFeeRule, TransferFunds
from ledger.fees import FeeTerms
from tests.conftest import unique


def open_pair(ledger: Ledger, asset: str = "USD/2", fund: str | None = None) -> tuple[str, str]:
    """Two accounts in ``asset``; the first funded with ``fund`` when given."""
    a, b = unique("A"), unique("B")
    ledger.open_account(OpenAccount(a, asset))
    ledger.open_account(OpenAccount(b, asset))
    if fund:
        ledger.deposit(Deposit(unique("d"), a, fund))
    return a, b


def funded_pair(ledger: Ledger, fund: str | None = "10.00") -> tuple[str, str]:
    return open_pair(ledger, "USD/2", fund)


def fee_pair(ledger: Ledger, asset: str, fund: str = "100.00") -> tuple[str, str]:
    return open_pair(ledger, asset, fund)


def set_rule(ledger: Ledger, asset: str, payer: str, **terms: Any) -> dict[str, Any]:
    base = {"basis_points": 100, "fixed": 25, "minimum": 0, "maximum": None} | terms
    return ledger.set_fee_rule(SetFeeRule(asset, "transfer", FeeTerms(payer=payer, **base)))


def limited(ledger: Ledger, daily: str | None, monthly: str | None) -> tuple[str, str]:
    a, b = unique("A"), unique("B")
    ledger.open_account(OpenAccount(a, "USD/2"))
    ledger.open_account(OpenAccount(b, "USD/2"))
    ledger.deposit(Deposit(unique("d"), a, "1000.00"))
    ledger.change_policy(ChangePolicy(a, {"daily_limit": daily, "monthly_limit": monthly}))
    return a, b


def paid(ledger: Ledger, amount: str = "30.00") -> tuple[str, str, str]:
    a, b = unique("A"), unique("B")
    ledger.open_account(OpenAccount(a, "USD/2"))
    ledger.open_account(OpenAccount(b, "USD/2"))
    ledger.deposit(Deposit(unique("d"), a, "100.00"))
    transfer_id = unique("t")
    ledger.transfer(TransferFunds(transfer_id, a, b, amount))
    return a, b, transfer_id


def accounts(ledger: Ledger, n: int, fund: str = "100.00", asset: str = "USD/2") -> list[str]:
    """``n`` accounts in ``asset``, the first funded."""
    ids = [unique("X") for _ in range(n)]
    for account in ids:
        ledger.open_account(OpenAccount(account, asset))
    ledger.deposit(Deposit(unique("d"), ids[0], fund))
    return ids


def balances(ledger: Ledger, account_id: str) -> tuple[int, int, int, int, int]:
    a = ledger.account(account_id)
    return (a.posted_debits, a.posted_credits, a.pending_debits, a.pending_credits, a.available)


def make_pending(ledger: Ledger, a: str, b: str, amount: str = "30.00", timeout: int | None = None) -> str:
    """A pending transfer of ``amount`` from ``a`` to ``b``; returns its id."""
    transfer_id = unique("h")
    result = ledger.transfer(TransferFunds(transfer_id, a, b, amount, pending=True, timeout_seconds=timeout))
    assert result["status"] == "pending"
    return transfer_id

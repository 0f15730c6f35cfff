"""System accounts, written without being read: the handle a command moves one through,
appending ``Account`` events to it (the events themselves stay on ``Account``).
"""

from __future__ import annotations

from typing import Any

from ledger.accounts import Account


class SystemAccount:
    """A write-only handle on a system account: the same movements as ``Account``, each
    appended without reading the account (see ``Account.system_event``)."""

    def __init__(self, account_id: str) -> None:
        self.account_id = account_id
        self.events: list[Account.Event] = []

    def _append(self, event_class: type[Account.Event], **fields: Any) -> None:
        self.events.append(Account.system_event(self.account_id, event_class, **fields))

    def require_open(self) -> None:
        """System accounts are always open."""

    def debit(self, transfer_id: str, amount: int, window: str | None = None) -> None:
        self._append(Account.Debited, transfer_id=transfer_id, amount=amount)

    def credit(self, transfer_id: str, amount: int) -> None:
        self._append(Account.Credited, transfer_id=transfer_id, amount=amount)

    def add_pending_debit(self, transfer_id: str, amount: int, window: str | None = None) -> None:
        self._append(Account.DebitPending, transfer_id=transfer_id, amount=amount)

    def add_pending_credit(self, transfer_id: str, amount: int) -> None:
        self._append(Account.CreditPending, transfer_id=transfer_id, amount=amount)

    def post_pending_debit(self, transfer_id: str, pending_amount: int, amount: int, *, gone: bool = False) -> None:
        self._append(Account.PendingDebitPosted, transfer_id=transfer_id, pending_amount=pending_amount, amount=amount)

    def post_pending_credit(self, transfer_id: str, pending_amount: int, amount: int) -> None:
        self._append(Account.PendingCreditPosted, transfer_id=transfer_id, pending_amount=pending_amount, amount=amount)

    def void_pending_debit(self, transfer_id: str, amount: int, reason: str) -> None:
        self._append(Account.PendingDebitVoided, transfer_id=transfer_id, amount=amount, reason=reason)

    def void_pending_credit(self, transfer_id: str, amount: int, reason: str) -> None:
        self._append(Account.PendingCreditVoided, transfer_id=transfer_id, amount=amount, reason=reason)

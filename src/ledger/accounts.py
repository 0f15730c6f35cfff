"""The Account aggregate: balances and the overdraft rule.

Balances are credit-normal: ``available = posted_credits - posted_debits - pending_debits``.
Validation happens in the public methods; the ``@event`` bodies only assign, because
they run again on every replay.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from ledger.errors import AccountNotOpen, InsufficientFunds
from ledger.ids import account_uuid
from ledger.money import Asset


class Account(Aggregate):
    class Opened(Aggregate.Created):
        account_id: str
        asset: str
        overdraft_limit: int
        system: bool
        metadata: dict[str, Any]

    class Debited(Aggregate.Event):
        transfer_id: str
        amount: int

    class Credited(Aggregate.Event):
        transfer_id: str
        amount: int

    @staticmethod
    def create_id(account_id: str) -> UUID:
        return account_uuid(account_id)

    @event(Opened)
    def __init__(
        self,
        account_id: str,
        asset: str,
        overdraft_limit: int,
        system: bool,
        metadata: dict[str, Any],
    ) -> None:
        self.account_id = account_id
        self.asset = asset
        self.overdraft_limit = overdraft_limit
        self.system = system
        self.metadata = metadata
        self.status = "open"
        self.posted_debits = 0
        self.posted_credits = 0
        self.pending_debits = 0
        self.pending_credits = 0

    @property
    def available(self) -> int:
        return self.posted_credits - self.posted_debits - self.pending_debits

    def debit(self, transfer_id: str, amount: int) -> None:
        self._require_open()
        if not self.system and self.available - amount < -self.overdraft_limit:
            unit = Asset.parse(self.asset)
            raise InsufficientFunds(
                f"account {self.account_id!r} has {unit.format(self.available)} available "
                f"(overdraft limit {unit.format(self.overdraft_limit)}); "
                f"cannot debit {unit.format(amount)}"
            )
        self._debited(transfer_id=transfer_id, amount=amount)

    def credit(self, transfer_id: str, amount: int) -> None:
        self._require_open()
        self._credited(transfer_id=transfer_id, amount=amount)

    def _require_open(self) -> None:
        if self.status != "open":
            raise AccountNotOpen(f"account {self.account_id!r} is {self.status}")

    @event(Debited)
    def _debited(self, transfer_id: str, amount: int) -> None:
        self.posted_debits += amount

    @event(Credited)
    def _credited(self, transfer_id: str, amount: int) -> None:
        self.posted_credits += amount

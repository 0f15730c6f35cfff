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

APPEND_VERSION = 0
"""The version of an event appended to a system account without a version check; the
event store gives it the stream's next version when it is inserted."""


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

    @classmethod
    def system_movement(cls, account_id: str, side: str, transfer_id: str, amount: int) -> Account.Event:
        """A movement on a system account, appended without reading the account.

        System accounts have no limit and no status to check, so nothing about the
        account's current state can make such a movement wrong; not reading it is what
        lets any number of writers share one issuance or fee account without conflicts.
        """
        event_class = cls.Debited if side == "debit" else cls.Credited
        return event_class(  # type: ignore[no-any-return,call-arg]  # fields come from the dataclass transform
            originator_id=cls.create_id(account_id),
            originator_version=APPEND_VERSION,
            timestamp=cls.Event.create_timestamp(),
            transfer_id=transfer_id,
            amount=amount,
        )

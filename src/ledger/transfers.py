"""The Transfer aggregate: the record of one movement, keyed by the client's id.

It exists so that a client id is used once: creating it twice collides on the event
store's key, and a retry can be compared with what was first asked.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from ledger.ids import transfer_uuid


class Transfer(Aggregate):
    class Posted(Aggregate.Created):
        transfer_id: str
        kind: str
        debit_account: str
        credit_account: str
        asset: str
        amount: int
        metadata: dict[str, Any]

    @staticmethod
    def create_id(transfer_id: str) -> UUID:
        return transfer_uuid(transfer_id)

    @event(Posted)
    def __init__(
        self,
        transfer_id: str,
        kind: str,
        debit_account: str,
        credit_account: str,
        asset: str,
        amount: int,
        metadata: dict[str, Any],
    ) -> None:
        self.transfer_id = transfer_id
        self.kind = kind
        self.debit_account = debit_account
        self.credit_account = credit_account
        self.asset = asset
        self.amount = amount
        self.metadata = metadata
        self.status = "posted"

    def same_request(
        self,
        kind: str,
        debit_account: str,
        credit_account: str,
        amount: int,
        metadata: dict[str, Any],
    ) -> bool:
        return (self.kind, self.debit_account, self.credit_account, self.amount, self.metadata) == (
            kind,
            debit_account,
            credit_account,
            amount,
            metadata,
        )

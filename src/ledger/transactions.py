"""The Transaction aggregate: several transfers that apply together or not at all.

Its legs are ordinary transfers saved in the same event-store transaction; this record
exists so the transaction's own id is used once, and a retry can be recognised by the
fingerprint of what was asked.
"""

from __future__ import annotations

from uuid import UUID

from eventsourcing.domain import Aggregate, event

from ledger.ids import transaction_uuid

MAX_LEGS = 100


class Transaction(Aggregate):
    class Created(Aggregate.Created):
        transaction_id: str
        transfer_ids: list[str]
        fingerprint: str

    @staticmethod
    def create_id(transaction_id: str) -> UUID:
        return transaction_uuid(transaction_id)

    @event(Created)
    def __init__(self, transaction_id: str, transfer_ids: list[str], fingerprint: str) -> None:
        self.transaction_id = transaction_id
        self.transfer_ids = transfer_ids
        self.fingerprint = fingerprint

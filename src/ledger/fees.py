"""Fee rules: what a transfer costs, and who pays it.

A rule belongs to an asset and an operation ("transfer", later "payout"). The fee is a
fixed part plus basis points of the amount (rounded half up), kept within a minimum and
an optional maximum. The sender pays it on top ("sender", PRE), or it is deducted from
what the recipient gets ("recipient", POST). It is credited to the asset's system fee
account, in the same atomic write as the transfer.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from ledger.errors import InvalidRequest
from ledger.ids import fee_rule_uuid

OPERATIONS = ("transfer", "payout")
PAYERS = ("sender", "recipient")
MAX_BASIS_POINTS = 10_000


@dataclass(frozen=True)
class FeeTerms:
    basis_points: int
    fixed: int
    minimum: int
    maximum: int | None
    payer: str
    active: bool = True

    def __post_init__(self) -> None:
        if not 0 <= self.basis_points <= MAX_BASIS_POINTS:
            raise InvalidRequest(f"basis_points must be from 0 to {MAX_BASIS_POINTS}")
        if self.payer not in PAYERS:
            raise InvalidRequest(f"payer must be one of {', '.join(PAYERS)}")
        if self.maximum is not None and self.maximum < self.minimum:
            raise InvalidRequest("maximum must not be below minimum")

    def fee(self, amount: int) -> int:
        """The fee on ``amount``; it never decreases as the amount grows."""
        if not self.active:
            return 0
        fee = max(self.fixed + (amount * self.basis_points + MAX_BASIS_POINTS // 2) // MAX_BASIS_POINTS, self.minimum)
        return fee if self.maximum is None else min(fee, self.maximum)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class FeeRule(Aggregate):
    class Created(Aggregate.Created):
        asset: str
        operation: str
        terms: dict[str, Any]

    class Changed(Aggregate.Event):
        terms: dict[str, Any]

    @staticmethod
    def create_id(asset: str, operation: str) -> UUID:
        return fee_rule_uuid(asset, operation)

    @event(Created)
    def __init__(self, asset: str, operation: str, terms: dict[str, Any]) -> None:
        self.asset = asset
        self.operation = operation
        self.terms = FeeTerms(**terms)

    def change(self, terms: FeeTerms) -> bool:
        if terms == self.terms:
            return False
        self._changed(terms=terms.as_dict())
        return True

    @event(Changed)
    def _changed(self, terms: dict[str, Any]) -> None:
        self.terms = FeeTerms(**terms)

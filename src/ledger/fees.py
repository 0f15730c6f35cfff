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

from ledger.errors import FeeExceedsAmount, InvalidRequest
from ledger.ids import fee_rule_uuid
from ledger.money import Asset

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


def charge(amount: int, terms: FeeTerms | None, asset: str) -> tuple[int, int]:
    """What a transfer of ``amount`` moves and what it costs: ``(net, fee)``.

    The sender pays on top, so the transfer moves the whole amount; a fee the recipient
    pays comes out of what it gets. A fee that leaves the recipient nothing is refused
    (``FeeExceedsAmount``) rather than recorded as a transfer of zero."""
    fee = terms.fee(amount) if terms else 0
    net = amount - fee if terms and terms.payer == "recipient" else amount
    if net <= 0:
        unit = Asset.parse(asset)
        raise FeeExceedsAmount(f"the fee of {unit.format(fee)} leaves nothing of {unit.format(amount)}")
    return net, fee


def charge_on_post(gross: int, terms: FeeTerms, asset: str) -> tuple[int, int]:
    """Posting ``gross`` of a pending transfer with a fee: ``(net, fee)``, the fee
    recomputed on what is posted (not on what was pending), so a partial post pays the
    fee a transfer of that size would.

    A fee the recipient pays comes out of the gross and may take all of it (then only the
    fee leg moves money), never more."""
    fee = terms.fee(gross)
    if terms.payer != "recipient":
        return gross, fee
    net = gross - fee
    if net < 0:
        unit = Asset.parse(asset)
        raise FeeExceedsAmount(f"the fee of {unit.format(fee)} is more than {unit.format(gross)}")
    return net, fee


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

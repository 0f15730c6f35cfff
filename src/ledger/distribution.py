"""The distribution account's on-chain balance of an asset, as the chain worker judges it.

It is low when it cannot pay what the payouts in flight need plus the floor the operator
keeps: the signal to top it up before payouts start failing on chain (``op_underfunded``).
Like an account's monitor (``ledger.monitors``), only a crossing is recorded, once: the
stream starts at the first time it goes low, then alternates between recovered and low
(``Crossed``).
"""

from __future__ import annotations

from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event

from ledger.ids import NAMESPACE


def is_low(balance: int, needed: int, floor: int) -> bool:
    return balance < needed + floor


class DistributionBalance(Aggregate):
    """Amounts in the ledger asset's minor units (stroops: payout assets have scale 7)."""

    class WentLow(Aggregate.Created):
        asset: str
        distribution: str  # the account's Stellar address
        balance: int
        needed: int
        floor: int

    class Crossed(Aggregate.Event):
        """Low again, or ``low`` False: recovered."""

        balance: int
        needed: int
        floor: int
        low: bool

    @staticmethod
    def create_id(distribution: str, asset: str) -> UUID:
        return uuid5(NAMESPACE, f"distribution-balance:{distribution}:{asset}")

    @event(WentLow)
    def __init__(self, asset: str, distribution: str, balance: int, needed: int, floor: int) -> None:
        self.asset = asset
        self.distribution = distribution
        self.low = True

    def judge(self, balance: int, needed: int, floor: int) -> bool:
        """Record a crossing, if this is one; returns whether it was."""
        low = is_low(balance, needed, floor)
        if low == self.low:
            return False
        self._crossed(balance=balance, needed=needed, floor=floor, low=low)
        return True

    @event(Crossed)
    def _crossed(self, balance: int, needed: int, floor: int, low: bool) -> None:
        self.low = low

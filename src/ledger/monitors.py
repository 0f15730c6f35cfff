"""Balance monitors: a threshold on one of an account's balances.

The account watches its own monitors (``Account.watch``): a movement that takes a balance
across a threshold records the crossing in the same write as the movement. So a crossing
is recorded once, never per movement, never lost to a crash between the two, and never
again on a replay (replaying applies the recorded crossing; it does not look again).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class When(StrEnum):
    """Which side of its threshold a monitor watches for (strictly)."""

    BELOW = "below"
    ABOVE = "above"


class WatchedBalance(StrEnum):
    AVAILABLE = "available"
    POSTED = "posted"


BELOW, ABOVE = When
AVAILABLE, POSTED = WatchedBalance
WHENS = tuple(when.value for when in When)  # plain strings: the API's Literal types are made of them
# An account watches at most this many: every movement of it checks them all, and a
# command records at most one crossing per monitor of each account it moves.
MAX_MONITORS = 10
BALANCES = tuple(balance.value for balance in WatchedBalance)


@dataclass(frozen=True)
class Monitor:
    """``when`` ``amount``: strictly below or strictly above it, in minor units."""

    id: str
    balance: str  # AVAILABLE | POSTED
    when: str  # BELOW | ABOVE
    amount: int

    def holds(self, value: int) -> bool:
        return value < self.amount if self.when == BELOW else value > self.amount

    def fields(self) -> dict[str, str | int]:
        """What a monitor's events carry, so a subscriber needs no state to read one."""
        return {"monitor_id": self.id, "balance": self.balance, "when": self.when, "amount": self.amount}

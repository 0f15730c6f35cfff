"""Balance monitors: a threshold on one of an account's balances.

The account watches its own monitors (``Account.watch``): a movement that takes a balance
across a threshold records the crossing in the same write as the movement. So a crossing
is recorded once, never per movement, never lost to a crash between the two, and never
again on a replay (replaying applies the recorded crossing; it does not look again).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from ledger.errors import MonitorNotFound, TooManyMonitors


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


class Monitored:
    """The monitor commands of ``Account``, a base of it: set, remove, and the watch after
    each command. The events they record are ``Account``'s (``ledger.accounts``)."""

    account_id: str
    monitors: dict[str, Monitor]
    triggered_monitors: frozenset[str]
    available: int
    posted_debits: int
    posted_credits: int
    pending_events: Any
    _require_not_closed: Any
    _monitor_set: Any
    _monitor_removed: Any
    _monitor_crossed: Any

    def set_monitor(self, monitor: Monitor) -> bool:
        """Returns False when the account has that monitor already. A new or changed
        monitor starts clear and is triggered at once if the balance is already past it:
        its subscribers hear of a threshold the account is beyond when it is set."""
        self._require_not_closed()
        if self.monitors.get(monitor.id) == monitor:
            return False
        if monitor.id not in self.monitors and len(self.monitors) >= MAX_MONITORS:
            raise TooManyMonitors(f"account {self.account_id!r} has {MAX_MONITORS} monitors, the most it may have")
        self._monitor_set(**monitor.fields())
        self.watch()
        return True

    def remove_monitor(self, monitor_id: str) -> Monitor:
        """The monitor removed."""
        monitor = self.monitors.get(monitor_id)
        if monitor is None:
            raise MonitorNotFound(f"account {self.account_id!r} has no monitor {monitor_id!r}")
        self._monitor_removed(monitor_id=monitor_id)
        return monitor

    def watch(self) -> None:
        """Record each crossing of a threshold the command's changes made, once they are
        all made (``Writer.save``): a balance that ends where it started (a transaction
        out and back, a transfer and its fee) crossed nothing. The crossing is put down to
        the command's first movement of the account."""
        if not self.monitors:
            return
        from ledger.accounts import MOVEMENTS  # below this module: it builds Account on Monitored

        moved = (e for e in self.pending_events if type(e) in MOVEMENTS)
        transfer_id: str | None = next((e.transfer_id for e in moved), None)  # type: ignore[attr-defined]
        for monitor in self.monitors.values():
            value = self.available if monitor.balance == AVAILABLE else self.posted_credits - self.posted_debits
            triggered = monitor.holds(value)
            if triggered != (monitor.id in self.triggered_monitors):
                self._monitor_crossed(**monitor.fields(), value=value, transfer_id=transfer_id, triggered=triggered)

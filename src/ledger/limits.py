"""An account's daily and monthly outgoing limits: the check a debit makes against them and
the counting of what it sent in the UTC day and month, kept out of ``ledger.accounts``.
"""

from __future__ import annotations

from ledger.errors import LimitExceeded
from ledger.money import Asset


class OutgoingLimits:
    """The outgoing limits of ``Account``, a base of it; its events set and count them."""

    account_id: str
    asset: str
    daily_limit: int | None
    monthly_limit: int | None
    window_day: str | None
    spent_day: int
    spent_month: int

    def _forward(self, window: str | None) -> str | None:
        """Windows only move forward: a writer whose clock lags another's counts toward the
        later day, so the counters can never be reset by going back and forth."""
        if window is None or self.window_day is None:
            return window
        return max(window, self.window_day)

    def _require_within_limits(self, amount: int, window: str | None) -> None:
        if window is None:
            return
        spent_day = self.spent_day if window == self.window_day else 0
        spent_month = self.spent_month if window[:7] == (self.window_day or "")[:7] else 0
        unit = Asset.parse(self.asset)
        for name, limit, spent in (
            ("daily", self.daily_limit, spent_day),
            ("monthly", self.monthly_limit, spent_month),
        ):
            if limit is not None and spent + amount > limit:
                raise LimitExceeded(
                    f"account {self.account_id!r} has sent {unit.format(spent)} of its {name} limit of "
                    f"{unit.format(limit)} (UTC); cannot send {unit.format(amount)} more"
                )

    def _count(self, amount: int, window: str | None) -> None:
        if window is None:
            return
        if window[:7] != (self.window_day or "")[:7]:
            self.spent_month = 0
        if window != self.window_day:
            self.spent_day = 0
        self.window_day = window
        self.spent_day += amount
        self.spent_month += amount

"""An account's policy and lifecycle: its overdraft limit, its outgoing limits, freezing and
closing. The commands only; the events they record are ``Account``'s (``ledger.accounts``).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from ledger.errors import AccountNotEmpty, OverdraftInUse
from ledger.money import Asset


class AccountStatus(StrEnum):
    OPEN = "open"
    FROZEN = "frozen"  # neither sends nor receives; its pending transfers can still be voided
    CLOSED = "closed"  # for good


OPEN, FROZEN, CLOSED = AccountStatus


class AccountPolicy:
    """The policy and lifecycle commands of ``Account``, a base of it."""

    account_id: str
    asset: str
    status: str
    overdraft_limit: int
    daily_limit: int | None
    monthly_limit: int | None
    posted_debits: int
    posted_credits: int
    pending_debits: int
    pending_credits: int
    available: int
    _require_not_closed: Any
    _overdraft_limit_changed: Any
    _limits_changed: Any
    _frozen: Any
    _unfrozen: Any
    _closed: Any

    def change_overdraft_limit(self, overdraft_limit: int) -> bool:
        """Returns False when the limit is already that (nothing to record).

        A limit the account is already beyond is refused: no account is ever below its limit.
        """
        self._require_not_closed()
        if overdraft_limit == self.overdraft_limit:
            return False
        if self.available < -overdraft_limit:
            unit = Asset.parse(self.asset)
            raise OverdraftInUse(
                f"account {self.account_id!r} has {unit.format(self.available)} available; "
                f"an overdraft limit of {unit.format(overdraft_limit)} would put it below its limit"
            )
        self._overdraft_limit_changed(overdraft_limit=overdraft_limit)
        return True

    def change_limits(self, daily_limit: int | None, monthly_limit: int | None) -> bool:
        self._require_not_closed()
        if (daily_limit, monthly_limit) == (self.daily_limit, self.monthly_limit):
            return False
        self._limits_changed(daily_limit=daily_limit, monthly_limit=monthly_limit)
        return True

    def freeze(self) -> bool:
        """A frozen account can neither send nor receive; pending transfers on it can still be voided."""
        self._require_not_closed()
        if self.status == FROZEN:
            return False
        self._frozen()
        return True

    def unfreeze(self) -> bool:
        self._require_not_closed()
        if self.status == OPEN:
            return False
        self._unfrozen()
        return True

    def close(self) -> bool:
        """Only an empty account with nothing in flight can close (swpt's safe deletion)."""
        if self.status == CLOSED:
            return False
        reasons = []
        if self.posted_credits != self.posted_debits:
            reasons.append(f"its balance is {Asset.parse(self.asset).format(self.posted_credits - self.posted_debits)}")
        if self.pending_debits or self.pending_credits:
            reasons.append("it has pending transfers")
        if reasons:
            raise AccountNotEmpty(f"account {self.account_id!r} cannot close: {' and '.join(reasons)}")
        self._closed()
        return True

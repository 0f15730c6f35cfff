"""The Account aggregate: balances and the overdraft rule, and every event an account records.

Balances are credit-normal: ``available = posted_credits - posted_debits - pending_debits``.
Validation happens in the public methods; the ``@event`` bodies only assign, because
they run again on every replay. The other commands are in bases of ``Account``, by
concern: ``ledger.account_policy`` (overdraft limit, freeze, close), ``ledger.limits``
(outgoing limits) and ``ledger.monitors`` (balance monitors). The events stay here:
stored events are read back by their topics, ``ledger.accounts:Account.<Name>``.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from ledger.account_policy import CLOSED, FROZEN, OPEN, AccountPolicy
from ledger.errors import (
    AccountNotOpen,
    InsufficientFunds,
)
from ledger.ids import account_uuid
from ledger.limits import OutgoingLimits
from ledger.money import Asset
from ledger.monitors import Monitor, Monitored

Balance = dict[str, int]
"""An account's four totals by name (``BALANCE_FIELDS``), in minor units."""
BALANCE_FIELDS = ("posted_debits", "posted_credits", "pending_debits", "pending_credits")

APPEND_VERSION = 0
"""The version of an event appended to a system account without a version check; the
event store gives it the stream's next version when it is inserted."""


class Account(AccountPolicy, Monitored, OutgoingLimits, Aggregate):
    class Opened(Aggregate.Created):
        account_id: str
        asset: str
        overdraft_limit: int
        system: bool
        metadata: dict[str, Any]

    class Debited(Aggregate.Event):
        transfer_id: str
        amount: int
        window: str | None = None  # the UTC day it counts toward the outgoing limits, if it does
        balance_after: Balance | None = None  # see Account._after

    class Credited(Aggregate.Event):
        transfer_id: str
        amount: int
        balance_after: Balance | None = None  # see Account._after

    class DebitPending(Aggregate.Event):
        transfer_id: str
        amount: int
        window: str | None = None
        balance_after: Balance | None = None  # see Account._after

    class CreditPending(Aggregate.Event):
        transfer_id: str
        amount: int
        balance_after: Balance | None = None  # see Account._after

    class PendingDebitPosted(Aggregate.Event):
        transfer_id: str
        pending_amount: int
        amount: int
        balance_after: Balance | None = None  # see Account._after

    class PendingCreditPosted(Aggregate.Event):
        transfer_id: str
        pending_amount: int
        amount: int
        balance_after: Balance | None = None  # see Account._after

    class PendingDebitVoided(Aggregate.Event):
        transfer_id: str
        amount: int
        reason: str
        balance_after: Balance | None = None  # see Account._after

    class PendingCreditVoided(Aggregate.Event):
        transfer_id: str
        amount: int
        reason: str
        balance_after: Balance | None = None  # see Account._after

    class OverdraftLimitChanged(Aggregate.Event):
        overdraft_limit: int

    class LimitsChanged(Aggregate.Event):
        daily_limit: int | None
        monthly_limit: int | None

    class Frozen(Aggregate.Event):
        pass

    class Unfrozen(Aggregate.Event):
        pass

    class Closed(Aggregate.Event):
        pass

    class MonitorSet(Aggregate.Event):
        monitor_id: str
        balance: str
        when: str
        amount: int

    class MonitorRemoved(Aggregate.Event):
        monitor_id: str

    class MonitorCrossed(Aggregate.Event):
        """The movement ``transfer_id`` (None: the monitor's setting) took the balance past
        the threshold (``triggered``) or back; ``value`` is the balance it left."""

        monitor_id: str
        balance: str
        when: str
        amount: int
        value: int
        transfer_id: str | None
        triggered: bool

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
        self.opened_with = (asset, overdraft_limit, metadata)  # what a retried open is compared with
        self.overdraft_limit = overdraft_limit
        self.system = system
        self.metadata = metadata
        self.status = OPEN
        self.posted_debits = 0
        self.posted_credits = 0
        self.pending_debits = 0
        self.pending_credits = 0
        self.daily_limit: int | None = None
        self.monthly_limit: int | None = None
        self.window_day: str | None = None  # the UTC day of the last counted debit
        self.spent_day = 0
        self.spent_month = 0
        self.monitors: dict[str, Monitor] = {}
        self.triggered_monitors: frozenset[str] = frozenset()

    @property
    def available(self) -> int:
        return self.posted_credits - self.posted_debits - self.pending_debits

    @property
    def balance(self) -> Balance:
        """The four totals, as a movement event records them after it (``balance_after``)."""
        return {field: getattr(self, field) for field in BALANCE_FIELDS}

    def _after(
        self, *, debits: int = 0, credits: int = 0, pending_debits: int = 0, pending_credits: int = 0
    ) -> Balance | None:
        """The balance a movement leaves, for its event to carry: a subscriber then knows an
        account's balance from its latest movement without replaying the stream, and an
        auditor can check every one against the replay. None on system accounts, whose
        movements are mostly appended without reading them (``system_event``)."""
        if self.system:
            return None
        return {
            "posted_debits": self.posted_debits + debits,
            "posted_credits": self.posted_credits + credits,
            "pending_debits": self.pending_debits + pending_debits,
            "pending_credits": self.pending_credits + pending_credits,
        }

    def debit(self, transfer_id: str, amount: int, window: str | None = None) -> None:
        """``window`` (a UTC date) makes the debit count toward the daily and monthly
        outgoing limits; compensating debits (reversals) pass none."""
        self.require_open()
        self._require_funds(amount)
        window = self._forward(window)
        self._require_within_limits(amount, window)
        self._debited(transfer_id=transfer_id, amount=amount, window=window, balance_after=self._after(debits=amount))

    def credit(self, transfer_id: str, amount: int) -> None:
        self.require_open()
        self._credited(transfer_id=transfer_id, amount=amount, balance_after=self._after(credits=amount))

    def add_pending_debit(self, transfer_id: str, amount: int, window: str | None = None) -> None:
        """Reserve funds for a pending transfer: they stop being available now, and count
        toward the outgoing limits now (a void does not give them back to the window)."""
        self.require_open()
        self._require_funds(amount)
        window = self._forward(window)
        self._require_within_limits(amount, window)
        after = self._after(pending_debits=amount)
        self._debit_pending(transfer_id=transfer_id, amount=amount, window=window, balance_after=after)

    def add_pending_credit(self, transfer_id: str, amount: int) -> None:
        self.require_open()
        self._credit_pending(transfer_id=transfer_id, amount=amount, balance_after=self._after(pending_credits=amount))

    def post_pending_debit(self, transfer_id: str, pending_amount: int, amount: int, *, gone: bool = False) -> None:
        """Post a pending debit, for its full amount or less; the rest becomes available again.

        ``gone``: the money has already left the ledger (a payout the chain confirmed), so
        the account's status since (frozen) cannot stop the books from saying so."""
        if not gone:
            self.require_open()
        after = self._after(pending_debits=-pending_amount, debits=amount)
        self._pending_debit_posted(
            transfer_id=transfer_id, pending_amount=pending_amount, amount=amount, balance_after=after
        )

    def post_pending_credit(self, transfer_id: str, pending_amount: int, amount: int) -> None:
        self.require_open()
        after = self._after(pending_credits=-pending_amount, credits=amount)
        self._pending_credit_posted(
            transfer_id=transfer_id, pending_amount=pending_amount, amount=amount, balance_after=after
        )

    def void_pending_debit(self, transfer_id: str, amount: int, reason: str) -> None:
        """Void a pending debit. Allowed whatever the account's status: releasing never hurts."""
        after = self._after(pending_debits=-amount)
        self._pending_debit_voided(transfer_id=transfer_id, amount=amount, reason=reason, balance_after=after)

    def void_pending_credit(self, transfer_id: str, amount: int, reason: str) -> None:
        after = self._after(pending_credits=-amount)
        self._pending_credit_voided(transfer_id=transfer_id, amount=amount, reason=reason, balance_after=after)

    @event(MonitorSet)
    def _monitor_set(self, monitor_id: str, balance: str, when: str, amount: int) -> None:
        # Replaced, never changed in place: commands work on shallow copies of aggregates.
        self.monitors = {**self.monitors, monitor_id: Monitor(monitor_id, balance, when, amount)}
        self.triggered_monitors = self.triggered_monitors - {monitor_id}

    @event(MonitorRemoved)
    def _monitor_removed(self, monitor_id: str) -> None:
        self.monitors = {key: monitor for key, monitor in self.monitors.items() if key != monitor_id}
        self.triggered_monitors = self.triggered_monitors - {monitor_id}

    @event(MonitorCrossed)
    def _monitor_crossed(
        self,
        monitor_id: str,
        balance: str,
        when: str,
        amount: int,
        value: int,
        transfer_id: str | None,
        triggered: bool,
    ) -> None:
        if triggered:
            self.triggered_monitors = self.triggered_monitors | {monitor_id}
        else:
            self.triggered_monitors = self.triggered_monitors - {monitor_id}

    def _require_not_closed(self) -> None:
        if self.status == CLOSED:
            raise AccountNotOpen(f"account {self.account_id!r} is closed")

    def require_open(self) -> None:
        if self.status != OPEN:
            raise AccountNotOpen(f"account {self.account_id!r} is {self.status}")

    def _require_funds(self, amount: int) -> None:
        if not self.system and self.available - amount < -self.overdraft_limit:
            unit = Asset.parse(self.asset)
            raise InsufficientFunds(
                f"account {self.account_id!r} has {unit.format(self.available)} available "
                f"(overdraft limit {unit.format(self.overdraft_limit)}); "
                f"cannot debit {unit.format(amount)}"
            )

    @event(OverdraftLimitChanged)
    def _overdraft_limit_changed(self, overdraft_limit: int) -> None:
        self.overdraft_limit = overdraft_limit

    @event(Frozen)
    def _frozen(self) -> None:
        self.status = FROZEN

    @event(Unfrozen)
    def _unfrozen(self) -> None:
        self.status = OPEN

    @event(Closed)
    def _closed(self) -> None:
        self.status = CLOSED

    @event(LimitsChanged)
    def _limits_changed(self, daily_limit: int | None, monthly_limit: int | None) -> None:
        self.daily_limit = daily_limit
        self.monthly_limit = monthly_limit

    # The events' ``balance_after`` is for readers who do not replay (see ``_after``);
    # replaying never reads it: each body below computes the balance from the amounts.
    # It defaults to None: events stored before it existed are replayed without it.

    @event(Debited)
    def _debited(
        self, transfer_id: str, amount: int, window: str | None = None, balance_after: Balance | None = None
    ) -> None:
        self.posted_debits += amount
        self._count(amount, window)

    @event(Credited)
    def _credited(self, transfer_id: str, amount: int, balance_after: Balance | None = None) -> None:
        self.posted_credits += amount

    @event(DebitPending)
    def _debit_pending(
        self, transfer_id: str, amount: int, window: str | None = None, balance_after: Balance | None = None
    ) -> None:
        self.pending_debits += amount
        self._count(amount, window)

    @event(CreditPending)
    def _credit_pending(self, transfer_id: str, amount: int, balance_after: Balance | None = None) -> None:
        self.pending_credits += amount

    @event(PendingDebitPosted)
    def _pending_debit_posted(
        self, transfer_id: str, pending_amount: int, amount: int, balance_after: Balance | None = None
    ) -> None:
        self.pending_debits -= pending_amount
        self.posted_debits += amount

    @event(PendingCreditPosted)
    def _pending_credit_posted(
        self, transfer_id: str, pending_amount: int, amount: int, balance_after: Balance | None = None
    ) -> None:
        self.pending_credits -= pending_amount
        self.posted_credits += amount

    @event(PendingDebitVoided)
    def _pending_debit_voided(
        self, transfer_id: str, amount: int, reason: str, balance_after: Balance | None = None
    ) -> None:
        self.pending_debits -= amount

    @event(PendingCreditVoided)
    def _pending_credit_voided(
        self, transfer_id: str, amount: int, reason: str, balance_after: Balance | None = None
    ) -> None:
        self.pending_credits -= amount

    @classmethod
    def system_event(cls, account_id: str, event_class: type[Account.Event], **fields: Any) -> Account.Event:
        """An event on a system account, appended without reading the account.

        System accounts have no limit and no status to check, so nothing about the
        account's current state can make such a movement wrong; not reading it is what
        lets any number of writers share one issuance or fee account without conflicts.
        """
        return event_class(  # type: ignore[call-arg]  # fields come from the dataclass transform
            originator_id=cls.create_id(account_id),
            originator_version=APPEND_VERSION,
            timestamp=cls.Event.create_timestamp(),
            **fields,
        )


# How each movement changes the four balances: (field, sign, the event's amount field).
# The one definition: the projector and the trial balance apply it to messages
# (``contracts.balances``); tests/unit/test_accounts.py holds the event bodies to it.
MOVEMENTS: dict[type, tuple[tuple[str, int, str], ...]] = {
    Account.Debited: (("posted_debits", 1, "amount"),),
    Account.Credited: (("posted_credits", 1, "amount"),),
    Account.DebitPending: (("pending_debits", 1, "amount"),),
    Account.CreditPending: (("pending_credits", 1, "amount"),),
    Account.PendingDebitPosted: (("pending_debits", -1, "pending_amount"), ("posted_debits", 1, "amount")),
    Account.PendingCreditPosted: (("pending_credits", -1, "pending_amount"), ("posted_credits", 1, "amount")),
    Account.PendingDebitVoided: (("pending_debits", -1, "amount"),),
    Account.PendingCreditVoided: (("pending_credits", -1, "amount"),),
}

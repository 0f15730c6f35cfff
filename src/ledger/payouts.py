"""The Payout aggregate: money leaving the ledger for a Stellar account.

A payout holds the amount (a pending transfer to the asset's clearing account) until the
chain worker knows the outcome on chain: confirmed posts it, failed voids it. The
aggregate keeps the outcome to one: a payout confirmed cannot fail afterwards, nor the
other way round, whatever order the worker's retries arrive in.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from enum import StrEnum
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from ledger.accounts import Account
from ledger.errors import PayoutResolved
from ledger.ids import payout_uuid
from ledger.system_accounts import SystemAccount
from ledger.transfers import VOIDED, Transfer


class PayoutStatus(StrEnum):
    PENDING = "pending"
    SUBMITTED = "submitted"
    CONFIRMED = "confirmed"
    FAILED = "failed"


PENDING, SUBMITTED, CONFIRMED, FAILED = PayoutStatus


# A Stellar amount is a signed 64-bit count of stroops (10^-7), and chain assets have
# scale 7: no payment can carry more minor units than this.
MAX_CHAIN_AMOUNT = 2**63 - 1


class Payout(Aggregate):
    class Requested(Aggregate.Created):
        payout_id: str
        account: str
        asset: str
        amount: int
        destination: str
        memo: str | None
        hold_id: str  # its pending transfer's id; the name is stored, answered and published

    class Attempted(Aggregate.Event):
        attempt: int
        tx_hash: str
        error: str | None

    class Confirmed(Aggregate.Event):
        tx_hash: str
        ledger: int

    class Failed(Aggregate.Event):
        reason: str

    class Stuck(Aggregate.Event):
        reason: str

    class CancelRequested(Aggregate.Event):
        reason: str

    @staticmethod
    def create_id(payout_id: str) -> UUID:
        return payout_uuid(payout_id)

    @event(Requested)
    def __init__(
        self, payout_id: str, account: str, asset: str, amount: int, destination: str, memo: str | None, hold_id: str
    ) -> None:
        self.payout_id = payout_id
        self.account = account
        self.asset = asset
        self.amount = amount
        self.destination = destination
        self.memo = memo
        self.hold_id = hold_id
        self.state = PENDING
        self.attempts = 0
        self.tx_hash: str | None = None
        self.ledger: int | None = None
        self.reason: str | None = None
        self.stuck: str | None = None
        self.cancel_requested: str | None = None  # an operator's reason; the chain worker ends it

    def same_request(self, account: str, amount: int, destination: str, memo: str | None, *, asked: int) -> bool:
        """Whether a request is this payout's: ``asked`` is the amount its request named
        (what the chain pays, plus a fee the recipient pays)."""
        return (self.account, asked, self.destination, self.memo) == (account, amount, destination, memo)

    @property
    def resolved(self) -> bool:
        return self.state in (CONFIRMED, FAILED)

    def note_attempt(self, attempt: int, tx_hash: str, error: str | None) -> bool:
        """Record a submission attempt; False (nothing recorded) for one already known."""
        if self.resolved or attempt <= self.attempts:
            return False
        self._attempted(attempt=attempt, tx_hash=tx_hash, error=error)
        return True

    @event(Attempted)
    def _attempted(self, attempt: int, tx_hash: str, error: str | None) -> None:
        self.attempts = attempt
        self.tx_hash = tx_hash
        self.reason = error
        self.state = SUBMITTED

    def confirm(self, tx_hash: str, ledger: int) -> bool:
        """Mark the payout paid on chain; False if it already was (a retry)."""
        if self.state == CONFIRMED:
            return False
        if self.state == FAILED:
            raise PayoutResolved(f"payout {self.payout_id!r} already failed: {self.reason}")
        self._confirmed(tx_hash=tx_hash, ledger=ledger)
        return True

    @event(Confirmed)
    def _confirmed(self, tx_hash: str, ledger: int) -> None:
        self.state = CONFIRMED
        self.tx_hash = tx_hash
        self.ledger = ledger
        self.reason = None
        self.stuck = None

    def fail(self, reason: str) -> bool:
        """Mark the payout as never paid; False if it already was (a retry)."""
        if self.state == FAILED:
            return False
        if self.state == CONFIRMED:
            raise PayoutResolved(f"payout {self.payout_id!r} was already confirmed in {self.tx_hash}")
        self._failed(reason=reason)
        return True

    @event(Failed)
    def _failed(self, reason: str) -> None:
        self.state = FAILED
        self.reason = reason
        self.stuck = None

    def report_stuck(self, reason: str) -> bool:
        if self.resolved or self.stuck == reason:
            return False
        self._stuck(reason=reason)
        return True

    @event(Stuck)
    def _stuck(self, reason: str) -> None:
        self.stuck = reason

    def request_cancel(self, reason: str) -> bool:
        """An operator asks for the payout to end unpaid; False if that was asked already.
        Only the chain worker ends it: it fails the payout once the chain shows that none
        of its envelopes applied or still can, and confirms it if one did."""
        if self.resolved:
            raise PayoutResolved(f"payout {self.payout_id!r} is already {self.state}")
        if self.cancel_requested is not None:
            return False
        self._cancel_requested(reason=reason)
        return True

    @event(CancelRequested)
    def _cancel_requested(self, reason: str) -> None:
        self.cancel_requested = reason


def post_or_void(
    payout: Payout, legs: list[Transfer], side: Callable[[str], Account | SystemAccount], now: datetime
) -> None:
    """Resolve a payout's pending transfer (and its fee leg, if any) the way its outcome
    on chain says, on each leg and on both of its sides (``side`` gives the account
    object for an id): confirmed posts the legs in full (the money has left the ledger,
    the fee is earned), failed voids them (the money, fee included, is back on the
    account)."""
    for leg in legs:
        pending_amount = leg.pending_amount
        debit, credit = side(leg.debit_account), side(leg.credit_account)
        if payout.state == CONFIRMED:  # whatever happened to the account since: the money is gone
            posted = leg.post(None, now)
            debit.post_pending_debit(leg.transfer_id, pending_amount, posted, gone=True)
            credit.post_pending_credit(leg.transfer_id, pending_amount, posted)
        elif payout.state == FAILED:
            leg.void(now)
            debit.void_pending_debit(leg.transfer_id, pending_amount, VOIDED)
            credit.void_pending_credit(leg.transfer_id, pending_amount, VOIDED)
        else:
            raise ValueError(
                f"payout {payout.payout_id!r} is {payout.state}; only a resolved payout posts or voids its transfer"
            )

"""The Transfer aggregate: the record of one movement, keyed by the client's id.

It exists so that a client id is used once (creating it twice collides on the event
store's key, and a retry can be compared with what was first asked), and so that a
pending transfer resolves at most once: posting, voiding and expiring all append to
this one stream, and the event store's version check lets only one of them win.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from ledger.errors import ExceedsPending, ExceedsReversible, TransferExpired, TransferNotPending, TransferNotPosted
from ledger.fees import FeeTerms, charge_on_post
from ledger.ids import transfer_uuid
from ledger.money import Asset


class TransferStatus(StrEnum):
    POSTED = "posted"
    PENDING = "pending"  # holds its amount: posted (in full or for less), voided or expired later, once
    VOIDED = "voided"
    EXPIRED = "expired"


POSTED, PENDING, VOIDED, EXPIRED = TransferStatus


class Transfer(Aggregate):
    class Created(Aggregate.Created):
        transfer_id: str
        kind: str
        debit_account: str
        credit_account: str
        asset: str
        amount: int
        metadata: dict[str, Any]
        pending: bool
        expires_at: datetime | None
        timeout_seconds: int | None
        transaction_id: str | None
        reverses: str | None
        fee: int
        fee_payer: str | None
        fee_terms: dict[str, Any] | None
        fee_for: str | None

    class PendingPosted(Aggregate.Event):
        amount: int

    class Voided(Aggregate.Event):
        reason: str  # "voided" or "expired"

    class Reversed(Aggregate.Event):
        reversal_id: str
        amount: int

    @staticmethod
    def create_id(transfer_id: str) -> UUID:
        return transfer_uuid(transfer_id)

    @event(Created)
    def __init__(
        self,
        transfer_id: str,
        kind: str,
        debit_account: str,
        credit_account: str,
        asset: str,
        amount: int,
        metadata: dict[str, Any],
        pending: bool = False,
        expires_at: datetime | None = None,
        timeout_seconds: int | None = None,
        transaction_id: str | None = None,
        reverses: str | None = None,
        fee: int = 0,
        fee_payer: str | None = None,
        fee_terms: dict[str, Any] | None = None,
        fee_for: str | None = None,
    ) -> None:
        self.transfer_id = transfer_id
        self.transaction_id = transaction_id
        self.reverses = reverses
        self.fee = fee  # charged when created (a pending transfer's fee may be posted for less)
        self.fee_payer = fee_payer
        self.fee_terms = fee_terms
        self.fee_for = fee_for
        self.reversed_amount = 0
        self.kind = kind
        self.debit_account = debit_account
        self.credit_account = credit_account
        self.asset = asset
        self.pending_amount = amount if pending else 0
        self.amount = 0 if pending else amount
        self.metadata = metadata
        self.status = PENDING if pending else POSTED
        self.expires_at = expires_at
        self.timeout_seconds = timeout_seconds

    @property
    def requested_amount(self) -> int:
        """What the client asked to move when it created the transfer (before any fee
        deducted from the recipient's side)."""
        net = self.pending_amount or self.amount
        return net + self.fee if self.fee_payer == "recipient" else net

    def same_request(
        self,
        kind: str,
        debit_account: str,
        credit_account: str,
        amount: int,
        metadata: dict[str, Any],
        *,
        pending: bool = False,
        expires_in: float | None = None,
    ) -> bool:
        mine = (self.kind, self.debit_account, self.credit_account, self.requested_amount, self.metadata)
        if mine != (kind, debit_account, credit_account, amount, metadata):
            return False
        was_pending = self.pending_amount > 0
        return pending == was_pending and self.timeout_seconds == expires_in

    def is_expired(self, now: datetime) -> bool:
        return self.status == PENDING and self.expires_at is not None and now >= self.expires_at

    def post(self, amount: int | None, now: datetime) -> int:
        """Post a pending transfer for its full amount or less; returns the posted amount."""
        self._require_pending("post", now)
        amount = self.pending_amount if amount is None else amount
        if amount > self.pending_amount:
            unit = Asset.parse(self.asset)
            raise ExceedsPending(
                f"transfer {self.transfer_id!r} holds {unit.format(self.pending_amount)}; "
                f"cannot post {unit.format(amount)}"
            )
        self._pending_posted(amount=amount)
        return amount

    def posting(self, gross: int | None) -> tuple[int | None, int | None]:
        """What posting ``gross`` of this pending transfer posts on it and on its fee leg:
        ``(net, fee)``; ``None`` for either posts all that leg holds.

        With a fee, a partial post pays the fee on the posted gross
        (``fees.charge_on_post``), deducted from it when the recipient pays."""
        if gross is None or not self.fee_terms:
            return gross, None
        return charge_on_post(gross, FeeTerms(**self.fee_terms), self.asset)

    def posted_gross(self, fee_leg: Transfer | None) -> int:
        """What the client posted, as it asked: the transfer's posted amount, with the fee
        added back when the recipient paid it (so a retried post compares like with like)."""
        fee = fee_leg.amount if fee_leg is not None and self.fee_payer == "recipient" else 0
        return self.amount + fee

    def check_postable(self, now: datetime) -> None:
        """Raise what ``post`` would about the transfer's state, before any amount is known."""
        self._require_pending("post", now)

    def void(self, now: datetime) -> None:
        self._require_pending("void", now)
        self._voided(reason=VOIDED)

    def expire(self, now: datetime) -> None:
        if not self.is_expired(now):
            raise TransferNotPending(f"transfer {self.transfer_id!r} has not expired")
        self._voided(reason=EXPIRED)

    def reverse(self, reversal_id: str, amount: int | None) -> int:
        """Record a compensating transfer against this one; returns its amount.

        The total reversed never exceeds what was posted; the check and the record are in
        this stream, so concurrent reversals cannot both pass it.
        """
        if self.status != POSTED:
            raise TransferNotPosted(f"transfer {self.transfer_id!r} is {self.status}; only posted transfers reverse")
        remaining = self.amount - self.reversed_amount
        amount = remaining if amount is None else amount
        if amount == 0 or amount > remaining:
            unit = Asset.parse(self.asset)
            raise ExceedsReversible(
                f"transfer {self.transfer_id!r} has {unit.format(remaining)} left to reverse; "
                f"cannot reverse {unit.format(amount)}"
            )
        self._reversed(reversal_id=reversal_id, amount=amount)
        return amount

    def reversed_by(self, reversal_id: str, amount: int | None) -> Transfer:
        """Reverse this transfer (what is left of it, or ``amount``) and return the
        compensating transfer, not yet applied to any account.

        Money goes back the way it came: the original's credit side pays, its debit side
        is credited."""
        reversed_amount = self.reverse(reversal_id, amount)
        return Transfer(
            transfer_id=reversal_id,
            kind="reversal",
            debit_account=self.credit_account,
            credit_account=self.debit_account,
            asset=self.asset,
            amount=reversed_amount,
            metadata={},
            reverses=self.transfer_id,
        )

    def _require_pending(self, action: str, now: datetime) -> None:
        """A pending transfer past its timeout is refused as expired whether or not the
        expirer has voided it yet: the answer must not depend on when a background process
        ran."""
        if self.status == EXPIRED or self.is_expired(now):
            raise TransferExpired(f"transfer {self.transfer_id!r} expired at {self.expires_at}; cannot {action} it")
        if self.status != PENDING:
            raise TransferNotPending(f"transfer {self.transfer_id!r} is {self.status}; cannot {action} it")

    @event(PendingPosted)
    def _pending_posted(self, amount: int) -> None:
        self.amount = amount
        self.status = POSTED

    @event(Voided)
    def _voided(self, reason: str) -> None:
        self.status = reason

    @event(Reversed)
    def _reversed(self, reversal_id: str, amount: int) -> None:
        self.reversed_amount += amount

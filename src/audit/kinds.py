"""How the books' check reads stored events: each event class's topic as a small number
(dispatch is one dict lookup on the row's topic), and what it keeps per account, transfer
and asset as small records with ``__slots__`` (the fold is the hot path: a slot is read
and written as fast as a list item, and by name).
"""

from __future__ import annotations

from dataclasses import dataclass

from eventsourcing.utils import get_topic

from ledger.accounts import Account
from ledger.fees import FeeRule
from ledger.payouts import Payout
from ledger.transactions import Transaction
from ledger.transfers import Transfer

Leg = tuple[str, int, bytes, int, int]  # transfer id, kind, account stream, amount, pending amount released

(
    OPENED,
    DEBITED,
    CREDITED,
    DEBIT_PENDING,
    CREDIT_PENDING,
    PENDING_DEBIT_POSTED,
    PENDING_CREDIT_POSTED,
    PENDING_DEBIT_VOIDED,
    PENDING_CREDIT_VOIDED,
    OVERDRAFT_CHANGED,
    TRANSFER_CREATED,
    TRANSFER_POSTED_LATER,
    TRANSFER_VOIDED,
    NAMED,
) = range(1, 15)
KINDS: dict[bytes, int] = {
    get_topic(cls).encode(): kind
    for cls, kind in (
        (Account.Opened, OPENED),
        (Account.Debited, DEBITED),
        (Account.Credited, CREDITED),
        (Account.DebitPending, DEBIT_PENDING),
        (Account.CreditPending, CREDIT_PENDING),
        (Account.PendingDebitPosted, PENDING_DEBIT_POSTED),
        (Account.PendingCreditPosted, PENDING_CREDIT_POSTED),
        (Account.PendingDebitVoided, PENDING_DEBIT_VOIDED),
        (Account.PendingCreditVoided, PENDING_CREDIT_VOIDED),
        (Account.OverdraftLimitChanged, OVERDRAFT_CHANGED),
        (Transfer.Created, TRANSFER_CREATED),
        (Transfer.PendingPosted, TRANSFER_POSTED_LATER),
        (Transfer.Voided, TRANSFER_VOIDED),
        (Transaction.Created, NAMED),
        (FeeRule.Created, NAMED),
        (Payout.Requested, NAMED),
    )
}
NAME_FIELDS = {"transaction_id": "transaction", "payout_id": "payout", "operation": "fee rule"}
POSTINGS = (PENDING_DEBIT_POSTED, PENDING_CREDIT_POSTED)
LEG_NAMES = {
    DEBITED: "debit of",
    CREDITED: "credit of",
    DEBIT_PENDING: "pending debit of",
    CREDIT_PENDING: "pending credit of",
    PENDING_DEBIT_POSTED: "posted pending debit of",
    PENDING_CREDIT_POSTED: "posted pending credit of",
    PENDING_DEBIT_VOIDED: "voided pending debit of",
    PENDING_CREDIT_VOIDED: "voided pending credit of",
}
POSTED, PENDING, RESOLVED = 0, 1, 2  # a transfer's state


@dataclass(slots=True)
class ReplayedAccount:
    """An account as the replay has it: its four totals in minor units, as its events'
    payloads move them, and what its opening (and any later limit change) says."""

    asset: str
    posted_debits: int
    posted_credits: int
    pending_debits: int
    pending_credits: int
    overdraft_limit: int
    system: bool
    account_id: str
    version: int  # of its last event, whatever the event


@dataclass(slots=True)
class ReplayedTransfer:
    """A transfer as its creation states it, and whether it is still pending."""

    state: int  # POSTED, or PENDING until it is posted or voided: then RESOLVED
    transfer_id: str
    debit: bytes  # the account streams (empty when the account was never opened)
    credit: bytes
    amount: int  # what it moves, or holds while pending


@dataclass(slots=True)
class Nets:
    """An asset's totals over every account, credits minus debits: posted and pending."""

    posted: int = 0
    pending: int = 0

"""How the books' check reads stored events: each event class's topic as a small number
(dispatch is one dict lookup on the row's topic), and an account as a list with named
slots (the fold is the hot path: a list index is the cheapest field access there is).
"""

from __future__ import annotations

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
POSTED, PENDING, RESOLVED = 0, 1, 2
# An account: [asset, posted debits, posted credits, pending debits, pending credits, overdraft limit, system, id, version]
ASSET, PD, PC, QD, QC, LIMIT, SYSTEM, ID, VERSION = range(9)

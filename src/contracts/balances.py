"""How each account message of the event contract changes an account's four balances.

The projector applies it to the read model and the trial balance to an export; written
once here so the two cannot disagree. (The account aggregate and the auditors' verifier
keep their own arithmetic on stored events; see ``audit.verify``.)
"""

from __future__ import annotations

# (field, sign, the data key holding the amount), per message type.
BALANCE_CHANGES: dict[str, list[tuple[str, int, str]]] = {
    "ledger.account.debited.v1": [("posted_debits", 1, "amount")],
    "ledger.account.credited.v1": [("posted_credits", 1, "amount")],
    "ledger.account.debit_pending.v1": [("pending_debits", 1, "amount")],
    "ledger.account.credit_pending.v1": [("pending_credits", 1, "amount")],
    "ledger.account.pending_debit_posted.v1": [
        ("pending_debits", -1, "pending_amount"),
        ("posted_debits", 1, "amount"),
    ],
    "ledger.account.pending_credit_posted.v1": [
        ("pending_credits", -1, "pending_amount"),
        ("posted_credits", 1, "amount"),
    ],
    "ledger.account.pending_debit_voided.v1": [("pending_debits", -1, "amount")],
    "ledger.account.pending_credit_voided.v1": [("pending_credits", -1, "amount")],
}

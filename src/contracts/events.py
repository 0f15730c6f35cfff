"""How stored events travel on Kafka: CloudEvents 1.0 in binary mode.

Attributes go in ``ce_*`` headers, the JSON payload is the message value, and the key
is the subject (the account or transfer id), so one subject's events keep their order
in one partition. Amounts are strings of integer minor units, with the asset beside
them, so they stay exact in every language.

Besides ledger events the topic carries ``ledger.checkpoint.v1`` messages: after the
broker confirmed every event up to position P, the relay writes one to every
partition. A consumer that has read a checkpoint P in every partition has seen every
event up to P; that is how the read model knows what "applied up to N" means.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID, uuid5

from ledger.accounts import BALANCE_FIELDS, CLOSED, FROZEN, OPEN, Account
from ledger.distribution import DistributionBalance
from ledger.fees import FeeRule
from ledger.ids import NAMESPACE
from ledger.payout_runs import PayoutRun, RowChunk
from ledger.payouts import Payout
from ledger.seals import SEAL_SUBJECT, Seal
from ledger.transactions import Transaction
from ledger.transfers import Transfer

SOURCE = "/ledger"
PAYOUT_REQUESTED = "ledger.payout.requested.v1"
PAYOUT_ATTEMPTED = "ledger.payout.attempted.v1"
PAYOUT_CONFIRMED = "ledger.payout.confirmed.v1"
PAYOUT_FAILED = "ledger.payout.failed.v1"
PAYOUT_STUCK = "ledger.payout.stuck.v1"
PAYOUT_CANCEL_REQUESTED = "ledger.payout.cancel_requested.v1"
PAYOUT_RUN_UPLOADED = "ledger.payout_run.uploaded.v1"
PAYOUT_RUN_ROWS_ADDED = "ledger.payout_run.rows_added.v1"
PAYOUT_RUN_COMPLETED = "ledger.payout_run.completed.v1"
PAYOUT_RUN_RETRIED = "ledger.payout_run.retried.v1"
PAYOUT_RUN_ROWS_FAILED = "ledger.payout_run.rows_failed.v1"
# A run's state changes that carry nothing but the run: the event, and the state it leads to.
PAYOUT_RUN_MOVES: dict[type, tuple[str, str]] = {
    PayoutRun.Started: ("ledger.payout_run.started.v1", "started"),
    PayoutRun.Paused: ("ledger.payout_run.paused.v1", "paused"),
    PayoutRun.Resumed: ("ledger.payout_run.resumed.v1", "started"),
    PayoutRun.Cancelled: ("ledger.payout_run.cancelled.v1", "cancelled"),
}
CHECKPOINT = "ledger.checkpoint.v1"
KEY_ID_HEADER = "ce_ledgerkeyid"  # a CloudEvents extension: the key (or service) that asked for the write

MOVEMENT_TYPES: dict[type, str] = {
    Account.Debited: "ledger.account.debited.v1",
    Account.Credited: "ledger.account.credited.v1",
    Account.DebitPending: "ledger.account.debit_pending.v1",
    Account.CreditPending: "ledger.account.credit_pending.v1",
    Account.PendingDebitPosted: "ledger.account.pending_debit_posted.v1",
    Account.PendingCreditPosted: "ledger.account.pending_credit_posted.v1",
    Account.PendingDebitVoided: "ledger.account.pending_debit_voided.v1",
    Account.PendingCreditVoided: "ledger.account.pending_credit_voided.v1",
}
ACCOUNT_OPENED = "ledger.account.opened.v1"
ACCOUNT_POLICY_CHANGED = "ledger.account.overdraft_limit_changed.v1"
ACCOUNT_LIMITS_CHANGED = "ledger.account.limits_changed.v1"
ACCOUNT_STATUS_TYPES: dict[type, tuple[str, str]] = {
    Account.Frozen: ("ledger.account.frozen.v1", FROZEN),
    Account.Unfrozen: ("ledger.account.unfrozen.v1", OPEN),
    Account.Closed: ("ledger.account.closed.v1", CLOSED),
}
MONITOR_SET = "ledger.monitor.set.v1"
MONITOR_REMOVED = "ledger.monitor.removed.v1"
MONITOR_TRIGGERED = "ledger.monitor.triggered.v1"
MONITOR_CLEARED = "ledger.monitor.cleared.v1"
DISTRIBUTION_LOW = "ledger.chain.distribution_low.v1"
DISTRIBUTION_RECOVERED = "ledger.chain.distribution_recovered.v1"
TRANSFER_POSTED = "ledger.transfer.posted.v1"
TRANSFER_PENDING = "ledger.transfer.pending.v1"
TRANSFER_PENDING_POSTED = "ledger.transfer.pending_posted.v1"
TRANSFER_VOIDED = "ledger.transfer.voided.v1"
TRANSFER_REVERSED = "ledger.transfer.reversed.v1"
TRANSACTION_CREATED = "ledger.transaction.created.v1"
FEE_RULE_SET = "ledger.fee_rule.set.v1"
SEAL_RECORDED = "ledger.seal.recorded.v1"


@dataclass(frozen=True)
class Message:
    key: str | None
    value: bytes
    headers: dict[str, str]

    def header_list(self) -> list[tuple[str, str | bytes | None]]:
        return [(name, value.encode()) for name, value in self.headers.items()]


@dataclass(frozen=True)
class LedgerEvent:
    """A ledger event as read back from Kafka."""

    id: str
    type: str
    subject: str
    sequence: int
    position: int
    time: str
    data: dict[str, Any]


def event_id(originator_id: UUID, version: int) -> str:
    """Deterministic, so a republished event keeps its id and consumers can deduplicate."""
    return str(uuid5(NAMESPACE, f"{originator_id}:{version}"))


@dataclass(frozen=True)
class SubjectRef:
    """What later events of a stream do not repeat: its public id and asset."""

    subject: str
    asset: str


def chunk_subject(run_id: str, index: int) -> str:
    """A run's chunk of rows is a stream of its own, so a subject of its own."""
    return f"{run_id}/{index}"


def creation_ref(event: Any) -> SubjectRef:
    if isinstance(event, Account.Opened):
        return SubjectRef(event.account_id, event.asset)
    if isinstance(event, Transfer.Created):
        return SubjectRef(event.transfer_id, event.asset)
    if isinstance(event, Transaction.Created):
        return SubjectRef(event.transaction_id, "")
    if isinstance(event, FeeRule.Created):
        return SubjectRef(f"{event.operation}:{event.asset}", event.asset)
    if isinstance(event, Payout.Requested):
        return SubjectRef(event.payout_id, event.asset)
    if isinstance(event, Seal.Recorded):
        return SubjectRef(SEAL_SUBJECT, "")
    if isinstance(event, PayoutRun.Uploaded):
        return SubjectRef(event.run_id, "")
    if isinstance(event, RowChunk.Created):
        return SubjectRef(chunk_subject(event.run_id, event.index), "")
    if isinstance(event, DistributionBalance.WentLow):
        return SubjectRef(f"{event.distribution}/{event.asset}", event.asset)
    raise TypeError(f"{type(event).__qualname__} does not start a stream")


def _encode(event: Any, ref: SubjectRef | None) -> tuple[str, str, dict[str, Any]]:
    """(type, subject, data) of a domain event."""
    if isinstance(event, Account.Opened):
        return (
            ACCOUNT_OPENED,
            event.account_id,
            {
                "account": event.account_id,
                "asset": event.asset,
                "overdraft_limit": str(event.overdraft_limit),
                "system": event.system,
                "metadata": event.metadata,
            },
        )
    if isinstance(event, Transfer.Created):
        data: dict[str, Any] = {
            "transfer": event.transfer_id,
            "kind": event.kind,
            "debit_account": event.debit_account,
            "credit_account": event.credit_account,
            "asset": event.asset,
            "amount": str(event.amount),
            "metadata": event.metadata,
            "transaction": event.transaction_id,
            "reverses": event.reverses,
            "fee": str(event.fee),
            "fee_payer": event.fee_payer,
            "fee_for": event.fee_for,
        }
        if event.pending:
            data["expires_at"] = event.expires_at.isoformat() if event.expires_at else None
        return (TRANSFER_PENDING if event.pending else TRANSFER_POSTED), event.transfer_id, data
    if isinstance(event, Transaction.Created):
        return (
            TRANSACTION_CREATED,
            event.transaction_id,
            {
                "transaction": event.transaction_id,
                "transfers": event.transfer_ids,
            },
        )
    if isinstance(event, FeeRule.Created):
        subject = f"{event.operation}:{event.asset}"
        return FEE_RULE_SET, subject, {"asset": event.asset, "operation": event.operation, "terms": _terms(event.terms)}
    if isinstance(event, Payout.Requested):
        return (
            PAYOUT_REQUESTED,
            event.payout_id,
            {
                "payout": event.payout_id,
                "account": event.account,
                "asset": event.asset,
                "amount": str(event.amount),
                "destination": event.destination,
                "memo": event.memo,
                "hold": event.hold_id,
            },
        )
    if isinstance(event, Seal.Recorded):
        return (
            SEAL_RECORDED,
            SEAL_SUBJECT,
            {
                "seal": event.originator_version,
                "through_position": event.through_position,
                "streams": event.streams,
                "root": event.root,
            },
        )
    if isinstance(event, PayoutRun.Uploaded):
        data = {"run": event.run_id, "rows": event.rows, "chunks": event.chunks, "totals": event.totals}
        return PAYOUT_RUN_UPLOADED, event.run_id, data
    if isinstance(event, RowChunk.Created):
        rows = [{**row, "amount": str(row["amount"])} for row in event.rows]
        data = {"run": event.run_id, "chunk": event.index, "rows": rows}
        return PAYOUT_RUN_ROWS_ADDED, chunk_subject(event.run_id, event.index), data
    if isinstance(event, DistributionBalance.WentLow):
        return DISTRIBUTION_LOW, f"{event.distribution}/{event.asset}", _judged(event, event.distribution, event.asset)
    if ref is None:
        raise ValueError(f"{type(event).__qualname__} needs its stream's SubjectRef")
    if type(event) in PAYOUT_RUN_MOVES:
        return PAYOUT_RUN_MOVES[type(event)][0], ref.subject, {"run": ref.subject}
    if isinstance(event, PayoutRun.Completed):
        data = {"run": ref.subject, "succeeded": event.succeeded, "failed": event.failed}
        return PAYOUT_RUN_COMPLETED, ref.subject, data
    if isinstance(event, PayoutRun.Retried):
        return PAYOUT_RUN_RETRIED, ref.subject, {"run": ref.subject, "attempt": event.attempt}
    if isinstance(event, PayoutRun.RowsFailed):
        data = {"run": ref.subject, "attempt": event.attempt, "rows": event.rows}
        return PAYOUT_RUN_ROWS_FAILED, ref.subject, data
    if isinstance(event, Payout.Attempted):
        data = {"payout": ref.subject, "attempt": event.attempt, "tx_hash": event.tx_hash, "error": event.error}
        return PAYOUT_ATTEMPTED, ref.subject, data
    if isinstance(event, Payout.Confirmed):
        return PAYOUT_CONFIRMED, ref.subject, {"payout": ref.subject, "tx_hash": event.tx_hash, "ledger": event.ledger}
    if isinstance(event, Payout.Failed):
        return PAYOUT_FAILED, ref.subject, {"payout": ref.subject, "reason": event.reason}
    if isinstance(event, Payout.Stuck):
        return PAYOUT_STUCK, ref.subject, {"payout": ref.subject, "reason": event.reason}
    if isinstance(event, Payout.CancelRequested):
        return PAYOUT_CANCEL_REQUESTED, ref.subject, {"payout": ref.subject, "reason": event.reason}
    if type(event) in MOVEMENT_TYPES:
        data = {"account": ref.subject, "transfer": event.transfer_id, "asset": ref.asset, "amount": str(event.amount)}
        if hasattr(event, "pending_amount"):
            data["pending_amount"] = str(event.pending_amount)
        if hasattr(event, "reason"):
            data["reason"] = event.reason
        if event.balance_after is not None:
            data["balance_after"] = balance_data(event.balance_after)
        return MOVEMENT_TYPES[type(event)], ref.subject, data
    if isinstance(event, Account.OverdraftLimitChanged):
        return (
            ACCOUNT_POLICY_CHANGED,
            ref.subject,
            {
                "account": ref.subject,
                "asset": ref.asset,
                "overdraft_limit": str(event.overdraft_limit),
            },
        )
    if isinstance(event, Account.LimitsChanged):
        return (
            ACCOUNT_LIMITS_CHANGED,
            ref.subject,
            {
                "account": ref.subject,
                "asset": ref.asset,
                "daily_limit": None if event.daily_limit is None else str(event.daily_limit),
                "monthly_limit": None if event.monthly_limit is None else str(event.monthly_limit),
            },
        )
    if isinstance(event, Account.MonitorSet | Account.MonitorCrossed):
        data = {
            "account": ref.subject,
            "asset": ref.asset,
            "monitor": event.monitor_id,
            "balance": event.balance,
            "when": event.when,
            "amount": str(event.amount),
        }
        if isinstance(event, Account.MonitorSet):
            return MONITOR_SET, ref.subject, data
        data.update(value=str(event.value), transfer=event.transfer_id)
        return (MONITOR_TRIGGERED if event.triggered else MONITOR_CLEARED), ref.subject, data
    if isinstance(event, DistributionBalance.Crossed):
        data = _judged(event, ref.subject.partition("/")[0], ref.asset)  # the subject: ADDRESS/ASSET
        return (DISTRIBUTION_LOW if event.low else DISTRIBUTION_RECOVERED), ref.subject, data
    if isinstance(event, Account.MonitorRemoved):
        return MONITOR_REMOVED, ref.subject, {"account": ref.subject, "monitor": event.monitor_id}
    if type(event) in ACCOUNT_STATUS_TYPES:
        ce_type, status = ACCOUNT_STATUS_TYPES[type(event)]
        return ce_type, ref.subject, {"account": ref.subject, "status": status}
    if isinstance(event, FeeRule.Changed):
        asset, operation = ref.asset, ref.subject.split(":", 1)[0]
        return FEE_RULE_SET, ref.subject, {"asset": asset, "operation": operation, "terms": _terms(event.terms)}
    if isinstance(event, Transfer.PendingPosted):
        return (
            TRANSFER_PENDING_POSTED,
            ref.subject,
            {"transfer": ref.subject, "asset": ref.asset, "amount": str(event.amount)},
        )
    if isinstance(event, Transfer.Reversed):
        return (
            TRANSFER_REVERSED,
            ref.subject,
            {
                "transfer": ref.subject,
                "reversal": event.reversal_id,
                "asset": ref.asset,
                "amount": str(event.amount),
            },
        )
    if isinstance(event, Transfer.Voided):
        return TRANSFER_VOIDED, ref.subject, {"transfer": ref.subject, "reason": event.reason}
    raise TypeError(f"no message type for {type(event).__qualname__}")


def _judged(event: Any, distribution: str, asset: str) -> dict[str, Any]:
    return {
        "distribution": distribution,
        "asset": asset,
        "balance": str(event.balance),
        "needed": str(event.needed),
        "floor": str(event.floor),
    }


def balance_data(balance: dict[str, int]) -> dict[str, str]:
    """An account's totals as messages carry them (strings of minor units), with what is
    available, so a subscriber needs no arithmetic of its own."""
    available = balance["posted_credits"] - balance["posted_debits"] - balance["pending_debits"]
    return {**{name: str(balance[name]) for name in BALANCE_FIELDS}, "available": str(available)}


def _terms(terms: dict[str, Any]) -> dict[str, Any]:
    """Fee terms with amounts as strings of minor units, like every amount on the wire."""
    return {k: str(v) if k in ("fixed", "minimum", "maximum") and v is not None else v for k, v in terms.items()}


def to_message(event: Any, position: int, ref: SubjectRef | None = None) -> Message:
    ce_type, subject, data = _encode(event, ref)
    timestamp: datetime = event.timestamp
    headers = {
        "ce_specversion": "1.0",
        "ce_id": event_id(event.originator_id, event.originator_version),
        "ce_source": SOURCE,
        "ce_type": ce_type,
        "ce_subject": subject,
        "ce_time": timestamp.isoformat(),
        "ce_sequence": f"{event.originator_version:020d}",
        "ce_position": str(position),
        "content-type": "application/json",
    }
    key_id = getattr(event, "key_id", None)
    if key_id:
        headers[KEY_ID_HEADER] = key_id  # who asked: an API key id, or "service:NAME"
    return Message(subject, json.dumps(data, separators=(",", ":")).encode(), headers)


def checkpoint_message(position: int, head: int, topic_id: str = "") -> Message:
    """Everything up to ``position`` is on the topic (the incarnation ``topic_id`` of it);
    the event store was at ``head``."""
    return Message(
        None,
        b"{}",
        {
            "ce_specversion": "1.0",
            "ce_id": f"checkpoint-{position}",
            "ce_source": SOURCE,
            "ce_type": CHECKPOINT,
            "ce_position": str(position),
            "ledger_head": str(head),
            "ledger_topic_id": topic_id,
            "content-type": "application/json",
        },
    )


def from_message(headers: dict[str, str], value: bytes | None) -> LedgerEvent:
    return LedgerEvent(
        id=headers["ce_id"],
        type=headers["ce_type"],
        subject=headers["ce_subject"],
        sequence=int(headers["ce_sequence"]),
        position=int(headers["ce_position"]),
        time=headers["ce_time"],
        data=json.loads(value or b"{}"),
    )

"""Commands: what a client asked for, already validated."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ledger.fees import FeeTerms


@dataclass(frozen=True)
class OpenAccount:
    id: str
    asset: str
    overdraft_limit: int = 0
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Deposit:
    id: str
    account: str
    amount: str  # major units; the account's asset decides the scale


@dataclass(frozen=True)
class TransferFunds:
    id: str
    debit_account: str
    credit_account: str
    amount: str  # major units; the accounts' asset decides the scale
    metadata: dict[str, Any] = field(default_factory=dict)
    pending: bool = False
    timeout_seconds: int | None = None


@dataclass(frozen=True)
class PostTransfer:
    id: str
    amount: str | None = None  # None posts the full pending amount


@dataclass(frozen=True)
class VoidTransfer:
    id: str


@dataclass(frozen=True)
class ChangePolicy:
    """New values for any of overdraft_limit, daily_limit, monthly_limit (major units at
    the account's scale; None removes a daily or monthly limit)."""

    account: str
    changes: dict[str, str | None]


@dataclass(frozen=True)
class AccountAction:
    """Freeze, unfreeze or close: a state change that retrying cannot repeat."""

    account: str
    action: str  # "freeze" | "unfreeze" | "close"


@dataclass(frozen=True)
class SetMonitor:
    """A threshold on an account's balance (``ledger.monitors``); the amount as sent, in
    major units at the account's scale."""

    id: str
    account: str
    balance: str  # "available" | "posted"
    when: str  # "below" | "above"
    amount: str


@dataclass(frozen=True)
class RemoveMonitor:
    id: str
    account: str


@dataclass(frozen=True)
class ExecuteTransaction:
    id: str
    transfers: tuple[TransferFunds, ...]


@dataclass(frozen=True)
class TransferBatch:
    """Independent transfers sent together: each stands or fails alone, unlike a transaction."""

    transfers: tuple[TransferFunds, ...]


@dataclass(frozen=True)
class ReverseTransfer:
    id: str  # the reversal's own id
    transfer: str  # the transfer it reverses
    amount: str | None = None  # None reverses all that is left


@dataclass(frozen=True)
class SetFeeRule:
    """Create or change the fee rule of an asset and operation."""

    asset: str
    operation: str
    terms: FeeTerms


@dataclass(frozen=True)
class RequestPayout:
    """Money out to a Stellar account (``destination``, a G... address)."""

    id: str
    account: str
    amount: str  # major units
    destination: str
    memo: str | None = None


@dataclass(frozen=True)
class CancelPayout:
    """An operator's request to end a payout unpaid (one the chain worker reports stuck);
    the worker ends it only once the chain shows that no envelope of it applied or can."""

    id: str
    reason: str


@dataclass(frozen=True)
class ReassignSuspense:
    """Credit a chain deposit that landed in the asset's suspense account (its memo named
    no open account) to the account it was meant for."""

    deposit: str  # the chain deposit's transfer id
    account: str


@dataclass(frozen=True)
class SweepFees:
    """Move what an asset's fee account has collected to a named account."""

    id: str
    asset: str
    account: str
    amount: str | None = None  # major units; None sweeps all that is available


@dataclass(frozen=True)
class RowRequest:
    """One row of a payout run's file, its shape checked (its account and amount are the
    ledger's to check)."""

    id: str
    account: str
    amount: str  # major units
    destination: str
    memo: str | None = None
    number: int = 0  # its place in the file, from 1


@dataclass(frozen=True)
class UploadPayoutRun:
    id: str
    rows: tuple[RowRequest, ...]  # those whose shape is right
    fingerprint: str  # the same file again is answered as the first time
    problems: tuple[dict[str, Any], ...] = ()  # of the other rows: the run is refused


@dataclass(frozen=True)
class PayoutRunAction:
    """Start, pause, resume, cancel or retry a payout run."""

    run: str
    action: str

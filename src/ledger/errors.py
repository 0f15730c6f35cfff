"""The ledger's typed error family.

Every rejection is data with a stable machine-readable ``code``; adapters map the
class to a transport status, the domain never knows about HTTP.
"""

from __future__ import annotations


class LedgerError(Exception):
    code = "ledger_error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra: dict[str, object] = {}  # more members for the problem document (a run's row report)


class InvalidRequest(LedgerError):
    """The request is malformed or fails validation; nothing was attempted."""

    code = "invalid_request"


class InvalidAmount(InvalidRequest):
    code = "invalid_amount"


class InvalidAsset(InvalidRequest):
    code = "invalid_asset"


class NotFound(LedgerError):
    code = "not_found"


class AccountNotFound(NotFound):
    code = "account_not_found"


class TransferNotFound(NotFound):
    code = "transfer_not_found"


class Conflict(LedgerError):
    code = "conflict"


class IdConflict(Conflict):
    """A client-chosen id was reused with a different body."""

    code = "id_conflict"


class RuleViolation(LedgerError):
    """A well-formed request that the ledger's rules refuse."""

    code = "rule_violation"


class InsufficientFunds(RuleViolation):
    code = "insufficient_funds"


class AssetMismatch(RuleViolation):
    code = "asset_mismatch"


class SameAccount(RuleViolation):
    code = "same_account"


class AccountNotOpen(RuleViolation):
    code = "account_not_open"


class LimitExceeded(RuleViolation):
    code = "limit_exceeded"


class OverdraftInUse(RuleViolation):
    code = "overdraft_in_use"


class AccountNotEmpty(RuleViolation):
    code = "account_not_empty"


class TransferNotPending(Conflict):
    """Post or void of a transfer that is not (or no longer) pending."""

    code = "transfer_not_pending"


class FeeExceedsAmount(RuleViolation):
    code = "fee_exceeds_amount"


class TransferNotPosted(Conflict):
    code = "transfer_not_posted"


class ExceedsReversible(RuleViolation):
    code = "exceeds_reversible"


class TransferExpired(Conflict):
    code = "transfer_expired"


class ExceedsPending(RuleViolation):
    code = "exceeds_pending"


class AssetNotOnChain(RuleViolation):
    """A payout in an asset that settings do not map to a Stellar asset."""

    code = "asset_not_on_chain"


class AmountExceedsChainLimit(RuleViolation):
    """A payout larger than one Stellar payment can carry."""

    code = "amount_exceeds_chain_limit"


class MonitorNotFound(NotFound):
    code = "monitor_not_found"


class TooManyMonitors(RuleViolation):
    code = "too_many_monitors"


class PayoutNotFound(NotFound):
    code = "payout_not_found"


class PayoutHold(Conflict):
    """Clients may not post, void or reverse a payout's transfer: only the chain's outcome may."""

    code = "payout_hold"


class PayoutResolved(Conflict):
    """A payout already confirmed (or failed) cannot end the other way."""

    code = "payout_resolved"


class NotInSuspense(Conflict):
    """Only a chain deposit credited to the asset's suspense account can be reassigned."""

    code = "not_in_suspense"


class InvalidRows(RuleViolation):
    """A payout run's file with rows that cannot be paid: refused whole, each row named."""

    code = "invalid_rows"

    def __init__(self, detail: str, rows: list[dict[str, object]] | None = None) -> None:
        super().__init__(detail)
        self.extra = {"rows": rows or []}


class RunNotFound(NotFound):
    code = "payout_run_not_found"


class RunStateConflict(Conflict):
    """A payout run asked to move where its state does not lead (start a cancelled run)."""

    code = "payout_run_state"


class Busy(LedgerError):
    """Optimistic concurrency retries ran out; the client may retry the same request."""

    code = "busy"
